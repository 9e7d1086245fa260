"""`gpulse state backup` while the collector runs and ingests, and `gpulse state restore` into a fresh
collector: firing alerts are not paged again, a pending resolve is still sent, silences still hold."""

from __future__ import annotations

import json
import sqlite3
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.alert import fingerprint
from collector.statefiles import DATABASES
from tests.fakes.pagerduty import FakePagerDuty
from tests.integration.test_alerting_collector import gpulse, start
from tests.kit import Pki, Service, alert_labels, collector_config, metric_value, push_alerts, start_agent, wait_for


@pytest.fixture
def pagerduty() -> Iterator[FakePagerDuty]:
    fake = FakePagerDuty().start()
    yield fake
    fake.stop()


def test_a_backup_restored_into_a_fresh_collector_carries_its_alerts_outbox_and_silences(
    tmp: Path, test_pki: Pki, services: list[Service], pagerduty: FakePagerDuty
) -> None:
    old = start(tmp, test_pki, pagerduty, services)
    services.append(start_agent(tmp, test_pki, "node-ing", [old.target]))  # ingest runs during the backup
    wait_for(lambda: (metric_value(old.metrics(), "gpulse_collector_frames_applied_total") or 0) > 4)
    firing, resolving = alert_labels("GpuXid", "node-1", "3"), alert_labels("GpuDbe", "node-2", "0")
    push_alerts(old, firing, resolving)
    wait_for(lambda: pagerduty.triggers(fingerprint(firing)) and pagerduty.triggers(fingerprint(resolving)))
    silence = gpulse(
        "silence", "add", "host=node-s", "--duration", "1h", "--author", "a", "--comment", "c", "--url", old.url("")
    )
    assert silence.returncode == 0, silence.stderr
    pagerduty.fail_next(503, times=10_000)  # the resolve cannot be delivered: it waits in the outbox
    push_alerts(old, resolving, state="resolved")
    wait_for(
        lambda: metric_value(old.metrics(), "gpulse_alerting_outbox_depth", receiver="pd") == 1,
        what="the resolve pending in the outbox",
    )
    backup = tmp / "backups" / "state.tar"
    made = gpulse("state", "backup", "--config", str(old.config), str(backup))
    assert made.returncode == 0, made.stderr
    with tarfile.open(backup) as tar:
        assert set(tar.getnames()) == {*DATABASES.values(), "manifest.json"}
        member = tar.extractfile("manifest.json")
        assert member is not None
        manifest = json.loads(member.read())
    assert set(manifest["databases"]) == set(DATABASES)
    old.kill()  # the machine is lost; a new collector takes over from the backup

    fresh = start(tmp, test_pki, pagerduty, services, name="fresh")  # a new machine's empty collector
    fresh.kill()
    done = gpulse("state", "restore", str(backup), "--config", str(fresh.config))
    assert done.returncode == 0, done.stderr
    pagerduty.clear_failures()
    fresh.start().wait_ready()
    # The resolve that was pending is sent by the new collector.
    wait_for(lambda: pagerduty.resolves(fingerprint(resolving)), timeout=30, what="the pending resolve")
    # The alert still firing continues: detection re-sends it, and it is not paged a second time.
    push_alerts(fresh, firing)
    wait_for(lambda: metric_value(fresh.metrics(), "gpulse_alerting_outbox_depth", receiver="pd") == 0)
    silenced = alert_labels("GpuHot", "node-s", "0")
    push_alerts(fresh, silenced)
    wait_for(lambda: metric_value(fresh.metrics(), "gpulse_alerting_alerts_muted_total", by="silence"))
    assert pagerduty.incidents[fingerprint(firing)].triggers == 1
    assert pagerduty.incidents[fingerprint(resolving)].opened == 1
    assert pagerduty.triggers(fingerprint(silenced)) == []
    # Ingest progress came along too: the agent's boot is known to the new collector.
    progress = sqlite3.connect(tmp / "fresh-state" / DATABASES["ingest-progress"])
    assert progress.execute("SELECT count(*) FROM progress WHERE host_id = 'node-ing'").fetchone()[0] == 1


def test_restore_refuses_a_file_that_is_not_a_backup(tmp: Path, test_pki: Pki) -> None:
    config, _, _ = collector_config(tmp, test_pki)
    bogus = tmp / "bogus.tar"
    bogus.write_bytes(b"not a tar archive at all")
    refused = gpulse("state", "restore", "--config", str(config), str(bogus))
    assert refused.returncode == 2 and "not a readable gpulse state backup" in refused.stderr
    assert not (tmp / "collector-state" / DATABASES["alerting"]).exists()
