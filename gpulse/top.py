"""`gpulse top`: a live terminal view of the fleet, read from a collector's HTTP API.

``render`` is a pure function from the API's JSON and a ``View`` (sort, filters, page, mode) to one
screen of text that fits the terminal: firing alerts first, then the GPUs (or hosts) that need a
look, worst first. ``run`` polls and redraws with plain ANSI (home, clear), so it works in any
terminal and over ssh; ``--once`` prints a single frame for scripts.
"""

from __future__ import annotations

import fnmatch
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TextIO

from gpulse.client import Client, ClientError, HttpStatusError

__all__ = ["HEALTH_FILTERS", "SORT_KEYS", "Snapshot", "View", "apply_key", "fetch", "layout", "render", "run"]

_RESET, _BOLD, _DIM, _REVERSE = "\x1b[0m", "\x1b[1m", "\x1b[2m", "\x1b[7m"
_COLOURS = {"ok": "\x1b[32m", "warn": "\x1b[33m", "fail": "\x1b[31m", "lost": "\x1b[31;1m", "down": "\x1b[31m"}
_SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
# Worst first: what an operator must look at comes before what is fine.
_HEALTH_RANK = {"lost": 0, "down": 0, "fail": 1, "warn": 2, "unknown": 3, "ok": 4}
SORT_KEYS = ("health", "host", "temp", "power", "util", "mem")
HEALTH_FILTERS = ("ok", "warn", "fail", "lost", "unhealthy")
_ALERT_LINES = 5  # at most this many alert lines above the table; the rest are counted


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one refresh read: the fleet, and the alerts (None when the collector has no alert API)."""

    fleet: Mapping[str, Any]
    alerts: Sequence[Mapping[str, Any]] | None
    source: str
    remediation: Mapping[str, Any] | None = None  # None when the collector has no remediation API


@dataclass(frozen=True, slots=True)
class View:
    """How to show a snapshot: sort key, filters (glob or substring), page (from 1) and per-host mode."""

    sort: str = "health"
    host: str = ""
    model: str = ""
    job: str = ""
    health: str = ""
    page: int = 1
    hosts: bool = False

    def describe(self) -> str:
        parts = [f"sort {self.sort}"]
        parts += [f"{k} {v}" for k, v in (("host", self.host), ("model", self.model), ("job", self.job)) if v]
        if self.health:
            parts.append(f"health {self.health}")
        return ", ".join(parts)


KEYS_HELP = "keys: n/p page, s sort, h hosts/GPUs, u unhealthy only, q quit"


def apply_key(view: View, key: str) -> View | None:
    """The view after a key press in the live screen; None to quit. Unknown keys change nothing."""
    if key in ("q", "\x03"):
        return None
    if key in ("n", " "):
        return replace(view, page=view.page + 1)
    if key == "p":
        return replace(view, page=max(1, view.page - 1))
    if key == "s":
        return replace(view, sort=SORT_KEYS[(SORT_KEYS.index(view.sort) + 1) % len(SORT_KEYS)], page=1)
    if key == "h":
        return replace(view, hosts=not view.hosts, page=1)
    if key == "u":
        return replace(view, health="" if view.health == "unhealthy" else "unhealthy", page=1)
    return view


def fetch(client: Client) -> Snapshot:
    """Read /api/v1/fleet and /api/v1/alerts from the collector; raises ClientError."""
    fleet = client.request("/api/v1/fleet")
    if not isinstance(fleet, dict):
        raise ClientError(f"{client.url}/api/v1/fleet did not return a JSON object")
    try:
        answer = client.request("/api/v1/alerts")
        alerts: list[Mapping[str, Any]] | None = list(answer.get("alerts", []))
    except HttpStatusError as exc:
        if exc.status != 404:
            raise
        alerts = None
    try:
        remediation: Mapping[str, Any] | None = client.request("/api/v1/remediation")
    except HttpStatusError as exc:
        if exc.status != 404:
            raise
        remediation = None
    return Snapshot(fleet, alerts, client.url, remediation)


@dataclass(slots=True)
class _Row:
    host: Mapping[str, Any]
    gpu: Mapping[str, Any]
    health: str
    alerts: list[Mapping[str, Any]] = field(default_factory=list)

    @property
    def host_id(self) -> str:
        return str(self.host.get("host_id", "?"))


def _match(pattern: str, text: str) -> bool:
    if not pattern:
        return True
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(text, pattern)
    return pattern.lower() in text.lower()


def _gpu_health(host: Mapping[str, Any], gpu: Mapping[str, Any]) -> str:
    if gpu.get("lost"):
        return "lost"
    return str(gpu.get("health", "unknown"))


def _health_ok(wanted: str, health: str) -> bool:
    if not wanted:
        return True
    if wanted == "unhealthy":
        return health != "ok"
    return health == wanted


def _alert_rank(alerts: Sequence[Mapping[str, Any]]) -> int:
    return min((_SEVERITY_ORDER.get(str(a.get("labels", {}).get("severity")), 3) for a in alerts), default=9)


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else -math.inf


_SORTS: dict[str, Callable[[_Row], Any]] = {
    "host": lambda r: (r.host_id, _number(r.gpu.get("index"))),
    "temp": lambda r: -_number(r.gpu.get("temperature")),
    "power": lambda r: -_number(r.gpu.get("power_usage")),
    "util": lambda r: -_number(r.gpu.get("utilization")),
    "mem": lambda r: -_number(r.gpu.get("memory_used")),
    "health": lambda r: (r.host_id, _number(r.gpu.get("index"))),  # within a health rank, by host
}


def render(
    snapshot: Snapshot,
    view: View = View(),
    *,
    width: int = 80,
    height: int | None = None,
    now: float | None = None,
    colour: bool = False,
) -> str:
    """One screen: a title, the firing alerts (most severe first), then a page of GPU or host rows.

    Rows with firing alerts or bad health come first whatever the sort; ``height`` None shows every
    row (for scripts), otherwise the page fits the terminal and the last line says which page it is.
    """
    return layout(snapshot, view, width=width, height=height, now=now, colour=colour)[0]


def layout(
    snapshot: Snapshot,
    view: View = View(),
    *,
    width: int = 80,
    height: int | None = None,
    now: float | None = None,
    colour: bool = False,
) -> tuple[str, int]:
    """``render``'s screen, and how many pages the rows take."""
    now = time.time() if now is None else now

    def paint(text: str, style: str) -> str:
        return f"{style}{text}{_RESET}" if colour and style else text

    hosts = [h for h in snapshot.fleet.get("hosts", []) if isinstance(h, Mapping)]
    firing = [a for a in (snapshot.alerts or []) if a.get("state") == "firing"]
    by_gpu: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    by_host: dict[str, list[Mapping[str, Any]]] = {}
    for alert in firing:
        labels = alert.get("labels", {})
        key = str(labels.get("host", ""))
        if "gpu" in labels:
            by_gpu.setdefault((key, str(labels["gpu"])), []).append(alert)
        else:
            by_host.setdefault(key, []).append(alert)

    gpus = sum(len(h.get("gpus", [])) for h in hosts)
    up = sum(1 for h in hosts if h.get("connected"))
    unhealthy = sum(1 for h in hosts for g in h.get("gpus", []) if _gpu_health(h, g) != "ok")
    alerts_text = "alerts n/a" if snapshot.alerts is None else f"{len(firing)} firing"
    clock = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now))
    title = f"gpulse top {snapshot.source}  {clock}"
    counts = f"{len(hosts)} hosts ({up} up), {gpus} GPUs ({unhealthy} not ok), {alerts_text}"
    lines = [paint(_fit(title, width), _BOLD), _fit(counts, width)]

    ordered = sorted(
        firing,
        key=lambda a: (_SEVERITY_ORDER.get(str(a.get("labels", {}).get("severity")), 9), a.get("starts_at", 0)),
    )
    shown_alerts = ordered if height is None else ordered[:_ALERT_LINES]
    for alert in shown_alerts:
        labels = alert.get("labels", {})
        severity = str(labels.get("severity", "?"))
        where = str(labels.get("host", "")) + (f"/{labels['gpu']}" if "gpu" in labels else "")
        since = _age(now - float(alert.get("starts_at") or now))
        notes = alert.get("annotations", {})
        summary = str(notes.get("summary", ""))
        # The suggested action leads the summary where there is one: at 80 columns a fixed column would
        # take the room the summary needs on every alert that has none.
        action = str(notes.get("suggested_action", ""))
        name = str(labels.get("alertname", "?"))[:24]
        summary = f"[{action}] {summary}" if action else summary
        text = f"{severity[:4].upper():<4} {name:<24} {where[:20]:<20} {since:>4} {summary}"
        lines.append(paint(_fit(text, width), _COLOURS["fail"] if severity == "critical" else _COLOURS["warn"]))
    if len(ordered) > len(shown_alerts):
        lines.append(_fit(f"  ... and {len(ordered) - len(shown_alerts)} more firing alerts", width))
    lines += _remediation(snapshot.remediation, width, paint)

    if view.hosts:
        header, rows, styles = _host_table(hosts, by_host, by_gpu, view, now)
    else:
        header, rows, styles = _gpu_table(hosts, by_host, by_gpu, view, now)
    lines.append(paint(_fit(header, width), _REVERSE if colour else ""))
    # Title, counts, alerts and the header are above; one footer line below.
    room = max(1, len(rows) if height is None else height - len(lines) - 1)
    pages = max(1, math.ceil(len(rows) / room))
    page = min(max(1, view.page), pages)
    start = (page - 1) * room
    for text, style in zip(rows[start : start + room], styles[start : start + room], strict=True):
        lines.append(paint(_fit(text, width), style))
    what = "hosts" if view.hosts else "GPUs"
    shown = f"{start + 1}-{min(start + room, len(rows))}" if rows else "0"
    footer = f"{what} {shown} of {len(rows)}, page {page}/{pages}; {view.describe()}"
    lines.append(paint(_fit(footer, width), _DIM))
    return "\n".join(lines) + "\n", pages


