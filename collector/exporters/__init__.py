"""What leaves the collector for other systems: the Prometheus exposition served at /metrics, rendered from
the fleet store at scrape time, and remote write."""
