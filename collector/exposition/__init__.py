"""Prometheus exposition of the fleet store, rendered at scrape time."""

from collector.exposition.fleet import FleetExposition

__all__ = ["FleetExposition"]