_GPU_HEADER = "HOST               GPU MODEL        UTIL  TEMP POWER    MEM HEALTH ALERTS"


def _gpu_table(
    hosts: Sequence[Mapping[str, Any]],
    by_host: Mapping[str, list[Mapping[str, Any]]],
    by_gpu: Mapping[tuple[str, str], list[Mapping[str, Any]]],
    view: View,
    now: float,
) -> tuple[str, list[str], list[str]]:
    rows: list[_Row] = []
    for host in hosts:
        host_id = str(host.get("host_id", "?"))
        if not _match(view.host, host_id):
            continue
        for gpu in host.get("gpus", []):
            health = _gpu_health(host, gpu)
            if not _match(view.model, str(gpu.get("model", ""))) or not _health_ok(view.health, health):
                continue
            if view.job and not any(_match(view.job, str(job)) for job in gpu.get("jobs", [])):
                continue
            alerts = by_gpu.get((host_id, str(gpu.get("index", "?"))), []) + list(by_host.get(host_id, []))
            if not host.get("connected"):
                health = "down" if health == "ok" else health
            rows.append(_Row(host, gpu, health, alerts))
    rows.sort(key=_SORTS[view.sort])
    if view.sort != "host":
        # Alerts and bad health first; within a rank the chosen sort (stable sort keeps it).
        rows.sort(key=lambda r: (_alert_rank(r.alerts), _HEALTH_RANK.get(r.health, 3)))
    texts, styles = [], []
    for r in rows:
        names = ",".join(sorted({str(a.get("labels", {}).get("alertname", "?")) for a in r.alerts}))
        texts.append(
            f"{r.host_id[:18]:<18} {str(r.gpu.get('index', '?'))[:3]:>3} "
            f"{_short_model(str(r.gpu.get('model', ''))):<12} {_pct(r.gpu.get('utilization')):>4} "
            f"{_num(r.gpu.get('temperature'), '°C'):>5} {_num(r.gpu.get('power_usage'), 'W'):>5} "
            f"{_gib(r.gpu.get('memory_used')):>6} {r.health:<6} {names}"
        )
        styles.append(_COLOURS.get(r.health, "") if r.health != "ok" else "")
    return _GPU_HEADER, texts, styles


