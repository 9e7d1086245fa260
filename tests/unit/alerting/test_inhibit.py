from __future__ import annotations

from collector.alert import Alert
from collector.alerting.inhibit import DEFAULT_RULES, Inhibitor

from .helpers import alert


def inhibitor(firing: list[Alert]) -> Inhibitor:
    return Inhibitor(DEFAULT_RULES, lambda: firing)


def test_host_down_inhibits_that_hosts_gpu_alerts_only() -> None:
    down = alert(name="HostDown", severity="critical", host="h1")
    inh = inhibitor([down])
    assert inh.mutes(alert(name="GpuHot", host="h1", gpu="3").labels)
    assert not inh.mutes(alert(name="GpuHot", host="h2", gpu="3").labels)
    assert not inh.mutes(down.labels)  # never itself
    assert not inh.mutes(alert(name="ClockSkew", host="h1").labels)  # not a GPU alert


def test_gpu_lost_inhibits_that_gpus_other_alerts() -> None:
    lost = alert(name="GpuLost", severity="critical", host="h1", gpu="2")
    inh = inhibitor([lost])
    assert inh.inhibited_by(alert(name="GpuHot", host="h1", gpu="2").labels) == lost
    assert not inh.mutes(alert(name="GpuHot", host="h1", gpu="1").labels)
    assert not inh.mutes(alert(name="GpuLost", host="h1", gpu="3").labels)


def test_nothing_firing_inhibits_nothing() -> None:
    assert not inhibitor([]).mutes(alert(host="h1", gpu="0").labels)


def test_index_follows_the_generation() -> None:
    firing: list[Alert] = []
    generation = [0]
    inh = Inhibitor(DEFAULT_RULES, lambda: firing, lambda: generation[0])
    target = alert(name="GpuHot", host="h1", gpu="0").labels
    assert not inh.mutes(target)
    firing.append(alert(name="HostDown", severity="critical", host="h1"))
    assert not inh.mutes(target)  # same generation: the cached index still holds
    generation[0] += 1
    assert inh.mutes(target)
