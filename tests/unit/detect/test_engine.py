from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest

from collector.alert import AlertState
from collector.detect.exposition import DetectionCollector
from protos import telemetry_pb2 as pb
from tests.kit import metric_value
from tests.unit.detect.helpers import Fleet, write_rules

HOT = """
[[rule]]
name = "Hot"
expr = "temperature > 85"
for = "3s"
keep_firing_for = "2s"
severity = "warning"
annotations = { summary = "{{ $labels.host }} GPU {{ $labels.gpu }} at {{ $value }} C" }
"""


def test_for_delays_firing_and_pending_is_pushed_meanwhile(tmp_path: Path) -> None:
    fleet = Fleet([write_rules(tmp_path / "r.toml", HOT)])
    fleet.add_host("a")
    fleet.step()
    fleet.set("a", 2, "temperature", 90.0)
    pushed = fleet.step()
    assert [(a.name, a.state, a.labels["gpu"]) for a in pushed] == [("Hot", AlertState.PENDING, "2")]
    fleet.step()
    fleet.step()
    assert fleet.firing() == set()
    pushed = fleet.step()  # three seconds after the condition first held
    assert [a.state for a in pushed] == [AlertState.FIRING]
    alert = pushed[0]
    assert alert.annotations["summary"] == "a GPU 2 at 90 C"
    assert dict(alert.labels) == {
        "alertname": "Hot",
        "severity": "warning",
        "host": "a",
        "gpu": "2",
        "uuid": "GPU-a-2",
        "model": "NVIDIA H100 80GB HBM3",
    }
    assert alert.starts_at == 1002.0


def test_keep_firing_for_then_one_resolve(tmp_path: Path) -> None:
    fleet = Fleet([write_rules(tmp_path / "r.toml", HOT)])
    fleet.add_host("a")
    fleet.set("a", 0, "temperature", 90.0)
    for _ in range(4):
        fleet.step()
    assert fleet.firing() == {("Hot", "a", "0")}
    fleet.set("a", 0, "temperature", 70.0)
    assert [a.state for a in fleet.step()] == [AlertState.FIRING]  # kept firing for 2s
    assert [a.state for a in fleet.step()] == [AlertState.FIRING]
    resolved = fleet.step()
    assert [a.state for a in resolved] == [AlertState.RESOLVED]
    assert resolved[0].ends_at == fleet.now
    assert fleet.step() == []  # resolved once, then nothing


def test_a_pending_alert_that_clears_is_never_fired_nor_resolved(tmp_path: Path) -> None:
    fleet = Fleet([write_rules(tmp_path / "r.toml", HOT)])
    fleet.add_host("a")
    fleet.set("a", 1, "temperature", 90.0)
    fleet.step()
    fleet.set("a", 1, "temperature", 60.0)
    assert fleet.step() == []
    assert fleet.engine.active_alerts() == []
    assert all(a.state is AlertState.PENDING for _, a in fleet.sink.pushes)


def test_rate_delta_and_absent_over_the_history(tmp_path: Path) -> None:
    rules = write_rules(
        tmp_path / "r.toml",
        """
[[rule]]
name = "Replays"
expr = "rate(pcie_replay[10s]) > 5"
severity = "warning"
[[rule]]
name = "Warming"
expr = "delta(temperature[5s]) > 4"
severity = "info"
[[rule]]
name = "Silent"
expr = "absent(power_usage[5s])"
severity = "warning"
""",
    )
    fleet = Fleet([rules])
    fleet.add_host("a", gpus=3)
    for i in range(12):
        fleet.set("a", 0, "pcie_replay", 10.0 * i)  # 10/s
        fleet.set("a", 1, "pcie_replay", 1.0 * i)  # 1/s: fine
        fleet.step()
    assert fleet.firing("Replays") == {("Replays", "a", "0")}
    fleet.set("a", 0, "pcie_replay", 3.0)  # the driver reloaded: a reset, not a negative rate
    fleet.step()
    assert fleet.firing("Replays") == {("Replays", "a", "0")}
    assert fleet.firing("Warming") == set()
    fleet.set("a", 2, "temperature", 80.0)
    fleet.step()
    assert fleet.firing("Warming") == {("Warming", "a", "2")}
    fleet.set("a", 1, "power_usage", np.nan)
    for _ in range(4):
        fleet.step()
    assert fleet.firing("Silent") == set()  # 4s of 5s
    fleet.step()
    assert fleet.firing("Silent") == {("Silent", "a", "1")}


