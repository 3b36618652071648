"""Feature files and grids: every format round-trips (including files written by the libraries themselves), bad
files get clear errors, and time<->grid and resampling match values worked by hand from SPEC §C.3's formulas."""
from __future__ import annotations

import pickle
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tal_kit.data.features import (SUPPORTED_EXTENSIONS, FeatureError, FeatureSource, feature_length,
                                   load_feature_file, read_feature_array, write_feature_file)
from tal_kit.data.grid import FeatureGrid, grid_for_video, resample_features

FEATS = np.arange(5 * 3, dtype=np.float32).reshape(5, 3) / 7  # T=5 steps, C=3 channels


# ---------------------------------------------------------------- formats

@pytest.mark.parametrize("ext", SUPPORTED_EXTENSIONS)
def test_round_trip_own_writer(tmp_path, ext):
    path = write_feature_file(tmp_path / f"v{ext}", FEATS)
    assert not list(tmp_path.glob(".*tmp*"))  # the temp file was renamed away
    got = load_feature_file(path, 3, video_id="v")
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, FEATS)
    assert feature_length(path) == 5


def _native_writers(tmp_path):
    """Files as other tools write them: plain library calls, containers with conventional keys, a CSV header."""
    f64 = FEATS.astype(np.float64)
    np.save(tmp_path / "a.npy", f64)
    np.savez_compressed(tmp_path / "b.npz", features=FEATS)
    torch.save({"feats": torch.from_numpy(FEATS)}, tmp_path / "c.pt")
    torch.save(torch.from_numpy(FEATS), tmp_path / "d.pth", _use_new_zipfile_serialization=False)  # legacy format
    with open(tmp_path / "e.pkl", "wb") as f:
        pickle.dump(FEATS.tolist(), f)
    with open(tmp_path / "f.pkl", "wb") as f:
        pickle.dump({"only": FEATS[None]}, f)  # [1, T, C] in a one-entry dict
    np.savetxt(tmp_path / "g.csv", FEATS, delimiter=",", header="c0,c1,c2", comments="", fmt="%.10g")
    return ["a.npy", "b.npz", "c.pt", "d.pth", "e.pkl", "f.pkl", "g.csv"]


def test_reads_files_written_by_other_tools(tmp_path):
    for name in _native_writers(tmp_path):
        got = load_feature_file(tmp_path / name, 3, video_id=name)
        np.testing.assert_allclose(got, FEATS, rtol=1e-7, err_msg=name)
        assert feature_length(tmp_path / name) == 5


def test_npy_is_memory_mapped(tmp_path):
    np.save(tmp_path / "m.npy", FEATS)
    assert isinstance(read_feature_array(tmp_path / "m.npy"), np.memmap)


# ---------------------------------------------------------------- bad files

def test_wrong_dimension_and_transposed(tmp_path):
    np.save(tmp_path / "v1.npy", FEATS)
    with pytest.raises(FeatureError, match=r"v1.npy \(video 'v1'\): feature dimension is 3 .* dataset.input_dim is 8"):
        load_feature_file(tmp_path / "v1.npy", 8, video_id="v1")
    with pytest.raises(FeatureError, match="looks transposed"):
        load_feature_file(tmp_path / "v1.npy", 5, video_id="v1")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values(tmp_path, bad):
    feats = FEATS.copy()
    feats[3, 1] = bad
    feats[4, 2] = bad
    np.save(tmp_path / "v2.npy", feats)
    with pytest.raises(FeatureError, match=r"v2.npy \(video 'v2'\): 2 non-finite value\(s\).*time step 3, channel 1"):
        load_feature_file(tmp_path / "v2.npy", 3, video_id="v2")


