"""`gpulse top`'s screen, as a pure function of the collector's API answers."""

from __future__ import annotations

import io

from gpulse.top import Snapshot, render, run

NOW = 1_800_000_000.0
FLEET = {
    "hosts": [
        {
            "host_id": "node-b",
            "connected": False,
            "last_frame_unix": NOW - 300,
            "clock_skew_seconds": 0.0,
            "gpus": [],
        },
        {
            "host_id": "node-a",
            "connected": True,
            "last_frame_unix": NOW - 1,
            "clock_skew_seconds": -0.25,
            "gpus": [
                {
                    "index": 0,
                    "model": "NVIDIA H100 80GB HBM3",
                    "utilization": 0.87,
                    "temperature": 61.0,
                    "power_usage": 512.4,
                    "memory_used": 64 * 2**30,
                    "health": "ok",
                    "lost": False,
                },
                {
                    "index": 1,
                    "model": "NVIDIA H100 80GB HBM3",
                    "utilization": None,
                    "temperature": None,
                    "power_usage": None,
                    "memory_used": None,
                    "health": "fail",
                    "lost": True,
                },
            ],
        },
    ]
}
ALERTS = [
    {
        "labels": {"alertname": "GpuLost", "severity": "critical", "host": "node-a", "gpu": "1"},
        "state": "firing",
        "starts_at": NOW - 120,
        "annotations": {"summary": "GPU 1 on node-a is lost"},
    },
    {
        "labels": {"alertname": "GpuHostDown", "severity": "critical", "host": "node-b"},
        "state": "firing",
        "starts_at": NOW - 30,
        "annotations": {"summary": "node-b stopped reporting"},
    },
    {"labels": {"alertname": "Old", "severity": "warning", "host": "node-a", "gpu": "0"}, "state": "resolved"},
]


def screen(alerts: list[dict[str, object]] | None = ALERTS, width: int = 140) -> list[str]:
    return render(Snapshot(FLEET, alerts, "http://c:9410"), width=width, now=NOW).splitlines()


def test_header_counts_hosts_gpus_and_firing_alerts() -> None:
    assert "2 hosts (1 up), 2 GPUs, 2 firing" in screen()[0]
    assert "2027-01-15 08:00:00 UTC" in screen()[0]


def test_each_gpu_shows_utilisation_temperature_power_memory_health_and_its_alerts() -> None:
    lines = screen()
    gpu0 = next(ln for ln in lines if ln.startswith("  0 "))
    assert "87%" in gpu0 and "61°C" in gpu0 and "512W" in gpu0 and "64.0 GiB" in gpu0 and " ok" in gpu0
    assert "Old" not in gpu0  # resolved alerts are not shown
    gpu1 = next(ln for ln in lines if ln.startswith("  1 "))
    assert "lost" in gpu1 and "GpuLost" in gpu1 and "-" in gpu1  # unread values show as '-', never 0


def test_hosts_are_sorted_and_a_down_host_says_so_with_its_alerts() -> None:
    lines = screen()
    a = next(i for i, ln in enumerate(lines) if ln.startswith("node-a"))
    b = next(i for i, ln in enumerate(lines) if ln.startswith("node-b"))
    assert a < b
    assert "down, last frame 5m ago" in lines[b] and "1 alert(s)" in lines[b]
    assert "clock skew -0.2s" in lines[a] or "clock skew -0.3s" in lines[a]


def test_firing_alerts_are_listed_most_severe_and_oldest_first() -> None:
    lines = screen()
    start = lines.index("FIRING ALERTS")
    assert "GpuLost" in lines[start + 1] and "2m" in lines[start + 1] and "GPU 1 on node-a is lost" in lines[start + 1]
    assert "GpuHostDown" in lines[start + 2]


def test_no_alert_api_and_narrow_terminals() -> None:
    lines = screen(alerts=None, width=60)
    assert "alerts: n/a" in lines[0] or lines[0].endswith("…")
    assert all(len(ln) <= 60 for ln in lines if "\x1b" not in ln)


def test_colour_only_when_asked() -> None:
    assert "\x1b[" not in "".join(screen())
    coloured = render(Snapshot(FLEET, ALERTS, "x"), now=NOW, colour=True)
    assert "\x1b[31;1mlost" in coloured


def test_once_against_an_unreachable_collector_fails_cleanly() -> None:
    out = io.StringIO()
    assert run("http://127.0.0.1:9", once=True, out=out) == 1
    assert out.getvalue() == ""
