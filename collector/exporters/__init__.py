"""Exporters that push the fleet's data out of the collector (remote write)."""
