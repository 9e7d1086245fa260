"""`gpulse top`'s screen, as a pure function of the collector's API answers and the chosen view."""

from __future__ import annotations

import io

from gpulse import cli
from gpulse.client import Client
from gpulse.top import HEALTH_FILTERS, SORT_KEYS, Snapshot, View, apply_key, render, run

NOW = 1_800_000_000.0


def gpu(index: int, model: str = "NVIDIA H100 80GB HBM3", health: str = "ok", **values: object) -> dict[str, object]:
    base: dict[str, object] = {
        "index": index,
        "model": model,
        "utilization": 0.5,
        "temperature": 50.0,
        "power_usage": 300.0,
        "memory_used": 10 * 2**30,
        "health": health,
        "lost": False,
        "jobs": [],
    }
    return base | values


FLEET = {
    "hosts": [
        {"host_id": "node-b", "connected": False, "last_frame_unix": NOW - 300, "gpus": [gpu(0)]},
        {
            "host_id": "node-a",
            "connected": True,
            "last_frame_unix": NOW - 1,
            "gpus": [
                gpu(0, utilization=0.87, temperature=61.0, power_usage=512.4, memory_used=64 * 2**30),
                gpu(1, utilization=None, temperature=None, power_usage=None, memory_used=None, lost=True),
                gpu(2, health="warn", jobs=["slurm 4242"]),
                gpu(3, model="NVIDIA A100-SXM4-80GB", temperature=83.0),
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


def screen(
    view: View | None = None,
    alerts: list[dict[str, object]] | None = ALERTS,
    width: int = 80,
    height: int | None = None,
) -> list[str]:
    return render(
        Snapshot(FLEET, alerts, "http://c:9410"), view or View(), width=width, height=height, now=NOW
    ).splitlines()


def rows(lines: list[str]) -> list[str]:
    start = next(i for i, ln in enumerate(lines) if ln.startswith("HOST "))
    return lines[start + 1 : -1]


def test_title_counts_hosts_gpus_unhealthy_and_firing_alerts() -> None:
    lines = screen()
    assert "2027-01-15 08:00:00 UTC" in lines[0]
    assert lines[1] == "2 hosts (1 up), 5 GPUs (2 not ok), 2 firing"


def test_firing_alerts_come_first_most_severe_and_oldest_first() -> None:
    lines = screen()
    assert lines[2].startswith("CRIT GpuLost") and "node-a/1" in lines[2] and "2m" in lines[2]
    assert lines[3].startswith("CRIT GpuHostDown") and "node-b" in lines[3]
    assert not any("Old" in ln for ln in lines)  # resolved alerts are not shown


def test_gpus_with_alerts_and_bad_health_come_before_healthy_ones() -> None:
    order = [(ln.split()[0], ln.split()[1]) for ln in rows(screen())]
    # Alerted first (the lost GPU, the down host's GPU), then the warning, then the healthy ones.
    assert order[:3] == [("node-a", "1"), ("node-b", "0"), ("node-a", "2")]
    assert set(order[3:]) == {("node-a", "0"), ("node-a", "3")}
    lost = rows(screen())[0]
    assert "lost" in lost and "GpuLost" in lost and " - " in lost  # unread values show as '-', never 0
    assert "down" in rows(screen())[1] and "GpuHostDown" in rows(screen())[1]


def test_each_gpu_row_shows_its_readings() -> None:
    row = next(ln for ln in rows(screen()) if ln.split()[:2] == ["node-a", "0"])
    assert "H100 80GB" in row and "87%" in row and "61°C" in row and "512W" in row and "64.0G" in row


def test_sort_and_filters() -> None:
    hottest = rows(screen(View(sort="temp"), alerts=[]))
    # Without alerts the bad health still leads (down and lost, then warn); among the healthy, the hottest first.
    assert [ln.split()[0:2] for ln in hottest[:3]] == [["node-b", "0"], ["node-a", "1"], ["node-a", "2"]]
    healthy = [ln for ln in hottest if " ok " in ln]
    assert healthy[0].split()[:2] == ["node-a", "3"]
    assert [ln.split()[1] for ln in rows(screen(View(sort="host")))] == ["0", "1", "2", "3", "0"]
    assert [ln.split()[1] for ln in rows(screen(View(model="A100")))] == ["3"]
    assert [ln.split()[1] for ln in rows(screen(View(job="4242")))] == ["2"]
    assert {ln.split()[0] for ln in rows(screen(View(host="node-b*")))} == {"node-b"}
    assert [ln.split()[1] for ln in rows(screen(View(health="warn")))] == ["2"]
    assert len(rows(screen(View(health="unhealthy")))) == 2
    assert "job 4242" in screen(View(job="4242"))[-1]


def test_paging_fits_the_height_and_the_footer_says_where_you_are() -> None:
    first = screen(View(sort="host"), alerts=[], width=80, height=6)
    assert len(first) == 6
    assert first[-1].startswith("GPUs 1-2 of 5, page 1/3")
    third = screen(View(sort="host", page=3), alerts=[], width=80, height=6)
    assert third[-1].startswith("GPUs 5-5 of 5, page 3/3") and rows(third)[0].startswith("node-b")
    assert screen(View(page=99), alerts=[], height=6)[-1].startswith("GPUs 5-5 of 5, page 3/3")


def test_host_summary_mode_is_one_line_per_host_worst_first() -> None:
    lines = rows(screen(View(hosts=True)))
    assert [ln.split()[0] for ln in lines] == ["node-a", "node-b"]
    node_a = lines[0].split()
    assert node_a[1:4] == ["up", "4", "2"]  # 4 GPUs, 2 not ok
    assert "83°C" in lines[0] and "1.1kW" in lines[0] and "GpuLost" in lines[0]
    assert "down" in lines[1] and "GpuHostDown" in lines[1] and "5m" in lines[1]


def test_no_alert_api_and_every_line_within_the_width() -> None:
    lines = screen(alerts=None, width=60)
    assert "alerts n/a" in lines[1]
    assert all(len(ln) <= 60 for ln in lines)


def test_colour_only_when_asked() -> None:
    assert "\x1b[" not in "".join(screen())
    coloured = render(Snapshot(FLEET, ALERTS, "x"), now=NOW, colour=True)
    assert "\x1b[31;1m" in coloured


def test_the_parser_offers_the_views_choices() -> None:
    assert cli.TOP_SORT_KEYS == SORT_KEYS and cli.TOP_HEALTH_FILTERS == HEALTH_FILTERS


def test_once_against_an_unreachable_collector_fails_cleanly() -> None:
    out = io.StringIO()
    assert run(Client.checked("http://127.0.0.1:9"), once=True, out=out) == 1
    assert out.getvalue() == ""


def test_keys_page_sort_switch_mode_and_quit() -> None:
    view = View()
    assert apply_key(view, "q") is None
    assert apply_key(view, "n") == View(page=2)
    assert apply_key(View(page=2), "p") == View(page=1) and apply_key(view, "p") == view
    assert apply_key(View(page=3), "s") == View(sort=SORT_KEYS[1])
    assert apply_key(View(page=3), "h") == View(hosts=True)
    assert apply_key(view, "u") == View(health="unhealthy") and apply_key(View(health="unhealthy"), "u") == view
    assert apply_key(view, "x") == view
