from __future__ import annotations

import collections

from agent.placement import rank, weight

TARGETS = ("c1:7443", "c2:7443", "c3:7443", "c4:7443")


def test_ranking_is_a_permutation_and_deterministic() -> None:
    order = rank("node-17", TARGETS)
    assert sorted(order) == sorted(TARGETS)
    assert rank("node-17", reversed(TARGETS)) == order  # the config's list order does not matter
    assert rank("node-17", [*TARGETS, "c1:7443"]) == order  # nor duplicates


def test_weight_is_stable_across_releases() -> None:
    # A change here would move every host to another collector on upgrade.
    assert weight("node-1", "c1:7443") == weight("node-1", "c1:7443")
    assert rank("node-1", ("a:1", "b:1")) == rank("node-1", ("b:1", "a:1"))
    assert weight("node-1", "a:1") != weight("node-1", "b:1")


def test_hosts_spread_evenly() -> None:
    hosts = [f"gpu-{i:05d}" for i in range(4000)]
    first = collections.Counter(rank(h, TARGETS)[0] for h in hosts)
    assert set(first) == set(TARGETS)
    for count in first.values():
        assert 800 < count < 1200, first  # 1000 expected each; binomial sd is about 27


def test_removing_a_collector_moves_only_its_hosts() -> None:
    hosts = [f"gpu-{i:05d}" for i in range(2000)]
    before = {h: rank(h, TARGETS)[0] for h in hosts}
    survivors = tuple(t for t in TARGETS if t != "c3:7443")
    after = {h: rank(h, survivors)[0] for h in hosts}
    moved = {h for h in hosts if before[h] != after[h]}
    assert moved == {h for h in hosts if before[h] == "c3:7443"}
    # and each moved host goes where its failover order already pointed
    assert all(after[h] == rank(h, TARGETS)[1] for h in moved)


def test_failover_order_spreads_a_dead_collectors_hosts() -> None:
    hosts = [f"gpu-{i:05d}" for i in range(3000)]
    orphans = [h for h in hosts if rank(h, TARGETS)[0] == "c1:7443"]
    second = collections.Counter(rank(h, TARGETS)[1] for h in orphans)
    assert set(second) == {"c2:7443", "c3:7443", "c4:7443"}  # no single collector takes them all
    assert max(second.values()) < 0.5 * len(orphans)


def test_adding_a_collector_takes_a_fair_share() -> None:
    hosts = [f"gpu-{i:05d}" for i in range(3000)]
    grown = (*TARGETS, "c5:7443")
    moved = [h for h in hosts if rank(h, TARGETS)[0] != rank(h, grown)[0]]
    assert all(rank(h, grown)[0] == "c5:7443" for h in moved)
    assert 0.15 < len(moved) / len(hosts) < 0.25  # about 1/5
