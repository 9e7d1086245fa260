"""Two collectors, agents spread over them by rendezvous hashing, failover when one dies, return when it is back."""

from __future__ import annotations

import itertools
from pathlib import Path

from agent.placement import rank
from tests.kit import Collector, Pki, Service, metric_value, start_agent, start_collector, wait_for


def _hosts_for(targets: list[str], per_target: int) -> dict[str, str]:
    """Pick host names whose preferred collector is each target in turn: ``per_target`` apiece."""
    chosen: dict[str, str] = {}
    for i in itertools.count():
        host = f"gpu-{i:03d}"
        home = rank(host, targets)[0]
        if sum(1 for t in chosen.values() if t == home) < per_target:
            chosen[host] = home
        if len(chosen) == per_target * len(targets):
            return chosen
    raise AssertionError("unreachable")


def _serving(collector: Collector, host: str) -> bool:
    return metric_value(collector.metrics(), "gpulse_host_up", host=host) == 1


def test_agents_spread_by_rendezvous_and_fail_over(tmp: Path, test_pki: Pki, services: list[Service]) -> None:
    c1 = start_collector(tmp, test_pki, name="c1")
    services.append(c1)
    c2 = start_collector(tmp, test_pki, name="c2")
    services.append(c2)
    by_target = {c1.target: c1, c2.target: c2}
    # Every agent lists the collectors in the same order: placement, not list order, picks the home.
    targets = [c1.target, c2.target]
    homes = _hosts_for(targets, per_target=2)
    for host in homes:
        services.append(
            start_agent(
                tmp,
                test_pki,
                host,
                targets,
                collector={"server_name": "", "rehome_after": 2.0},
                sim={"count": 1},
                interval=0.25,
            )
        )

    def all_home() -> bool:
        return all(_serving(by_target[home], host) for host, home in homes.items())

    wait_for(all_home, timeout=30, what="every agent streaming to its rendezvous home")
    for collector in (c1, c2):
        text = collector.metrics()
        shard = [h for h, home in homes.items() if home == collector.target]
        assert metric_value(text, "gpulse_collector_shard_info", collector_id=collector.name) == 1
        assert metric_value(text, "gpulse_collector_connected_agents") == len(shard)
        # each collector exports only its own shard
        for host in homes:
            assert (metric_value(text, "gpulse_host_up", host=host) == 1) == (host in shard)

    c1.kill()
    orphans = [h for h, home in homes.items() if home == c1.target]
    wait_for(lambda: all(_serving(c2, h) for h in orphans), timeout=30, what="c1's hosts failing over to c2")
    assert metric_value(c2.metrics(), "gpulse_collector_connected_agents") == len(homes)

    # c1 comes back (same address): its hosts return to it; c2's own hosts never moved.
    c1.start().wait_ready()
    wait_for(lambda: all(_serving(c1, h) for h in orphans), timeout=30, what="c1's hosts going home")
    wait_for(
        lambda: metric_value(c2.metrics(), "gpulse_collector_connected_agents") == len(homes) - len(orphans),
        timeout=15,
        what="c2 back to its own shard",
    )


def test_a_killed_agent_leaves_its_collectors_shard_at_once(tmp: Path, test_pki: Pki, services: list[Service]) -> None:
    collector = start_collector(tmp, test_pki)
    services.append(collector)
    agent = start_agent(tmp, test_pki, "gpu-gone", [collector.target], sim={"count": 1}, interval=0.25)
    services.append(agent)
    wait_for(lambda: _serving(collector, "gpu-gone"), what="the agent streaming")
    assert metric_value(collector.metrics(), "gpulse_collector_connected_agents") == 1
    agent.kill()  # the stream is cut, not closed: the collector must still notice (not wait for keepalive)
    wait_for(
        lambda: metric_value(collector.metrics(), "gpulse_collector_connected_agents") == 0,
        timeout=5,
        what="the collector letting the stream go",
    )
