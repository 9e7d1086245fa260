"""The ``[alerting]`` part of the collector config: receivers, the routing tree, inhibit rules, timings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from collector.alerting.inhibit import DEFAULT_RULES, InhibitRule
from collector.alerting.matchers import parse_all
from collector.alerting.receivers import LogConfig, ReceiverConfig, parse_receiver
from collector.alerting.routing import Route, Timing
from runtime.configfile import Section

DEFAULT_RECEIVER = LogConfig("log")


@dataclass(frozen=True, slots=True)
class AlertingConfig:
    receivers: tuple[ReceiverConfig, ...] = (DEFAULT_RECEIVER,)
    route: Route = field(default_factory=lambda: Route(receiver="log"))
    inhibit_rules: tuple[InhibitRule, ...] = DEFAULT_RULES
    resolve_timeout: float = 300.0
    dashboard_url: str = ""
    tick_interval: float = 0.5


def _matchers(section: Section, key: str) -> tuple[str, ...]:
    values = section.get(key, list, [])
    if not all(isinstance(v, str) for v in values):
        raise section.error(key, f"expected a list of strings like 'host=node-1', got {values!r}")
    try:
        parse_all(values)
    except ValueError as exc:
        raise section.error(key, str(exc)) from None
    return tuple(values)


def _route(section: Section, parent: Route | None, path: str, receivers: set[str]) -> Route:
    inherited_timing = parent.timing if parent else Timing()
    receiver = section.get("receiver", str, parent.receiver if parent else "")
    if not receiver:
        raise section.error("receiver", "the root route needs a receiver")
    if receiver not in receivers:
        raise section.error("receiver", f"no receiver named {receiver!r}; have {', '.join(sorted(receivers))}")
    matchers = _matchers(section, "matchers")
    if parent is None and matchers:
        raise section.error("matchers", "the root route matches every alert; put matchers on child routes")
    group_by = section.get("group_by", list, list(parent.group_by) if parent else ["alertname", "host"])
    if not all(isinstance(g, str) and g for g in group_by):
        raise section.error("group_by", f"expected a list of label names, got {group_by!r}")
    timing = Timing(
        group_wait=_non_negative(section, "group_wait", inherited_timing.group_wait),
        group_interval=section.positive("group_interval", inherited_timing.group_interval),
        repeat_interval=section.positive("repeat_interval", inherited_timing.repeat_interval),
        critical_bypasses_group_wait=section.get(
            "critical_bypasses_group_wait", bool, inherited_timing.critical_bypasses_group_wait
        ),
    )
    continue_ = section.get("continue", bool, False)
    if parent is None and continue_:
        raise section.error("continue", "only child routes can continue")
    node = Route(receiver, parse_all(matchers), tuple(group_by), timing, continue_, (), path)
    children = tuple(
        _route(child, node, f"{path}.{i}", receivers) for i, child in enumerate(section.sections("routes"))
    )
    section.finish()
    return Route(receiver, node.matchers, node.group_by, timing, continue_, children, path)


def _non_negative(section: Section, key: str, default: float) -> float:
    value = section.get(key, float, default)
    if value < 0:
        raise section.error(key, f"must not be negative, got {value}")
    return value


def _inhibit_rule(section: Section) -> InhibitRule:
    source = _matchers(section, "source_matchers")
    target = _matchers(section, "target_matchers")
    if not source or not target:
        raise section.error("source_matchers" if not source else "target_matchers", "must not be empty")
    equal = section.get("equal", list, [])
    if not all(isinstance(e, str) and e for e in equal):
        raise section.error("equal", f"expected a list of label names, got {equal!r}")
    section.finish()
    return InhibitRule(parse_all(source), parse_all(target), tuple(equal))


def parse(section: Section, env: Mapping[str, str] | None = None) -> AlertingConfig:
    """Read ``[alerting]``; with no receivers configured, alerts go to the log receiver."""
    receiver_sections = section.sections("receivers")
    receivers = tuple(parse_receiver(s, env) for s in receiver_sections) or (DEFAULT_RECEIVER,)
    names = [r.name for r in receivers]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise section.error("receivers", f"receiver name {duplicates[0]!r} is used more than once")
    route_section = section.section("route")
    if not route_section.data and len(receivers) == 1:
        route = Route(receiver=receivers[0].name)
        route_section.finish()
    else:
        route = _route(route_section, None, "root", set(names))
    rule_sections = section.sections("inhibit_rules")
    rules = tuple(_inhibit_rule(s) for s in rule_sections) if "inhibit_rules" in section.data else DEFAULT_RULES
    config = AlertingConfig(
        receivers=receivers,
        route=route,
        inhibit_rules=rules,
        resolve_timeout=section.positive("resolve_timeout", 300.0),
        dashboard_url=section.get("dashboard_url", str, ""),
        tick_interval=section.positive("tick_interval", 0.5),
    )
    section.finish()
    return config