def test_unsupported_fields_are_not_absent(tmp_path: Path) -> None:
    rules = write_rules(
        tmp_path / "r.toml", '[[rule]]\nname = "NoFan"\nexpr = "absent(fan_speed[3s])"\nseverity = "info"\n'
    )
    fleet = Fleet([rules])
    fleet.add_host("a")
    for _ in range(5):
        fleet.step()
    # fan_speed was never read on any GPU: absent for all, as for a GPU that stopped reporting it.
    assert len(fleet.firing("NoFan")) == 4


def test_hard_faults_are_pushed_when_the_event_arrives_not_on_the_tick() -> None:
    fleet = Fleet()  # the default pack
    fleet.add_host("a")
    fleet.step()
    fleet.sink.pushes.clear()
    fleet.now += 0.3  # between ticks
    fleet.event("a", pb.Event(unix_ns=0, xid=pb.XidEvent(gpu_index=3, xid=79, count=1)))
    pushed = [a for _, a in fleet.sink.pushes]
    assert [(a.name, a.state, a.labels["gpu"], a.labels["severity"]) for a in pushed] == [
        ("GpuXidRebootRequired", AlertState.FIRING, "3", "critical")
    ]
    assert fleet.sink.pushes[0][0] == fleet.now
    fleet.now += 0.1
    fleet.event("a", pb.Event(unix_ns=0, gpu_lost=pb.GpuLostEvent(gpu_index=3, reason="fell off the bus")))
    assert ("GpuLost", "a", "3") in fleet.firing()
    assert fleet.engine.stats.immediate_evaluations == 2


def test_xid_classes_route_to_their_action() -> None:
    fleet = Fleet()
    fleet.add_host("a", gpus=4)
    fleet.step()
    for gpu, xid in enumerate((13, 48, 119, 74)):
        fleet.event("a", pb.Event(xid=pb.XidEvent(gpu_index=gpu, xid=xid, count=1)))
    actions = {a.labels["gpu"]: (a.name, a.labels["action"]) for a in fleet.engine.active_alerts()}
    assert actions == {
        "0": ("GpuXidApplicationError", "restart_app"),
        "1": ("GpuXidMemoryUncorrectable", "reset_gpu"),
        "2": ("GpuXidResetRequired", "reset_gpu"),
        "3": ("GpuXidNvlink", "reset_gpu"),
    }


def test_host_down_and_spool_drops_and_missing_gpus() -> None:
    fleet = Fleet()
    fleet.add_host("a", gpus=2)
    fleet.add_host("b", gpus=2)
    fleet.step()
    for _ in range(10):
        fleet.now += 1
        fleet.send("a")  # b went quiet
        fleet.engine.tick(fleet.now)
    assert ("HostDown", "b", "") in fleet.firing()
    assert ("HostDown", "a", "") not in fleet.firing()
    fleet.engine.event_applied(fleet.records["a"], pb.Event(spool_drop=pb.SpoolDropEvent(records=12)))
    assert ("AgentSpoolDropping", "a", "") in fleet.firing()
    # a comes back with one GPU fewer
    fleet.add_host("a", gpus=1)
    fleet.step()
    assert ("GpuMissingFromInventory", "a", "") in fleet.firing()


def test_peer_straggler_fires_and_scores_are_exported() -> None:
    fleet = Fleet()
    fleet.add_host("a", gpus=8)
    fleet.set("a", 5, "sm_clock", 1600e6)
    for _ in range(12):
        fleet.step()
    assert fleet.firing("GpuStraggler") == {("GpuStraggler", "a", "5")}
    registry = CollectorRegistry()
    registry.register(DetectionCollector(fleet.engine))
    text = generate_latest(registry).decode()
    assert metric_value(text, "gpulse_detect_peer_score", host="a", gpu="5", signal="sm_clock") < -4
    assert metric_value(text, "gpulse_detect_peer_score", host="a", gpu="1", signal="sm_clock") == 0
    assert metric_value(text, "gpulse_detect_alert", alertname="GpuStraggler", alertstate="firing", gpu="5") == 1
    assert metric_value(text, "gpulse_detect_rules") == len(fleet.engine.rules.rules)
    assert "gpulse_detect_baseline_score" in text


