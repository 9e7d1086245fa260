"""`gpulse top`: a live terminal view of the fleet, read from a collector's HTTP API.

``render`` is a pure function from the API's JSON to text; ``run`` polls and redraws with plain
ANSI (home, clear), so it works in any terminal, over ssh, and in `watch`-less scripts (``--once``).
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

__all__ = ["Snapshot", "fetch", "render", "run"]

_RESET, _BOLD, _DIM = "\x1b[0m", "\x1b[1m", "\x1b[2m"
_COLOURS = {"ok": "\x1b[32m", "warn": "\x1b[33m", "fail": "\x1b[31m", "lost": "\x1b[31;1m", "down": "\x1b[31m"}
_SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
_BAR = " ▏▎▍▌▋▊▉█"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one refresh read: the fleet, and the alerts (None when the collector has no alert API)."""

    fleet: Mapping[str, Any]
    alerts: Sequence[Mapping[str, Any]] | None
    source: str
    remediation: Mapping[str, Any] | None = None  # None when the collector has no remediation API


def fetch(base_url: str, timeout: float = 5.0) -> Snapshot:
    """Read /api/v1/fleet and /api/v1/alerts from the collector at ``base_url``."""
    base = base_url.rstrip("/")
    fleet = _get_json(f"{base}/api/v1/fleet", timeout)
    try:
        alerts: list[Mapping[str, Any]] | None = list(_get_json(f"{base}/api/v1/alerts", timeout).get("alerts", []))
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            raise
        alerts = None
    try:
        remediation: Mapping[str, Any] | None = _get_json(f"{base}/api/v1/remediation", timeout)
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            raise
        remediation = None
    return Snapshot(fleet, alerts, base, remediation)


def _get_json(url: str, timeout: float) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        data = json.loads(response.read())
    if not isinstance(data, dict):
        raise ValueError(f"{url} did not return a JSON object")
    return data


def render(snapshot: Snapshot, *, width: int = 120, now: float | None = None, colour: bool = False) -> str:
    """The whole screen as text: a header, one line per host and per GPU, then the firing alerts."""
    now = time.time() if now is None else now

    def paint(text: str, style: str) -> str:
        return f"{style}{text}{_RESET}" if colour and style else text

    hosts = sorted(snapshot.fleet.get("hosts", []), key=lambda h: str(h.get("host_id", "")))
    firing = [a for a in (snapshot.alerts or []) if a.get("state") == "firing"]
    by_gpu: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    by_host: dict[str, list[Mapping[str, Any]]] = {}
    for alert in firing:
        labels = alert.get("labels", {})
        host = str(labels.get("host", ""))
        if "gpu" in labels:
            by_gpu.setdefault((host, str(labels["gpu"])), []).append(alert)
        else:
            by_host.setdefault(host, []).append(alert)
    gpus = sum(len(h.get("gpus", [])) for h in hosts)
    up = sum(1 for h in hosts if h.get("connected"))
    alerts_text = "alerts: n/a" if snapshot.alerts is None else f"{len(firing)} firing"
    clock = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now))
    title = f"gpulse top — {snapshot.source} — {len(hosts)} hosts ({up} up), {gpus} GPUs, {alerts_text}"
    lines = [paint(_fit(f"{title}  {clock}", width), _BOLD)]
    header = (
        f"{'HOST / GPU':<22} {'MODEL':<22} {'UTIL':>12} {'TEMP':>6} {'POWER':>7} {'MEM USED':>10} {'HEALTH':<7} ALERTS"
    )
    lines.append(paint(_fit(header, width), _DIM))
    for host in hosts:
        host_id = str(host.get("host_id", "?"))
        age = now - float(host.get("last_frame_unix") or 0)
        state = "up" if host.get("connected") else "down"
        detail = f"{state}, last frame {_age(age)} ago, clock skew {float(host.get('clock_skew_seconds') or 0):+.1f}s"
        host_alerts = by_host.get(host_id, [])
        if host_alerts:
            detail += f", {len(host_alerts)} alert(s)"
        lines.append(paint(_fit(f"{host_id:<22} {detail}", width), _COLOURS["down"] if state == "down" else _BOLD))
        for gpu in host.get("gpus", []):
            index = str(gpu.get("index", "?"))
            health = "lost" if gpu.get("lost") else str(gpu.get("health", "unknown"))
            gpu_alerts = by_gpu.get((host_id, index), [])
            alert_names = ",".join(sorted({str(a.get("labels", {}).get("alertname", "?")) for a in gpu_alerts}))
            row = (
                f"  {index:<20} {_short_model(str(gpu.get('model', ''))):<22} {_util(gpu.get('utilization')):>12} "
                f"{_num(gpu.get('temperature'), '°C', 0):>6} {_num(gpu.get('power_usage'), 'W', 0):>7} "
                f"{_bytes(gpu.get('memory_used')):>10} "
            )
            lines.append(_fit(row, width - 8) + paint(f"{health:<7}", _COLOURS.get(health, "")) + " " + alert_names)
    if firing:
        lines.append("")
        lines.append(paint("FIRING ALERTS", _BOLD))
        ordered = sorted(
            firing,
            key=lambda a: (_SEVERITY_ORDER.get(str(a.get("labels", {}).get("severity")), 9), a.get("starts_at", 0)),
        )
        for alert in ordered:
            labels = alert.get("labels", {})
            severity = str(labels.get("severity", "?"))
            where = str(labels.get("host", "")) + (f" gpu {labels['gpu']}" if "gpu" in labels else "")
            since = _age(now - float(alert.get("starts_at") or now))
            notes = alert.get("annotations", {})
            summary = str(notes.get("summary", ""))
            action = str(notes.get("suggested_action", "")) or "-"
            text = f"{severity:<8} {labels.get('alertname', '?'):<28} {where:<20} {since:>6}  {action:<19} {summary}"
            lines.append(paint(_fit(text, width), _COLOURS["fail"] if severity == "critical" else _COLOURS["warn"]))
    lines += _remediation(snapshot.remediation, width, paint)
    return "\n".join(lines) + "\n"


