"""compare-features: per-video length difference, cosine, relative L2 and best lag, on hand-built cases."""
from __future__ import annotations

import numpy as np
import pytest

from tal_kit.__main__ import main
from tal_kit.compare_features import compare_arrays, compare_folders


def _walk(t: int, c: int = 8, seed: int = 0) -> np.ndarray:
    """A smooth-ish random walk: neighbouring steps similar, far steps not (so a lag is identifiable)."""
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.normal(size=(t, c)), axis=0).astype(np.float32) + rng.normal(size=(t, c)) * 3


def test_identical_features_agree_perfectly():
    a = _walk(50)
    r = compare_arrays("v", a, a.copy())
    assert (r.length_difference, r.best_lag) == (0, 0)
    assert r.cosine == pytest.approx(1.0) and r.relative_l2 == pytest.approx(0.0, abs=1e-12)


def test_hand_worked_cosine_and_relative_l2():
    a = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]], np.float32)
    b = np.array([[0.0, 1.0], [0.0, 1.0], [3.0, 4.0]], np.float32)
    r = compare_arrays("v", a, b, max_lag=0)
    assert r.cosine == pytest.approx((0.0 + 1.0 + 1.0) / 3)  # per-step cosines 0, 1, 1
    assert r.relative_l2 == pytest.approx(np.sqrt(1 + 1 + 1) / np.sqrt(1 + 1 + 25))  # ||a-b|| / ||b||


def test_a_shifted_grid_is_found_as_its_lag_with_the_length_difference():
    b = _walk(80)
    a = b[3:]  # A starts 3 steps late: A[t] = B[t + 3], so A[t + d] best matches B[t] at d = -3
    r = compare_arrays("v", a, b)
    assert r.length_difference == -3 and r.best_lag == -3 and r.best_lag_cosine == pytest.approx(1.0)
    assert r.cosine < 0.99


def test_cli_exit_codes_and_report(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    same = _walk(40, seed=1)
    np.save(tmp_path / "a" / "vid1.npy", same)
    np.save(tmp_path / "b" / "vid1.npy", same)
    np.save(tmp_path / "a" / "only_a.npy", same)
    assert main(["compare-features", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "summary: 1 video(s)" in out and "1 video(s) only in A (only_a)" in out
    noisy = same + np.random.default_rng(2).normal(size=same.shape).astype(np.float32) * 5
    np.save(tmp_path / "b" / "vid1.npy", noisy)
    assert main(["compare-features", str(tmp_path / "a"), str(tmp_path / "b")]) == 1
    assert "past tolerance" in capsys.readouterr().out
    assert main(["compare-features", str(tmp_path / "a"), str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    np.save(tmp_path / "b" / "vid1.npy", np.zeros((40, 3), np.float32))
    assert main(["compare-features", str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    assert "feature widths differ (8 vs 3)" in capsys.readouterr().err


def test_prefix_on_one_side_only(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    np.save(tmp_path / "a" / "abc.npy", _walk(20))
    np.save(tmp_path / "b" / "v_abc.npy", _walk(20))
    results, only_a, only_b = compare_folders(tmp_path / "a", tmp_path / "b", prefix_b="v_")
    assert [r.video_id for r in results] == ["abc"] and only_a == only_b == []