_HOST_HEADER = "HOST               STATE GPUS NOT OK UTIL MAX TEMP   POWER SEEN ALERTS"


def _host_table(
    hosts: Sequence[Mapping[str, Any]],
    by_host: Mapping[str, list[Mapping[str, Any]]],
    by_gpu: Mapping[tuple[str, str], list[Mapping[str, Any]]],
    view: View,
    now: float,
) -> tuple[str, list[str], list[str]]:
    entries = []
    for host in hosts:
        host_id = str(host.get("host_id", "?"))
        gpus = [
            g
            for g in host.get("gpus", [])
            if _match(view.model, str(g.get("model", "")))
            and (not view.job or any(_match(view.job, str(j)) for j in g.get("jobs", [])))
        ]
        if not _match(view.host, host_id) or ((view.model or view.job) and not gpus):
            continue
        healths = [_gpu_health(host, g) for g in gpus]
        worst = min(healths, key=lambda h: _HEALTH_RANK.get(h, 3), default="ok")
        worst = worst if host.get("connected") else "down"
        if view.health and not (_health_ok(view.health, worst) or any(_health_ok(view.health, h) for h in healths)):
            continue
        alerts = list(by_host.get(host_id, [])) + [a for (h, _), found in by_gpu.items() if h == host_id for a in found]
        entries.append((host, host_id, gpus, healths, worst, alerts))

    def value(rows: list[Mapping[str, Any]], name: str) -> list[float]:
        return [float(g[name]) for g in rows if isinstance(g.get(name), int | float)]

    sorts: dict[str, Callable[[Any], Any]] = {
        "host": lambda e: e[1],
        "temp": lambda e: -max(value(e[2], "temperature"), default=-math.inf),
        "power": lambda e: -sum(value(e[2], "power_usage")),
        "util": lambda e: -max(value(e[2], "utilization"), default=-math.inf),
        "mem": lambda e: -sum(value(e[2], "memory_used")),
        "health": lambda e: e[1],
    }
    entries.sort(key=sorts[view.sort])
    if view.sort != "host":
        entries.sort(key=lambda e: (_alert_rank(e[5]), _HEALTH_RANK.get(e[4], 3)))
    texts, styles = [], []
    for host, host_id, gpus, healths, worst, alerts in entries:
        utils = value(gpus, "utilization")
        temps = value(gpus, "temperature")
        power = value(gpus, "power_usage")
        names = ",".join(sorted({str(a.get("labels", {}).get("alertname", "?")) for a in alerts}))
        texts.append(
            f"{host_id[:18]:<18} {'up' if host.get('connected') else 'down':<5} {len(gpus):>4} "
            f"{sum(1 for h in healths if h != 'ok'):>6} "
            f"{_pct(sum(utils) / len(utils) if utils else None):>4} "
            f"{_num(max(temps) if temps else None, '°C'):>8} "
            f"{(f'{sum(power) / 1000:.1f}kW' if power else '-'):>7} "
            f"{_age(now - float(host.get('last_frame_unix') or 0)):>4} {names}"
        )
        styles.append(_COLOURS.get(worst, "") if worst != "ok" else "")
    return _HOST_HEADER, texts, styles


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
    # "NVIDIA H100 80GB HBM3" -> "H100 80GB"; the first two words say what an operator needs.
    return " ".join(model.removeprefix("NVIDIA ").split()[:2])[:12]


