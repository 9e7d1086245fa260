from __future__ import annotations

from pathlib import Path

import pytest

from collector.alerting.silence import SilenceError, Silencer
from collector.alerting.state import AlertingState


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_silence_mutes_until_it_ends_and_survives_a_restart(tmp_path: Path) -> None:
    clock = Clock()
    silencer = Silencer(AlertingState(tmp_path / "a.db"), clock)
    s = silencer.add(["host=h1", "alertname=~Gpu.*"], ends_at=2000, created_by="ana", comment="maintenance")
    assert silencer.mutes({"host": "h1", "alertname": "GpuHot"})
    assert not silencer.mutes({"host": "h2", "alertname": "GpuHot"})
    reopened = Silencer(AlertingState(tmp_path / "a.db"), clock)
    [again] = reopened.list()
    assert (again.id, again.created_by, again.comment) == (s.id, "ana", "maintenance")
    clock.now = 2000
    assert not reopened.mutes({"host": "h1", "alertname": "GpuHot"})


def test_expire_ends_a_silence_now(tmp_path: Path) -> None:
    clock = Clock()
    silencer = Silencer(AlertingState(tmp_path / "a.db"), clock)
    s = silencer.add(["host=h1"], ends_at=5000, created_by="ana", comment="c")
    silencer.expire(s.id)
    assert not silencer.mutes({"host": "h1"})
    assert Silencer(AlertingState(tmp_path / "a.db"), clock).list()[0].ends_at == 1000
    with pytest.raises(KeyError):
        silencer.expire("nope")


@pytest.mark.parametrize(
    ("matchers", "author", "comment", "ends_at", "problem"),
    [
        ([], "a", "c", 2000, "at least one matcher"),
        (["host=~.*"], "a", "c", 2000, "empty string"),
        (["host"], "a", "c", 2000, "no operator"),
        (["host=h"], "", "c", 2000, "author"),
        (["host=h"], "a", " ", 2000, "comment"),
        (["host=h"], "a", "c", 999, "not after"),
    ],
)
def test_bad_silences_are_refused(
    tmp_path: Path, matchers: list[str], author: str, comment: str, ends_at: float, problem: str
) -> None:
    silencer = Silencer(AlertingState(tmp_path / "a.db"), Clock())
    with pytest.raises(SilenceError, match=problem):
        silencer.add(matchers, ends_at=ends_at, created_by=author, comment=comment)


def test_future_silence_is_not_active_yet(tmp_path: Path) -> None:
    clock = Clock()
    silencer = Silencer(AlertingState(tmp_path / "a.db"), clock)
    silencer.add(["host=h1"], starts_at=1500, ends_at=2000, created_by="a", comment="c")
    assert not silencer.mutes({"host": "h1"})
    clock.now = 1500
    assert silencer.mutes({"host": "h1"})


def test_a_damaged_silence_does_not_stop_the_others_loading(tmp_path: Path) -> None:
    state = AlertingState(tmp_path / "a.db")
    Silencer(state, Clock()).add(["host=h1"], ends_at=2000, created_by="a", comment="c")
    state.save_silence("broken", {"id": "broken", "matchers": ["host"]}, ends_at=2000)
    assert [s.matchers[0].value for s in Silencer(state, Clock()).list()] == ["h1"]