def test_rules_reload_when_the_file_changes_and_a_bad_edit_keeps_the_old_ones(tmp_path: Path) -> None:
    path = write_rules(tmp_path / "r.toml", HOT)
    fleet = Fleet([path], reload_check_interval=0.5)
    fleet.add_host("a")
    fleet.set("a", 0, "temperature", 80.0)
    fleet.step()
    assert [r.name for r in fleet.engine.rules.rules] == ["Hot"]
    path.write_text(HOT.replace('"Hot"', '"Warm"').replace("> 85", "> 75").replace('"3s"', '"0s"'))
    os.utime(path, (1, 1))  # a different mtime even within the filesystem's timestamp granularity
    fleet.step()
    assert [r.name for r in fleet.engine.rules.rules] == ["Warm"]
    assert fleet.firing() == {("Warm", "a", "0")}
    assert fleet.engine.stats.reloads_ok == 1
    path.write_text(HOT.replace("temperature", "temprature"))
    os.utime(path, (2, 2))
    fleet.step()
    assert [r.name for r in fleet.engine.rules.rules] == ["Warm"]
    assert fleet.engine.stats.reloads_failed == 1
    assert "rule 'Hot': unknown signal 'temprature'" in fleet.engine.stats.last_reload_error


def test_removing_a_rule_resolves_its_firing_alerts(tmp_path: Path) -> None:
    path = write_rules(tmp_path / "r.toml", HOT.replace('"3s"', '"0s"'))
    fleet = Fleet([path], reload_check_interval=0.0)
    fleet.add_host("a")
    fleet.set("a", 0, "temperature", 90.0)
    fleet.step()
    assert fleet.firing() == {("Hot", "a", "0")}
    path.write_text("")
    os.utime(path, (1, 1))
    fleet.sink.pushes.clear()
    fleet.step()
    assert [(a.name, a.state) for _, a in fleet.sink.pushes] == [("Hot", AlertState.RESOLVED)]


def test_a_reused_row_does_not_inherit_another_gpus_alert(tmp_path: Path) -> None:
    fleet = Fleet([write_rules(tmp_path / "r.toml", HOT.replace('"3s"', '"1s"').replace('"2s"', '"0s"'))])
    fleet.add_host("a", gpus=2)
    fleet.set("a", 1, "temperature", 90.0)
    fleet.step()
    fleet.step()
    assert fleet.firing() == {("Hot", "a", "1")}
    old_row = fleet.records["a"].gpus[1].row
    # The host comes back with other GPUs: its rows are released and reused for the new ones.
    record = fleet.add_host("a", gpus=2, tag="-new")
    assert record.gpus[1].row == old_row or record.gpus[0].row == old_row
    fleet.set("a", 0, "temperature", 90.0)
    fleet.set("a", 1, "temperature", 90.0)
    fleet.sink.pushes.clear()
    fleet.step()
    pushed = [(a.labels["uuid"], a.state) for _, a in fleet.sink.pushes]
    assert ("GPU-a-1", AlertState.RESOLVED) in pushed
    # The new GPUs start over: pending for their own `for`, not firing on the old GPU's history.
    assert ("GPU-a-new-0", AlertState.PENDING) in pushed and ("GPU-a-new-1", AlertState.PENDING) in pushed


def test_a_rule_that_fails_to_evaluate_does_not_stop_the_others(tmp_path: Path) -> None:
    fleet = Fleet([write_rules(tmp_path / "r.toml", HOT.replace('"3s"', '"0s"'))])
    fleet.add_host("a")

    class Broken:
        def evaluate(self, ctx: object) -> None:
            raise RuntimeError("boom")

        def signals(self) -> set[str]:
            return set()

    good = fleet.engine.rules.rules[0]
    from dataclasses import replace

    from collector.detect.rules import RuleSet

    fleet.engine.rules = RuleSet((replace(good, name="Broken", expr=Broken()), good), ())  # type: ignore[arg-type]
    fleet.engine.states.setdefault("Broken", type(fleet.engine.states["Hot"])())
    fleet.set("a", 0, "temperature", 90.0)
    fleet.step()
    assert fleet.firing() == {("Hot", "a", "0")}
    assert fleet.engine.stats.rule_failures == {"Broken": 1}