def test_unreadable_files(tmp_path):
    with pytest.raises(FeatureError, match="does not exist"):
        load_feature_file(tmp_path / "nope.npy", 3)
    (tmp_path / "x.h5").write_bytes(b"")
    with pytest.raises(FeatureError, match="unsupported feature file extension '.h5'"):
        load_feature_file(tmp_path / "x.h5", 3)
    (tmp_path / "broken.npy").write_bytes(b"not numpy")
    with pytest.raises(FeatureError, match="broken.npy: cannot be read as a .npy feature file"):
        load_feature_file(tmp_path / "broken.npy", 3)
    np.save(tmp_path / "flat.npy", np.zeros(7, np.float32))
    with pytest.raises(FeatureError, match=r"expected a \[T, C\] array.*shape \(7,\)"):
        load_feature_file(tmp_path / "flat.npy", 3)
    np.save(tmp_path / "empty.npy", np.zeros((0, 3), np.float32))
    with pytest.raises(FeatureError, match="holds no time steps"):
        load_feature_file(tmp_path / "empty.npy", 3, video_id="e")
    np.savez(tmp_path / "two.npz", x=FEATS, y=FEATS)
    with pytest.raises(FeatureError, match="holds several arrays"):
        load_feature_file(tmp_path / "two.npz", 3)


# ---------------------------------------------------------------- time <-> grid (SPEC §C.3, §D.11)

def _dataset_cfg(**kw):
    base = dict(feat_stride=4, num_frames=16, downsample_rate=1, max_seq_len=2304, force_upsampling=False,
                variable_length_upsampling="ignore", fixed_length_num_frames="stride_x_frames")
    return SimpleNamespace(**{**base, **kw})


def test_thumos_grid_hand_values():
    grid = grid_for_video(_dataset_cfg(), fps=30.0, duration=100.0, num_features=700)
    assert (grid.feat_stride, grid.num_frames, grid.feat_offset) == (4, 16, 2.0)
    assert grid.seconds_to_grid(1.0) == pytest.approx((30 * 1.0 - 8) / 4)  # 5.5
    assert grid.seconds_to_grid(0.0) == pytest.approx(-2.0)
    assert grid.grid_to_seconds(0.0) == pytest.approx(8 / 30)
    assert grid.grid_to_seconds(5.5) == pytest.approx(1.0)
    np.testing.assert_allclose(grid.clip_centres(3), [8 / 30, 12 / 30, 16 / 30])
    np.testing.assert_allclose(grid.clip_windows(2), [[0, 16 / 30], [4 / 30, 20 / 30]])
    t = np.array([0.3, 17.25, 99.0])
    np.testing.assert_allclose(grid.grid_to_seconds(grid.seconds_to_grid(t)), t)
    seg = torch.tensor([[0.2, 1.1]], dtype=torch.float64)
    torch.testing.assert_close(grid.seconds_to_grid(seg), torch.tensor([[-0.5, 6.25]], dtype=torch.float64))


def test_anet_hacs_and_downsampling_hand_values():
    anet = grid_for_video(_dataset_cfg(feat_stride=16), fps=15.0, duration=120.0, num_features=100)
    assert anet.seconds_to_grid(10.0) == pytest.approx((15 * 10 - 8) / 16)  # 8.875
    assert anet.grid_to_seconds(8.875) == pytest.approx(10.0)
    hacs = grid_for_video(_dataset_cfg(feat_stride=16), fps=30.0, duration=120.0, num_features=100)
    assert hacs.seconds_to_grid(10.0) == pytest.approx((30 * 10 - 8) / 16)
    down = grid_for_video(_dataset_cfg(downsample_rate=2), fps=30.0, duration=100.0, num_features=700)
    assert (down.feat_stride, down.num_frames) == (8, 16)
    assert down.seconds_to_grid(1.0) == pytest.approx((30 - 8) / 8)


def test_fixed_length_grid_fork_and_head():
    """FineAction: 192 features over a 100 s video at 15 fps -> stride 1500/192 = 7.8125 frames per step.
    The fork's clip length 7.8125 * 16 = 125 frames puts t = 50 s at 50*15/7.8125 - 8 = 88; AF HEAD at 95.5."""
    cfg = _dataset_cfg(feat_stride=-1, max_seq_len=192, force_upsampling=True)
    fork = grid_for_video(cfg, fps=15.0, duration=100.0, num_features=100)
    assert fork.feat_stride == pytest.approx(7.8125) and fork.num_frames == pytest.approx(125.0)
    assert fork.seconds_to_grid(50.0) == pytest.approx(88.0)
    assert fork.grid_to_seconds(88.0) == pytest.approx(50.0)
    head = grid_for_video(_dataset_cfg(feat_stride=-1, max_seq_len=192, force_upsampling=True,
                                       fixed_length_num_frames="stride"), fps=15.0, duration=100.0, num_features=100)
    assert head.seconds_to_grid(50.0) == pytest.approx(95.5)
    # without force_upsampling the stride comes from the file's own length
    own = grid_for_video(_dataset_cfg(feat_stride=-1, max_seq_len=192), fps=15.0, duration=100.0, num_features=150)
    assert own.feat_stride == pytest.approx(10.0)


