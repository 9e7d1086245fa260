from __future__ import annotations

import numpy as np

from collector.detect.baseline import BaselineDetector, BaselineSignal

SIGNAL = (BaselineSignal("x", floor=1.0),)


def run(detector: BaselineDetector, xs: np.ndarray, band: np.ndarray, start: float = 0.0) -> list[np.ndarray]:
    return [detector.score({"x": x}, band, start + t) for t, x in enumerate(xs)]


def test_noise_does_not_score_and_a_drift_does() -> None:
    rng = np.random.default_rng(1)
    detector = BaselineDetector(SIGNAL, half_life=300, warmup=60, settle=30)
    band = np.array([3, 3])
    noise = rng.normal(0, 0.5, (600, 2)) + 40.0
    noise[:, 1] += rng.standard_cauchy(600).clip(-20, 20) * 0.05  # spiky but centred
    scores = np.array([s["baseline_score_x"] for s in run(detector, noise, band)])
    assert np.isnan(scores[:60]).all()  # warming up
    assert np.nanmax(np.abs(scores[100:])) < 4
    drift = np.full((30, 2), 40.0)
    drift[:, 0] += np.linspace(0, 15, 30)
    later = np.array([s["baseline_score_x"] for s in run(detector, drift, band, start=600)])
    assert later[-1, 0] > 6 and abs(later[-1, 1]) < 2


def test_an_anomaly_is_not_learned_as_normal_quickly() -> None:
    detector = BaselineDetector(SIGNAL, half_life=120, warmup=10, settle=0)
    band = np.array([3])
    run(detector, np.full((60, 1), 50.0), band)
    scores = [s["baseline_score_x"][0] for s in run(detector, np.full((120, 1), 60.0), band, start=60)]
    assert scores[-1] > 4  # two half-lives later the step still stands out


def test_a_load_change_settles_before_scoring() -> None:
    detector = BaselineDetector(SIGNAL, half_life=300, warmup=10, settle=20)
    run(detector, np.full((30, 1), 30.0), np.array([0]))
    after = [s["baseline_score_x"][0] for s in run(detector, np.full((25, 1), 75.0), np.array([3]), start=30)]
    assert np.isnan(after[:20]).all()
    forgotten = BaselineDetector(SIGNAL, warmup=0, settle=0)
    run(forgotten, np.full((5, 1), 30.0), np.array([3]))
    forgotten.forget(np.array([0]))
    assert np.isnan(forgotten.mean[0, 0])
