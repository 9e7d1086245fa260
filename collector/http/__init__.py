"""The collector's HTTP side: /metrics, /healthz and the JSON API."""
