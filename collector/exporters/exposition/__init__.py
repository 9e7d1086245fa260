"""Prometheus exposition of the fleet store, rendered at scrape time."""

from collector.exporters.exposition.events import EventTallies
from collector.exporters.exposition.fleet import FORMATS, FleetExposition

__all__ = ["FORMATS", "EventTallies", "FleetExposition"]
