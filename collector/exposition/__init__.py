"""Prometheus exposition of the fleet store, rendered at scrape time."""

from collector.exposition.events import EventTallies
from collector.exposition.fleet import FORMATS, FleetExposition

__all__ = ["FORMATS", "EventTallies", "FleetExposition"]
