"""Alerting wired together in one place: state, lifecycle, dispatcher, muters, notifier, outbox, receivers.

``reload`` swaps in a new ``[alerting]`` config (SIGHUP) while the state, the outbox and the silences
carry on: what is notified from then on follows the new routes, receivers, timings and inhibit rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import aiohttp
import structlog
from prometheus_client import CollectorRegistry

from collector.alert import Alert
from collector.alerting.config import AlertingConfig
from collector.alerting.context import StoreContext
from collector.alerting.dispatch import Dispatcher
from collector.alerting.inhibit import Inhibitor
from collector.alerting.lifecycle import AlertLifecycle, Enricher
from collector.alerting.metrics import AlertingMetrics
from collector.alerting.mute import Muter
from collector.alerting.notify import Notifier
from collector.alerting.outbox import Deliverer, RetryPolicy
from collector.alerting.receivers import AlertmanagerConfig, Receiver, build_receivers
from collector.alerting.silence import Silencer
from collector.alerting.state import AlertingState
from collector.store import FleetStore

log = structlog.get_logger("gpulse.alerting")

Clock = Callable[[], float]
STATE_FILE = "alerting.sqlite3"


class AlertingService:
    """The collector's ``AlertSink``; ``start()`` runs the timers and the outbox, ``shutdown()`` stops them."""

    def __init__(
        self,
        config: AlertingConfig,
        state_dir: Path,
        registry: CollectorRegistry,
        *,
        store: FleetStore | None = None,
        clock: Clock = time.time,
        retry: RetryPolicy | None = None,
        receivers: dict[str, Receiver] | None = None,
        annotate: Enricher | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.state = AlertingState(state_dir / STATE_FILE)
        self.metrics = AlertingMetrics(registry)
        self._store = store
        self._annotate = annotate  # e.g. the suggested action, after the store's context
        self.dispatcher = Dispatcher(config.route, resend_intervals(config))
        self.lifecycle = AlertLifecycle(
            self.state,
            self.dispatcher,
            resolve_timeout=config.resolve_timeout,
            on_reject=lambda reason: self.metrics.alerts_rejected.labels(reason).inc(),
            enrich=self._enricher(config),
        )
        self.silencer = Silencer(self.state, clock)
        self.inhibitor = self._inhibitor(config)
        self.muters: dict[str, Muter] = {"inhibition": self.inhibitor, "silence": self.silencer}
        self._retry = retry
        self._given_receivers = receivers
        # One dict, shared with the notifier and the deliverer: a reload updates it in place.
        self.receivers: dict[str, Receiver] = {}
        # Receivers a reload removed that still owe a resolve or a queued notification.
        self.retired: set[str] = set()
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopped = False
        self.notifier: Notifier | None = None
        self.deliverer: Deliverer | None = None

    async def start(self, *, background: bool = True) -> None:
        """Open receivers and restore state; ``background=False`` leaves calling ``step`` to the caller."""
        self._session = aiohttp.ClientSession()
        self.receivers.update(
            self._given_receivers or build_receivers(self.config.receivers, self._session, self.clock)
        )
        self.notifier = Notifier(self.state, self.receivers, self.muters, self.metrics)
        self.deliverer = Deliverer(self.state, self.receivers, self.metrics, policy=self._retry)
        self.metrics.watch(self.lifecycle.counts, self.state.outbox_depth, tuple(self.receivers))
        self.lifecycle.restore(self.clock())
        depth = sum(self.state.outbox_depth().values())
        if depth:
            log.info("pending notifications found in the outbox", count=depth)
        if background:
            self._task = asyncio.create_task(self._run(), name="alerting")

    def _enricher(self, config: AlertingConfig) -> Enricher:
        steps: list[Enricher] = [StoreContext(self._store, config.dashboard_url)] if self._store is not None else []
        steps += [self._annotate] if self._annotate is not None else []

        def enrich(alert: Alert) -> Alert:
            for step in steps:
                alert = step(alert)
            return alert

        return enrich

    def _inhibitor(self, config: AlertingConfig) -> Inhibitor:
        return Inhibitor(config.inhibit_rules, self.lifecycle.firing, lambda: self.lifecycle.generation)

    def reload(self, config: AlertingConfig, *, receivers: Mapping[str, Receiver] | None = None) -> str:
        """Apply a new ``[alerting]`` config to what is notified from now on; returns a one-line summary.

        Raises ValueError, changing nothing, when a route names a receiver the config does not define.
        Firing alerts keep their state and stay with the receiver that paged them until they resolve
        (``Dispatcher.reload``); the outbox and the silences are untouched.
        """
        assert self._session is not None, "start() first"
        problem = unknown_receivers(config)
        if problem:
            raise ValueError(problem)
        built = (
            dict(receivers) if receivers is not None else build_receivers(config.receivers, self._session, self.clock)
        )
        # A removed receiver stays until it has sent what it owes: the resolves of what it paged and
        # what waits for it in the outbox. Its old settings are the ones those incidents were opened with.
        leaving = {name: r for name, r in self.receivers.items() if name not in built}
        resend = {**resend_intervals(config), **{n: r.resend_interval for n, r in leaving.items() if r.resend_interval}}
        now = self.clock()
        self.dispatcher.reload(config.route, resend, self._told, now)
        self.receivers.clear()
        self.receivers.update(built)
        self.receivers.update(leaving)
        self.retired = set(leaving)
        self.metrics.follow_receivers(tuple(self.receivers))
        self._prune_retired()
        self.inhibitor = self._inhibitor(config)
        self.muters["inhibition"] = self.inhibitor
        self.lifecycle.resolve_timeout = config.resolve_timeout
        self.lifecycle.enrich = self._enricher(config)
        self.config = config
        self._wake.set()  # a route that changed for alerts still waiting should act at once
        firing = len(self.lifecycle.firing())
        kept = f", {len(self.retired)} removed receivers finishing" if self.retired else ""
        log.info(
            "alerting config reloaded",
            receivers=sorted(built),
            retired=sorted(self.retired),
            firing=firing,
            groups=self.dispatcher.group_count(),
        )
        return f"alerting: {len(built)} receivers{kept}, {firing} firing alerts kept"

    def _told(self, receiver: str, group_key: str) -> frozenset[str]:
        entry = self.state.nflog_get(receiver, group_key)
        return entry.firing if entry is not None else frozenset()

    def _prune_retired(self) -> None:
        """Drop removed receivers once no group will notify them and the outbox holds nothing for them."""
        if not self.retired:
            return
        busy = self.dispatcher.receivers() | set(self.state.outbox_depth())
        done = self.retired - busy
        for name in done:
            self.retired.discard(name)
            self.receivers.pop(name, None)
            log.info("removed receiver has sent what it owed", receiver=name)
        if done:
            self.metrics.follow_receivers(tuple(self.receivers))

    # -- AlertSink ---------------------------------------------------------------------------------
    def push(self, alerts: Sequence[Alert], now: float) -> None:
        self.lifecycle.push(alerts, now)
        self._wake.set()  # a critical alert should not wait for the next tick

    def wake(self) -> None:
        """Run a step now rather than at the next tick (after a push or a silence change)."""
        self._wake.set()

    # -- the loop ----------------------------------------------------------------------------------
    async def step(self, now: float) -> None:
        """One turn: resolve what went quiet, flush due groups into the outbox, deliver what is due."""
        assert self.notifier is not None and self.deliverer is not None, "start() first"
        self.lifecycle.expire(now)
        flushes = self.dispatcher.tick(now)
        if flushes:
            with self.state.transaction():  # a storm of groups is one disk sync, not one per group
                for flush in flushes:
                    self.notifier.process(flush, now)
                    self.lifecycle.forget_flushed([a.fingerprint for a in flush.alerts])
        await self.deliverer.deliver_due(now)
        self._prune_retired()

    async def _run(self) -> None:
        last_gc = 0.0
        while not self._stopped:
            try:
                now = self.clock()
                await self.step(now)
                if now - last_gc > 3600:
                    self.silencer.gc()
                    last_gc = now
            except Exception:  # keep alerting alive; the state database holds what is owed
                log.exception("alerting step failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.tick_interval)
            self._wake.clear()

    async def shutdown(self) -> None:
        """Stop the loop and close the database; what is unsent stays in the outbox. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        self._wake.set()
        if self._task is not None:
            # A delivery in flight gets its own timeout to finish; past that it is cancelled and its
            # row stays in the outbox for the next start.
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, timeout=15)
        if self._session is not None:
            await self._session.close()
        self.metrics.unwatch()
        self.state.close()


def resend_intervals(config: AlertingConfig) -> dict[str, float]:
    """Receivers that must hear of firing alerts at least this often (Alertmanager forgets silent alerts)."""
    return {r.name: r.resend_interval for r in config.receivers if isinstance(r, AlertmanagerConfig)}


def unknown_receivers(config: AlertingConfig) -> str:
    """A problem when a route names a receiver the config lacks ("" when none); ``parse`` refuses these
    too, this guards configs built in code."""
    names = {r.name for r in config.receivers}
    for route in config.route.walk():
        if route.receiver not in names:
            return f"route {route.path} names no configured receiver: {route.receiver!r}"
    return ""