def _remediation(snap: Mapping[str, Any] | None, width: int, paint: Callable[[str, str], str]) -> list[str]:
    """The remediation block: mode, breaker, and every open action (pending approvals first)."""
    if not snap or snap.get("mode", "off") == "off":
        return []
    breaker = snap.get("breaker", {})
    head = f"REMEDIATION ({snap['mode']})"
    if breaker.get("tripped"):
        head += f" — BREAKER TRIPPED: {breaker.get('reason', '')} (gpulse remediation reset)"
    lines = ["", paint(_fit(head, width), _BOLD)]
    order = {"pending": 0, "approved": 1, "drained": 2, "dry_run": 3, "watching": 4}
    for action in sorted(snap.get("open", []), key=lambda a: (order.get(str(a.get("state")), 9), a.get("id", ""))):
        state = str(action.get("state", ""))
        verb = {"dry_run": "would drain", "pending": "awaits approval", "approved": "approved"}.get(state, state)
        hint = f"  (gpulse remediation approve {action.get('id')})" if state == "pending" else ""
        text = f"{action.get('id', ''):<9} {verb:<16} {action.get('host', ''):<20} {action.get('reason', '')}{hint}"
        lines.append(paint(_fit(text, width), _COLOURS["warn"] if state == "pending" else ""))
    return lines


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def _short_model(model: str) -> str:
    return model.removeprefix("NVIDIA ")[:22]


def _util(value: object) -> str:
    if not isinstance(value, int | float):
        return "-"
    ratio = min(1.0, max(0.0, float(value)))
    eighths = round(ratio * 40)
    bar = "█" * (eighths // 8) + (_BAR[eighths % 8] if eighths % 8 else "")
    return f"{ratio * 100:3.0f}% {bar:<5}"


def _num(value: object, unit: str, digits: int) -> str:
    return f"{float(value):.{digits}f}{unit}" if isinstance(value, int | float) else "-"


def _bytes(value: object) -> str:
    return f"{float(value) / 2**30:.1f} GiB" if isinstance(value, int | float) else "-"


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.0f}h"


def run(
    base_url: str,
    *,
    interval: float = 2.0,
    once: bool = False,
    out: TextIO = sys.stdout,
    width: Callable[[], int] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Poll and redraw until interrupted; with ``once``, print a single plain frame. Returns an exit code."""
    import shutil

    tty = out.isatty()
    # Cut lines to the terminal only when there is one; piped output keeps every column.
    columns = width or (lambda: shutil.get_terminal_size((120, 40)).columns if tty else 10_000)
    colour = not once and tty
    try:
        while True:
            try:
                screen = render(fetch(base_url), width=columns(), colour=colour)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                if once:
                    print(f"gpulse top: cannot read {base_url}: {exc}", file=sys.stderr)
                    return 1
                screen = f"gpulse top: cannot read {base_url}: {exc} (retrying every {interval:g}s)\n"
            if once:
                out.write(screen)
                return 0
            out.write("\x1b[H\x1b[2J" + screen)
            out.flush()
            sleep(interval)
    except KeyboardInterrupt:
        return 0
