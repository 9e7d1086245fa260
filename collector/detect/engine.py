"""The detection engine: rules and detectors over the fleet store, alerts handed to a sink.

Each tick snapshots every signal into the history, runs the detectors, evaluates every rule over
all series at once and pushes the pending and firing alerts. An agent event that a rule reads (an
XID, a GPU lost, a spool drop) is evaluated the moment it is applied, so hard faults reach the
alert stage without waiting for the tick.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import structlog

from collector.alert import Alert, AlertSink, AlertState
from collector.detect import expr as ex
from collector.detect.baseline import BaselineDetector
from collector.detect.history import HistoryByDepth, forward_fill
from collector.detect.peers import PeerDetector, load_band
from collector.detect.rules import DEFAULT_RULES, Rule, RuleError, RuleSet, load_rules
from collector.detect.signals import FleetSignals
from collector.detect.templates import render
from collector.detect.thermal import ThermalModelDetector
from collector.store import FleetStore, HostRecord
from protos import telemetry_pb2 as pb

log = structlog.get_logger("gpulse.collector.detect")

Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass
class RuleState:
    """Per-series state of one rule: since when its condition holds, and whether it fires."""

    active_since: Array = field(default_factory=lambda: np.zeros(0))
    cleared_at: Array = field(default_factory=lambda: np.zeros(0))  # first evaluation false while firing
    firing: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=bool))

    def fit(self, rows: int) -> None:
        if rows > len(self.firing):
            extra = rows - len(self.firing)
            self.active_since = np.concatenate([self.active_since, np.full(extra, np.nan)])
            self.cleared_at = np.concatenate([self.cleared_at, np.full(extra, np.nan)])
            self.firing = np.concatenate([self.firing, np.zeros(extra, dtype=bool)])

    def forget(self, rows: IntArray) -> None:
        rows = rows[rows < len(self.firing)]
        self.active_since[rows] = np.nan
        self.cleared_at[rows] = np.nan
        self.firing[rows] = False


@dataclass
class EngineStats:
    evaluations: int = 0
    immediate_evaluations: int = 0
    rule_failures: dict[str, int] = field(default_factory=dict)
    reloads_ok: int = 0
    reloads_failed: int = 0
    last_reload_error: str = ""
    last_evaluation_seconds: float = 0.0
    alerts_pushed: int = 0


class _Context:
    """What an expression sees for one scope: current matrices, history windows, the XID log."""

    def __init__(self, engine: DetectionEngine, scope: str, now: float) -> None:
        self.engine = engine
        self.scope = scope
        self.now = now
        self.rows = engine.signals.gpu_rows if scope == "gpu" else engine.signals.host_slots
        self.slots = engine.store.gpu_host_slot[: engine.signals.gpu_rows]

    def _spread(self, host_values: Array) -> Array:
        """Host values onto GPU rows (for a GPU rule that reads a host signal)."""
        if self.scope == "host":
            return host_values
        padded = np.concatenate([host_values, [np.nan]])
        return padded[np.where(self.slots >= 0, self.slots, len(host_values))]

    def current(self, signal: str) -> Array:
        sig = self.engine.signals
        if self.scope == "gpu" and signal in sig.gpu_index:
            return self.engine.gpu_now[:, sig.gpu_index[signal]]
        return self._spread(self.engine.host_now[:, sig.host_index[signal]])

    def window(self, function: str, signal: str, seconds: float) -> Array:
        sig = self.engine.signals
        on_gpu = signal in sig.gpu_index and (self.scope == "gpu")
        history = self.engine.gpu_history if on_gpu else self.engine.host_history
        column = sig.gpu_index[signal] if on_gpu else sig.host_index[signal]
        rows = sig.gpu_rows if on_gpu else sig.host_slots
        current = (self.engine.gpu_now if on_gpu else self.engine.host_now)[:, column]
        if function in ("increase", "rate"):
            result = history.increase(column, self.now, seconds, current)
            if function == "rate":
                # Over the time the increase really covers: a ring kept every few ticks starts it
                # a little before the window, a young one after.
                result = result / max(self.now - history.increase_start(column, self.now, seconds), 1e-9)
            return result if on_gpu or self.scope == "host" else self._spread(result)
        got = history.window(column, self.now, seconds, rows, whole=function == "absent")
        if got is None:
            result = np.full(rows, np.nan) if function != "absent" else np.zeros(rows)
        else:
            times, values = got
            result = _window_function(function, times, values, current, self.now, seconds)
        return result if on_gpu or self.scope == "host" else self._spread(result)

    def xids(self, codes: frozenset[int], seconds: float) -> Array:
        return self.engine.signals.xids(codes, self.now - seconds)


def _window_function(function: str, times: Array, values: Array, current: Array, now: float, seconds: float) -> Array:
    if function == "delta":
        filled = forward_fill(np.concatenate([values, current[None, :]], axis=0))
        return filled[-1] - filled[0]
    inside = times > now - seconds + 1e-9  # the sample at the window's edge belongs to the time before it
    series = np.concatenate([values[inside], current[None, :]], axis=0)
    if function == "absent":
        return np.isnan(series).all(axis=0).astype(np.float64)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows give NaN, quietly
        if function == "avg_over_time":
            return np.nanmean(series, axis=0)
        if function == "min_over_time":
            return np.nanmin(series, axis=0)
        return np.nanmax(series, axis=0)


def check_rules(paths: Sequence[Path | str]) -> RuleSet:
    """Load rule files exactly as a collector starting with them would (the same signals, the same
    checks) and evaluate nothing: for `gpulse check-config`, in CI before a rule change ships."""

    class _Discard:
        def push(self, alerts: Sequence[Alert], now: float) -> None:
            return None

    return DetectionEngine(FleetStore(), _Discard(), rule_paths=paths).rules


# Snapshots a running-totals ring keeps over its window: a ten-minute increase at 1 s starts within
# 5 s before the window's start, from a ring a fifth as deep.
HISTORY_SNAPSHOTS = 120


def _rings(spans: list[int], *, every_tick: bool) -> tuple[tuple[int, int], ...]:
    """The rings, as (snapshots kept, ticks between them), that the windows ``spans`` (in ticks,
    ascending) over one column read. Raw snapshots and the totals of short windows are kept every
    tick; the totals of windows longer than HISTORY_SNAPSHOTS ticks in a ring of their own, every
    few ticks (as set by the shortest of them), so a short rate next to a long increase over the
    same counter stays exact without making an hour of every tick."""
    short = [s for s in spans if every_tick or s <= HISTORY_SNAPSHOTS]
    long = [s for s in spans if not every_tick and s > HISTORY_SNAPSHOTS]
    rings = [(max(short) + 3, 1)] if short else []
    if long:
        stride = math.ceil(long[0] / HISTORY_SNAPSHOTS)
        rings.append((math.ceil(long[-1] / stride) + 3, stride))
    return tuple(rings)


class DetectionEngine:
    """Rules, peer comparison and baselines over the fleet store; an IngestObserver of the server."""

    def __init__(
        self,
        store: FleetStore,
        sink: AlertSink,
        *,
        rule_paths: Sequence[Path | str] = (DEFAULT_RULES,),
        interval: float = 1.0,
        clock: Callable[[], float] = time.time,
        peers: PeerDetector | None = None,
        baseline: BaselineDetector | None = None,
        thermal: ThermalModelDetector | None = None,
        max_history_seconds: float = 3600.0,
        reload_check_interval: float = 5.0,
    ) -> None:
        self.store = store
        self.sink = sink
        self.interval = interval
        self.clock = clock
        self.peers = peers or PeerDetector()
        self.baseline = baseline or BaselineDetector()
        self.thermal = thermal or ThermalModelDetector()
        self.max_history_seconds = max_history_seconds
        self.reload_check_interval = reload_check_interval
        self._last_reload_check = -math.inf
        self.signals = FleetSignals(store, (*self.peers.outputs, *self.baseline.outputs, *self.thermal.outputs))
        self.stats = EngineStats()
        self.rule_paths = tuple(rule_paths)
        self.rules: RuleSet = RuleSet((), ())
        self.states: dict[str, RuleState] = {}
        self.active: dict[tuple[str, int], Alert] = {}  # (rule, row or slot) -> its alert as last pushed
        self.gpu_now: Array = np.zeros((0, len(self.signals.gpu_names)))
        self.host_now: Array = np.zeros((0, len(self.signals.host_names)))
        self.gpu_history = HistoryByDepth({}, 1)
        self.host_history = HistoryByDepth({}, 1)
        self._mtimes: dict[str, float] = {}
        self._models: dict[str, int] = {}
        self._jobs: dict[str, int] = {"": 0}
        self.model_ids: IntArray = np.zeros(0, dtype=np.int64)
        self.job_ids: IntArray = np.zeros(0, dtype=np.int64)
        self.last_tick: float | None = None
        self.paused = False  # [detect] enabled = false: rules are checked but nothing is evaluated
        self.load(self.rule_paths)

    # -- rules -------------------------------------------------------------------------------------
    def load(self, paths: Sequence[Path | str]) -> RuleSet:
        """Load a rule set, replacing the current one only if every rule in it is valid."""
        rules = load_rules(
            paths,
            gpu_signals=frozenset(self.signals.gpu_names) | {"xid"},
            host_signals=frozenset(self.signals.host_names),
        )
        now = self.clock()
        kept = {r.name for r in rules.rules}
        for name in [n for n in self.states if n not in kept]:
            del self.states[name]
        gone = [key for key in self.active if key[0] not in kept]
        if gone:
            self._push([self.active.pop(key).resolved(now) for key in gone], now)
        self.rules = rules
        self.rule_paths = tuple(paths)
        for rule in rules.rules:
            self.states.setdefault(rule.name, RuleState())
        self._mtimes = self._file_mtimes()
        self._size_history(rules)
        return rules

    def _file_mtimes(self) -> dict[str, float]:
        out = {}
        for path in self.rule_paths:
            if str(path) == DEFAULT_RULES:
                continue
            try:
                out[str(path)] = Path(path).stat().st_mtime
            except OSError:
                out[str(path)] = -1.0
        return out

    def reload_if_changed(self) -> bool:
        """Reload when a rule file changed on disk; a bad edit keeps the running rules and is logged."""
        if self._file_mtimes() == self._mtimes:
            return False
        return self.reload()

    def reload(self) -> bool:
        try:
            rules = self.load(self.rule_paths)
        except RuleError as exc:
            self._mtimes = self._file_mtimes()  # do not retry the same broken file every tick
            self.stats.reloads_failed += 1
            self.stats.last_reload_error = str(exc)
            log.error("rule reload refused; keeping the running rules", error=str(exc))
            return False
        self.stats.reloads_ok += 1
        self.stats.last_reload_error = ""
        log.info("rules reloaded", rules=len(rules.rules), files=list(rules.sources))
        return True

    def _size_history(self, rules: RuleSet) -> None:
        """Keep each windowed column as deep as the longest window over it (XID windows read the
        XID log, not these rings)."""
        sig = self.signals
        # (scope, column, form) -> every window length read over it, in ticks
        spans: dict[tuple[str, int, str], set[int]] = {}
        for rule in rules.rules:
            for w in ex.windows(rule.expr):
                span = max(1, math.ceil(min(w.seconds, self.max_history_seconds) / self.interval))
                form = "totals" if w.function in ("increase", "rate") else "values"
                if rule.scope == "gpu" and w.signal in sig.gpu_index:
                    key = ("gpu", sig.gpu_index[w.signal], form)
                else:
                    key = ("host", sig.host_index[w.signal], form)
                spans.setdefault(key, set()).add(span)
        for scope, attr in (("gpu", "gpu_history"), ("host", "host_history")):
            depths: dict[tuple[int, str], tuple[tuple[int, int], ...]] = {}
            for (where, column, form), lengths in spans.items():
                if where == scope:
                    depths[column, form] = _rings(sorted(lengths), every_tick=form == "values")
            old: HistoryByDepth = getattr(self, attr)
            if depths != old.depths:
                setattr(self, attr, HistoryByDepth(depths, old.rows, interval=self.interval))

    # -- ingest observer ---------------------------------------------------------------------------
    def frame_applied(self, record: HostRecord, unix_ns: int) -> None:
        return None  # values are read from the store on the tick

    def event_applied(self, record: HostRecord, event: pb.Event) -> None:
        if self.paused:
            return
        kind = event.WhichOneof("kind")
        now = self.clock()
        if kind == "xid":
            row = record.gpus[event.xid.gpu_index].row
            self.signals.note_xid(now, row, int(event.xid.xid), max(1, int(event.xid.count)))
        elif kind == "spool_drop":
            self.signals.note_spool_drop(record.slot, int(event.spool_drop.records))
        elif kind == "workload":
            self._refresh(now)  # a new GPU's rows are reset first, not after its job is noted
            self._note_workload(record, event.workload)
            return
        elif kind not in ("gpu_lost", "health", "inventory"):
            return
        self.evaluate(now, immediate_only=True)

    def _note_workload(self, record: HostRecord, workload: pb.WorkloadEvent) -> None:
        row = record.gpus[workload.gpu_index].row
        ids = sorted({p.workload.id for p in workload.processes if p.workload.id})
        key = ",".join(ids)
        job = self._jobs.setdefault(key, len(self._jobs))
        if row >= len(self.job_ids):
            self.job_ids = np.concatenate([self.job_ids, np.zeros(row + 1 - len(self.job_ids), dtype=np.int64)])
        self.job_ids[row] = job

    # -- evaluation --------------------------------------------------------------------------------
    def tick(self, now: float | None = None) -> list[Alert]:
        """One evaluation: snapshot, detectors, every rule; returns the alerts pushed."""
        now = self.clock() if now is None else now
        started = time.perf_counter()
        if now - self._last_reload_check >= self.reload_check_interval:
            self._last_reload_check = now
            self.reload_if_changed()
        self._refresh(now)
        self._run_detectors(now)
        self.gpu_now = self.signals.gpu_matrix()
        self.gpu_history.push(now, self.gpu_now)
        self.host_history.push(now, self.host_now)
        pushed = self._evaluate_rules(now, immediate_only=False)
        self.last_tick = now
        self.stats.evaluations += 1
        self.stats.last_evaluation_seconds = time.perf_counter() - started
        return pushed

    def evaluate(self, now: float, *, immediate_only: bool) -> list[Alert]:
        """Evaluate between ticks (an event arrived): current values, history as of the last tick."""
        self._refresh(now)
        self.stats.immediate_evaluations += 1
        return self._evaluate_rules(now, immediate_only=immediate_only)

    def _refresh(self, now: float) -> None:
        changed_rows, changed_slots = self.signals.refresh_identity()
        if len(changed_rows) or len(changed_slots):
            self._forget(changed_rows, changed_slots, now)
        self.gpu_now = self.signals.gpu_matrix()
        self.host_now = self.signals.host_matrix(now)

    def _forget(self, rows: IntArray, slots: IntArray, now: float) -> None:
        """Rows and slots now owned by another GPU or host start over: state, history, alerts."""
        for rule in self.rules.rules:
            state = self.states[rule.name]
            state.forget(rows if rule.scope == "gpu" else slots)
            for i in (rows if rule.scope == "gpu" else slots).tolist():
                alert = self.active.pop((rule.name, i), None)
                if alert is not None and alert.state is AlertState.FIRING:
                    self._push([alert.resolved(now)], now)
        self.gpu_history.forget_rows(rows)
        self.host_history.forget_rows(slots)
        self.baseline.forget(rows)
        self.thermal.forget(rows)
        self.signals.forget_xids(rows)
        n = self.signals.gpu_rows
        models = np.zeros(n, dtype=np.int64)
        for row, meta in enumerate(self.store.gpu_meta):
            if meta is not None:
                models[row] = self._models.setdefault(meta.model, len(self._models))
        self.model_ids = models
        if len(self.job_ids) < n:
            self.job_ids = np.concatenate([self.job_ids, np.zeros(n - len(self.job_ids), dtype=np.int64)])
        self.job_ids[rows[rows < n]] = 0

    def _run_detectors(self, now: float) -> None:
        sig = self.signals
        n = sig.gpu_rows
        if n == 0:
            return
        g = self.gpu_now
        read = {name: g[:, i] for name, i in sig.gpu_index.items() if i < len(sig.field_names) + 6}
        valid = sig.gpu_valid() & ~self.store.gpu_lost[:n]
        scores = self.peers.score(
            read,
            host_slot=self.store.gpu_host_slot[:n],
            model=self.model_ids[:n] if len(self.model_ids) >= n else np.zeros(n, dtype=np.int64),
            job=self.job_ids[:n] if len(self.job_ids) >= n else np.zeros(n, dtype=np.int64),
            valid=valid,
        )
        read.update(scores)
        band = np.where(valid, load_band(read["utilization"]), -1)
        scores.update(self.baseline.score(read, band, now))
        temperature = np.where(valid, read["temperature"], np.nan)
        scores.update(self.thermal.score(temperature, read["power_usage"], now))
        for j, name in enumerate(sig.score_names):
            sig.scores[:n, j] = scores[name]

    def _evaluate_rules(self, now: float, *, immediate_only: bool) -> list[Alert]:
        out: list[Alert] = []
        resolved: list[Alert] = []
        contexts = {"gpu": _Context(self, "gpu", now), "host": _Context(self, "host", now)}
        valid = {"gpu": self.signals.gpu_valid(), "host": self.signals.host_valid()}
        for rule in self.rules.rules:
            if immediate_only and not rule.immediate:
                continue
            ctx = contexts[rule.scope]
            try:
                values = np.broadcast_to(rule.expr.evaluate(ctx), (ctx.rows,))
                shown = np.broadcast_to(rule.value.evaluate(ctx), (ctx.rows,))
            except Exception as exc:  # one broken rule must not stop the others
                self.stats.rule_failures[rule.name] = self.stats.rule_failures.get(rule.name, 0) + 1
                log.error("rule evaluation failed", rule=rule.name, error=repr(exc))
                continue
            cond = ex.truth(values) & valid[rule.scope]
            alerts, ended = self._advance(rule, cond, shown, now)
            out.extend(alerts)
            resolved.extend(ended)
        self._push(out + resolved, now)
        return out + resolved

    def _advance(
        self, rule: Rule, cond: npt.NDArray[np.bool_], shown: Array, now: float
    ) -> tuple[list[Alert], list[Alert]]:
        state = self.states[rule.name]
        state.fit(len(cond))
        n = len(cond)
        since, cleared, firing = state.active_since[:n], state.cleared_at[:n], state.firing[:n]
        since[cond & np.isnan(since)] = now
        cleared[cond] = np.nan
        cleared[firing & ~cond & np.isnan(cleared)] = now
        with np.errstate(invalid="ignore"):
            held = cond & (now - since >= rule.for_seconds - 1e-9)
            # As Prometheus: keep firing until keep_firing_for has passed since the first false evaluation.
            kept = firing & ~cond & (now - cleared < rule.keep_firing_for - 1e-9)
        fire = held | kept
        pending = cond & ~fire
        ended_rows = np.nonzero(firing & ~fire)[0]
        since[~cond & ~kept] = np.nan
        cleared[~kept] = np.nan
        firing[:] = fire
        alerts: list[Alert] = []
        for row in np.nonzero(fire | pending)[0].tolist():
            alerts.append(self._alert(rule, row, bool(fire[row]), float(since[row]), float(shown[row])))
        ended: list[Alert] = []
        for row in ended_rows.tolist():
            previous = self.active.pop((rule.name, row), None)
            if previous is not None:
                ended.append(previous.resolved(now))
        # A pending alert whose condition cleared before `for` passed just goes away (never paged).
        live = fire | pending
        for key in [k for k in self.active if k[0] == rule.name and (k[1] >= n or not live[k[1]])]:
            del self.active[key]
        return alerts, ended

    def _alert(self, rule: Rule, row: int, firing: bool, since: float, value: float) -> Alert:
        labels = {"alertname": rule.name, "severity": rule.severity.name.lower(), **self._identity(rule.scope, row)}
        for key, template in rule.labels.items():
            labels[key] = render(template, labels, value)
        annotations = {key: render(template, labels, value) for key, template in rule.annotations.items()}
        alert = Alert(
            labels=labels,
            state=AlertState.FIRING if firing else AlertState.PENDING,
            starts_at=since,
            annotations=annotations,
            active_at=since,
        )
        self.active[(rule.name, row)] = alert
        return alert

    def _identity(self, scope: str, row: int) -> dict[str, str]:
        store = self.store
        if scope == "host":
            record = store.by_slot[row]
            return {"host": record.host_id if record else ""}
        meta = store.gpu_meta[row]
        slot = int(store.gpu_host_slot[row])
        record = store.by_slot[slot] if slot >= 0 else None
        if meta is None or record is None:
            return {"host": "", "gpu": ""}
        return {"host": record.host_id, "gpu": str(meta.index), "uuid": meta.uuid, "model": meta.model}

    def _push(self, alerts: list[Alert], now: float) -> None:
        if alerts:
            self.stats.alerts_pushed += len(alerts)
            self.sink.push(alerts, now)

    # -- for exposition ----------------------------------------------------------------------------
    def active_alerts(self) -> list[Alert]:
        return list(self.active.values())