def test_head_case2_grid():
    """AF HEAD case 2: T_in = 100 TSP features (stride 16, 16 frames) resized to 192: stride (99*16+16)/192."""
    grid = grid_for_video(_dataset_cfg(feat_stride=16, max_seq_len=192, force_upsampling=True,
                                       variable_length_upsampling="resize"),
                          fps=15.0, duration=120.0, num_features=100)
    assert grid.feat_stride == pytest.approx(1600 / 192) and grid.num_frames == grid.feat_stride
    assert grid.feat_offset == pytest.approx(0.5)


# ---------------------------------------------------------------- resampling (SPEC §C.3)

def test_resample_up_hand_values():
    """4 -> 6: src_i = (i + 0.5) * 4/6 - 0.5 = [-1/6 (clamped to 0), 0.5, 7/6, 11/6, 2.5, 19/6 (i1 clamped)]."""
    x = torch.tensor([[0.0, 10.0, 20.0, 30.0], [1.0, 1.0, 3.0, 3.0]])
    out = resample_features(x, 6)
    torch.testing.assert_close(out[0], torch.tensor([0.0, 5.0, 35 / 3, 55 / 3, 25.0, 30.0]))
    torch.testing.assert_close(out[1], torch.tensor([1.0, 1.0, 1 + 2 / 6, 1 + 2 * 5 / 6, 3.0, 3.0]))


def test_resample_down_hand_values_and_identity():
    x = torch.tensor([[0.0, 10.0, 20.0, 30.0]])
    torch.testing.assert_close(resample_features(x, 2), torch.tensor([[5.0, 25.0]]))  # src = 0.5, 2.5
    assert resample_features(x, 4) is x


def test_feature_source_resamples_onto_reference_length(tmp_path):
    (tmp_path / "mae").mkdir()
    (tmp_path / "i3d").mkdir()
    np.save(tmp_path / "mae" / "v_a.npy", np.array([[0.0], [10.0], [20.0], [30.0]], np.float32))
    np.save(tmp_path / "i3d" / "v_a.npy", np.zeros((6, 2048), np.float16))  # only its length matters
    source = FeatureSource(tmp_path / "mae", file_prefix="v_", file_ext=".npy", input_dim=1,
                           reference_folder=tmp_path / "i3d")
    feats = source.load("a")
    assert feats.shape == (1, 6) and feats.dtype == torch.float32
    torch.testing.assert_close(feats[0], torch.tensor([0.0, 5.0, 35 / 3, 55 / 3, 25.0, 30.0]))
    assert source.missing(["a", "b"]) == [tmp_path / "mae" / "v_b.npy", tmp_path / "i3d" / "v_b.npy"]
    plain = FeatureSource(tmp_path / "mae", file_prefix="v_", input_dim=1)
    torch.testing.assert_close(plain.load("a"), torch.tensor([[0.0, 10.0, 20.0, 30.0]]))


def test_feature_grid_is_frozen():
    grid = FeatureGrid(4, 16, 30.0)
    with pytest.raises(AttributeError):
        grid.fps = 25.0  # type: ignore[misc]


def test_resampling_time_shift_hand_values():
    """Source: 4 clips of 16 frames every 8 frames at 30 fps; target: 8 clips every 4 frames. Output 1 reads source
    position (1.5 * 4/8 - 0.5) = 0.25, i.e. (0.25 * 8 + 8) / 30 = 10/30 s, while its grid point is (4 + 8) / 30 s."""
    from tal_kit.data.grid import resampling_source_positions, resampling_time_shift

    np.testing.assert_allclose(resampling_source_positions(4, 8), [0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.0])
    shift = resampling_time_shift(FeatureGrid(8, 16, 30.0), 4, FeatureGrid(4, 16, 30.0), 8)
    np.testing.assert_allclose(shift[1:7], -2 / 30)  # a constant lag of half the stride difference
    np.testing.assert_allclose(shift[[0, 7]], [0.0, (3 * 8 + 8 - (7 * 4 + 8)) / 30])  # clamped ends