def _pct(value: object) -> str:
    if not isinstance(value, int | float):
        return "-"
    return f"{min(1.0, max(0.0, float(value))) * 100:.0f}%"


def _num(value: object, unit: str) -> str:
    return f"{float(value):.0f}{unit}" if isinstance(value, int | float) else "-"


def _gib(value: object) -> str:
    return f"{float(value) / 2**30:.1f}G" if isinstance(value, int | float) else "-"


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"


def run(
    client: Client,
    view: View = View(),
    *,
    interval: float = 2.0,
    once: bool = False,
    out: TextIO | None = None,
    size: Callable[[], tuple[int, int | None]] | None = None,
    keys: Callable[[float], str] | None = None,
) -> int:
    """Poll and redraw until interrupted or ``q``; with ``once``, print a single plain frame. Returns an exit code.

    ``size`` gives (columns, lines); by default the terminal's, or for piped output COLUMNS/LINES
    when set and otherwise every column and every row. ``keys(timeout)`` waits up to ``timeout``
    for a key press and returns it ("" for none); by default the terminal's keyboard when there is one.
    """
    out = sys.stdout if out is None else out
    tty = out.isatty()
    size = size or (lambda: _terminal_size(tty))
    colour = not once and tty
    if once:
        return 0 if _frame(client, view, size, colour, out, once=True, interval=interval) else 1
    with _Keyboard() if keys is None and tty and sys.stdin.isatty() else _NoKeyboard() as keyboard:
        read = keys or keyboard.read
        current: View | None = view
        try:
            while current is not None:
                pages = _frame(client, current, size, colour, out, once=False, interval=interval)
                current = replace(current, page=min(current.page, pages))  # `n` on the last page stays there
                deadline = time.monotonic() + interval
                while current is not None and (left := deadline - time.monotonic()) > 0:
                    key = read(left)
                    if key:
                        current = apply_key(current, key)
                        break  # redraw at once with the new view
        except KeyboardInterrupt:
            pass
    return 0