def test_gpus_in_different_jobs_are_not_peers() -> None:
    fleet = Fleet()
    fleet.add_host("a", gpus=7)
    # Job 1 runs at full clocks on GPUs 0-3, job 2 capped lower on GPUs 4-6: each job is uniform,
    # but taken together job 2's GPUs would look like stragglers.
    for gpu in (4, 5, 6):
        fleet.set("a", gpu, "sm_clock", 1500e6)
    for gpu in range(7):
        job = "1" if gpu < 4 else "2"
        process = pb.GpuProcess(pid=100 + gpu, workload=pb.Workload(kind="slurm", id=job))
        fleet.engine.event_applied(
            fleet.records["a"], pb.Event(workload=pb.WorkloadEvent(gpu_index=gpu, processes=[process]))
        )
    for _ in range(12):
        fleet.step()
    assert fleet.firing("GpuStraggler") == set()
    scores = fleet.engine.signals.scores[:7, fleet.engine.signals.score_names.index("peer_score_sm_clock")]
    assert np.abs(scores).max() < 1
    # Without the workload events the same clocks page: job 2's GPUs sit far below the host median.
    unaware = Fleet()
    unaware.add_host("a", gpus=7)
    for gpu in (4, 5, 6):
        unaware.set("a", gpu, "sm_clock", 1500e6)
    for _ in range(12):
        unaware.step()
    assert {gpu for _, _, gpu in unaware.firing("GpuStraggler")} == {"4", "5", "6"}


def test_thermal_scores_are_exported() -> None:
    fleet = Fleet()
    fleet.add_host("a", gpus=4)
    for _ in range(200):
        fleet.step()
    registry = CollectorRegistry()
    registry.register(DetectionCollector(fleet.engine))
    text = generate_latest(registry).decode()
    assert metric_value(text, "gpulse_detect_thermal_score", host="a", gpu="2", signal="temperature") is not None


def test_a_paused_engine_ignores_events() -> None:
    fleet = Fleet()
    fleet.add_host("a")
    fleet.engine.paused = True
    fleet.event("a", pb.Event(xid=pb.XidEvent(gpu_index=0, xid=79, count=1)))
    assert fleet.sink.pushes == [] and fleet.engine.stats.immediate_evaluations == 0


def test_history_is_as_deep_as_each_window_read_and_xid_windows_take_none() -> None:
    fleet = Fleet()  # the default pack: XIDs over 30 minutes, ECC increases over 10, most others 1
    engine = fleet.engine
    spans = {key: max(depth * stride for depth, stride in rings) for key, rings in engine.gpu_history.depths.items()}
    ecc = engine.signals.gpu_index["ecc_uncorrected_volatile"]
    temperature = engine.signals.gpu_index["temperature"]
    assert max(spans.values()) <= 600 + 3 * 5  # the 30-minute XID windows read the XID log
    assert spans[ecc, "totals"] >= 600 and (ecc, "values") not in spans
    assert spans[temperature, "values"] == 60 + 3  # absent(temperature[1m])
    # 1,000 GPUs' history in a few megabytes, not the hundreds one 30-minute ring of all took.
    for h in range(16):
        fleet.add_host(f"big-{h}", gpus=64)
    fleet.step()
    assert engine.gpu_history.rows >= 1024
    assert engine.gpu_history.nbytes < 16 * 2**20


def test_a_short_rate_stays_exact_when_a_long_window_reads_the_same_counter(tmp_path: Path) -> None:
    rules = write_rules(
        tmp_path / "r.toml",
        """
[[rule]]
name = "ReplaysNow"
expr = "rate(pcie_replay[30s]) > 1.05"
severity = "warning"
[[rule]]
name = "ReplaysToday"
expr = "increase(pcie_replay[1h]) > 1e9"
severity = "info"
""",
    )
    fleet = Fleet([rules])
    column = fleet.engine.signals.gpu_index["pcie_replay"]
    # The hour's totals are kept every 30 ticks; the 30 s rate reads a ring of every tick.
    assert fleet.engine.gpu_history.depths[column, "totals"] == ((30 + 3, 1), (120 + 3, 30))
    fleet.add_host("a", gpus=1)
    for i in range(300):  # exactly 1 replay a second: the 30 s rate is 1.0, never above 1.05
        fleet.set("a", 0, "pcie_replay", float(i))
        fleet.step()
    assert fleet.firing() == set() and not any(a.name == "ReplaysNow" for _, a in fleet.sink.pushes)
