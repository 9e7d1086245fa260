from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from collector.alerting.state import AlertingState, NflogEntry

from .helpers import alert


def test_outbox_rows_survive_reopening_and_leave_only_when_delivered(tmp_path: Path) -> None:
    state = AlertingState(tmp_path / "a.db")
    state.enqueue("pd", "fp1", "g", [alert(host="h")], now=1)
    state.close()
    reopened = AlertingState(tmp_path / "a.db")
    [item] = reopened.due(now=1)
    assert item.alerts[0].labels["host"] == "h"
    assert reopened.delivered(item)
    assert reopened.due(now=100) == []


def test_a_row_updated_while_in_flight_is_not_deleted(tmp_path: Path) -> None:
    state = AlertingState(tmp_path / "a.db")
    state.enqueue("pd", "fp1", "g", [alert(host="h")], now=1)
    [in_flight] = state.due(now=1)
    state.enqueue("pd", "fp1", "g", [alert(host="h").resolved(2)], now=2)
    assert not state.delivered(in_flight)
    [newer] = state.due(now=2)
    assert newer.alerts[0].ends_at == 2


def test_postpone_delays_and_counts_attempts(tmp_path: Path) -> None:
    state = AlertingState(tmp_path / "a.db")
    state.enqueue("pd", "k", "g", [alert()], now=1)
    [item] = state.due(now=1)
    state.postpone(item, until=10, error="503")
    assert state.due(now=9) == []
    assert state.due(now=10)[0].attempts == 1


def test_nflog_entry_round_trip_and_cleanup(tmp_path: Path) -> None:
    state = AlertingState(tmp_path / "a.db")
    entry = NflogEntry(frozenset({"a", "b"}), 2, 5.0)
    state.nflog_put("pd", "g", entry)
    assert state.nflog_get("pd", "g") == entry
    state.nflog_put("pd", "g", NflogEntry(frozenset(), -1, 6.0))
    assert state.nflog_get("pd", "g") is None


def test_transaction_is_all_or_nothing(tmp_path: Path) -> None:
    state = AlertingState(tmp_path / "a.db")
    with pytest.raises(RuntimeError), state.transaction():
        state.enqueue("pd", "k", "g", [alert()], now=1)
        state.nflog_put("pd", "g", NflogEntry(frozenset({"k"}), 1, 1))
        raise RuntimeError("crash between the two writes")
    assert state.due(now=10) == []
    assert state.nflog_get("pd", "g") is None


def test_damaged_rows_are_dropped_and_reported_not_fatal(tmp_path: Path) -> None:
    state = AlertingState(tmp_path / "a.db")
    state.enqueue("pd", "bad", "g", [alert(host="x")], now=1)
    state.enqueue("pd", "good", "g", [alert(host="y")], now=1)
    state.save_alert(alert(host="x"))
    state.save_alert(alert(host="y"))
    db = sqlite3.connect(tmp_path / "a.db")
    db.execute("UPDATE outbox SET alerts = '[{\"labels\": 3}]' WHERE coalesce_key = 'bad'")
    db.execute("UPDATE alerts SET alert = 'not json' WHERE alert LIKE '%\"x\"%'")
    db.commit()
    reported: list[tuple[str, str]] = []
    [item] = state.due(now=5, on_malformed=lambda receiver, problem: reported.append((receiver, problem)))
    assert item.coalesce_key == "good"
    assert reported[0][0] == "pd"
    [kept] = state.load_alerts(on_malformed=lambda fp, problem: reported.append((fp, problem)))
    assert kept.labels["host"] == "y"
    assert len(reported) == 2
    assert len(state.due(now=5)) == 1  # the damaged row is gone for good
