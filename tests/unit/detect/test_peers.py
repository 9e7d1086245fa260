from __future__ import annotations

import numpy as np

from collector.detect.peers import PeerDetector, group_median, load_band


def test_group_median_matches_numpy_per_group() -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(size=200)
    values[rng.integers(0, 200, 20)] = np.nan
    groups = rng.integers(-1, 7, 200)
    median, mad, count = group_median(values, groups)
    for g in range(7):
        member = (groups == g) & np.isfinite(values)
        expect = np.median(values[member])
        rows = groups == g
        assert np.allclose(median[rows], expect)
        assert np.allclose(mad[rows], np.median(np.abs(values[member] - expect)))
        assert (count[rows] == member.sum()).all()
    assert np.isnan(median[groups == -1]).all()


def test_load_bands() -> None:
    assert load_band(np.array([0.0, 0.2, 0.7, 0.95, np.nan])).tolist() == [0, 1, 2, 3, -1]


def _read(n: int) -> dict[str, np.ndarray]:
    return {
        "utilization": np.full(n, 0.95),
        "sm_clock": np.full(n, 1980e6),
        "sm_clock_max": np.full(n, 1980e6),
        "power_usage": np.full(n, 600.0) + np.arange(n),
        "power_limit": np.full(n, 700.0),
        "temperature": np.full(n, 70.0),
    }


def test_straggler_and_hung_gpu_stand_out_from_their_host_peers() -> None:
    read = _read(8)
    read["sm_clock"][2] = 1700e6
    read["power_usage"][6] = 90.0
    zeros = np.zeros(8, dtype=np.int64)
    out = PeerDetector().score(read, host_slot=zeros, model=zeros, job=zeros, valid=np.ones(8, bool))
    clock = out["peer_score_sm_clock"]
    assert clock[2] < -4 and np.abs(np.delete(clock, 2)).max() < 1
    power = out["peer_score_power_usage"]
    assert power[6] < -10 and np.abs(np.delete(power, 6)).max() < 1
    assert out["peer_deviation_power_usage"][6] < -500


def test_comparable_load_only_and_fallback_to_the_fleet() -> None:
    read = _read(6)
    # Host 0: GPUs 0-1 busy, 2 idle (own band, no host peers); host 1: three busy GPUs.
    read["utilization"][2] = 0.0
    read["power_usage"][2] = 70.0
    slots = np.array([0, 0, 0, 1, 1, 1])
    zeros = np.zeros(6, dtype=np.int64)
    out = PeerDetector().score(read, host_slot=slots, model=zeros, job=zeros, valid=np.ones(6, bool))
    assert np.isnan(out["peer_score_power_usage"][2])  # no idle peers anywhere: no verdict
    # GPUs 0-1 have one busy host peer: compared with the busy GPUs of the fleet instead.
    assert np.isfinite(out["peer_score_power_usage"][:2]).all()
    assert np.abs(out["peer_score_power_usage"][[0, 1, 3, 4, 5]]).max() < 1


def test_different_models_and_jobs_are_not_peers() -> None:
    read = _read(6)
    read["sm_clock"][3:] = 1410e6  # A100s
    model = np.array([0, 0, 0, 1, 1, 1])
    zeros = np.zeros(6, dtype=np.int64)
    out = PeerDetector().score(read, host_slot=zeros, model=model, job=zeros, valid=np.ones(6, bool))
    assert np.abs(out["peer_score_sm_clock"]).max() < 1