def _frame(
    client: Client,
    view: View,
    size: Callable[[], tuple[int, int | None]],
    colour: bool,
    out: TextIO,
    *,
    once: bool,
    interval: float,
) -> int:
    """Draw one frame; returns its page count (0: the collector could not be read)."""
    columns, lines = size()
    try:
        # The live screen keeps its last line for the keys.
        height = None if lines is None else (lines if once else lines - 1)
        screen, pages = layout(fetch(client), view, width=columns, height=height, colour=colour)
    except ClientError as exc:
        if once:
            print(f"gpulse top: {exc}", file=sys.stderr)
            return 0
        screen, pages = f"gpulse top: {exc} (retrying every {interval:g}s)\n", view.page
    if once:
        out.write(screen)
        return pages
    out.write("\x1b[H\x1b[2J" + screen + KEYS_HELP[:columns])
    out.flush()
    return pages


class _NoKeyboard:
    """Stands in for the keyboard when stdin is not a terminal: waits, and no key comes."""

    def __enter__(self) -> _NoKeyboard:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def read(self, timeout: float) -> str:
        time.sleep(timeout)
        return ""


class _Keyboard(_NoKeyboard):
    """The terminal in cbreak mode (keys arrive without Enter), restored on exit."""

    def __enter__(self) -> _Keyboard:
        import termios
        import tty

        self._fd = sys.stdin.fileno()
        self._saved = termios.tcgetattr(self._fd)
        tty.setcbreak(self._fd)
        return self

    def __exit__(self, *_: object) -> None:
        import termios

        termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)

    def read(self, timeout: float) -> str:
        import os
        import select

        ready, _, _ = select.select([self._fd], [], [], timeout)
        return os.read(self._fd, 1).decode(errors="replace") if ready else ""


def _terminal_size(tty: bool) -> tuple[int, int | None]:
    import os
    import shutil

    if tty or ("COLUMNS" in os.environ and "LINES" in os.environ):
        columns, lines = shutil.get_terminal_size((80, 24))
        return columns, lines
    return 10_000, None
