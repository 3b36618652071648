"""Dataset, training crops and collate: crops equal the oracle's truncate_feats draw for draw and keep their
invariants; items carry hand-computed grid positions; missing files and class mismatches get clear errors."""
from __future__ import annotations

import json
import random
import warnings

import numpy as np
import pytest
import torch

from tal_kit.config import load_config
from tal_kit.data.annotations import AnnotationError
from tal_kit.data.dataset import (MissingFeaturesWarning, TALDataset, build_train_loader, collate_videos,
                                  padded_length, truncate_video)
from tal_kit.data.features import FeatureError
from tal_kit.runtime import DistContext
from tests import oracle


def _random_item(rng: np.random.Generator, feat_len: int, num_segs: int) -> dict:
    starts = rng.uniform(-3, feat_len, num_segs)
    lengths = rng.exponential(feat_len / 8, num_segs)
    lengths[rng.random(num_segs) < 0.05] = 0.0  # a few zero-length segments, as ActivityNet has
    segments = np.stack([starts, starts + lengths], 1).astype(np.float32)
    return {"video_id": "v", "feats": torch.from_numpy(rng.standard_normal((3, feat_len)).astype(np.float32)),
            "segments": torch.from_numpy(segments), "labels": torch.from_numpy(rng.integers(0, 20, num_segs)),
            "fps": 30.0, "duration": 100.0, "feat_stride": 4.0, "num_frames": 16.0}


# ---------------------------------------------------------------- truncation

@pytest.mark.parametrize("offset", [0.0, 2.0])  # fork (no offset) and AF HEAD's crop_window_offset (feat_offset)
def test_truncation_matches_oracle_draw_for_draw(offset):
    try:
        data_utils = oracle.import_module("datasets.data_utils")
    except ImportError as err:
        pytest.skip(f"oracle unavailable: {err}")
    rng = np.random.default_rng(0)
    for trial in range(300):
        item = _random_item(rng, int(rng.integers(20, 300)), int(rng.integers(0, 8)))
        max_seq_len = int(rng.choice([64, 128, 256]))
        crop_ratio = None if trial % 5 == 0 else [0.9, 1.0]
        random.seed(trial)
        ref = data_utils.truncate_feats(item, max_seq_len, 0.5, offset, crop_ratio)
        ref_state = random.getstate()
        random.seed(trial)
        got = truncate_video(item, max_seq_len, 0.5, crop_ratio, offset=offset)
        assert random.getstate() == ref_state  # same number of draws: later crops stay in step with the fork
        torch.testing.assert_close(got["feats"], ref["feats"])
        torch.testing.assert_close(got["segments"], ref["segments"].reshape(-1, 2))
        torch.testing.assert_close(got["labels"], ref["labels"])


def test_truncation_invariants_over_random_draws():
    rng = np.random.default_rng(1)
    py_rng = random.Random(7)
    stats = {"cropped": 0, "unchanged": 0}
    for _ in range(500):
        feat_len = int(rng.integers(10, 400))
        item = _random_item(rng, feat_len, int(rng.integers(1, 8)))
        max_seq_len = 128
        out = truncate_video(item, max_seq_len, 0.5, [0.9, 1.0], rng=py_rng)
        new_len = out["feats"].shape[1]
        assert new_len <= max_seq_len
        if feat_len <= max_seq_len:
            assert max(round(0.9 * feat_len), 1) <= new_len <= feat_len
        if out is item:
            stats["unchanged"] += 1
            continue
        stats["cropped"] += 1
        # the features are one contiguous window of the original
        windows = item["feats"].unfold(1, new_len, 1)  # [C, n_starts, new_len]
        starts = [s for s in range(feat_len - new_len + 1) if torch.equal(windows[:, s], out["feats"])]
        assert starts
        # kept segments lie inside the window, in the same order with their labels, each a clipped original
        segs, labels = out["segments"], out["labels"]
        assert len(segs) == len(labels)
        assert (segs[:, 0] >= 0).all() and (segs[:, 1] <= new_len).all() and (segs[:, 1] >= segs[:, 0]).all()
        start = starts[0] if len(starts) == 1 else None
        if start is not None:
            orig = item["segments"]
            inside = ((orig[:, 1].clamp(max=start + new_len) - orig[:, 0].clamp(min=start)).clamp(min=0)
                      / (orig[:, 1] - orig[:, 0]))
            keep = inside >= 0.5
            if keep.any():  # an accepted window: exactly the segments half inside, clipped and shifted
                torch.testing.assert_close(labels, item["labels"][keep])
                expected = torch.stack([orig[keep, 0].clamp(min=start), orig[keep, 1].clamp(max=start + new_len)],
                                       1) - start
                torch.testing.assert_close(segs, expected)
    assert stats["cropped"] > 300 and stats["unchanged"] > 0
    # the input item is never modified
    item = _random_item(rng, 300, 3)
    before = {k: v.clone() for k, v in item.items() if torch.is_tensor(v)}
    truncate_video(item, 64, 0.5, [0.9, 1.0])
    for k, v in before.items():
        assert torch.equal(item[k], v)


class _Scripted:
    """A stand-in for ``random`` that returns planned window starts (and checks the range asked for)."""

    def __init__(self, draws, high):
        self.draws, self.high = list(draws), high

    def randint(self, a, b):
        assert (a, b) == (0, self.high)
        return self.draws.pop(0)


def test_truncation_hand_cases():
    """T = 10 features, window 4, one segment [5, 7] (grid units)."""
    item = {"feats": torch.arange(10.0)[None], "segments": torch.tensor([[5.0, 7.0]]), "labels": torch.tensor([3])}
    # start 0: window [0, 4] holds none of it -> rejected; start 6: [6, 10] holds exactly half -> accepted (>=)
    out = truncate_video(item, 4, 0.5, None, rng=_Scripted([0, 6], high=6))
    torch.testing.assert_close(out["feats"], torch.tensor([[6.0, 7.0, 8.0, 9.0]]))
    torch.testing.assert_close(out["segments"], torch.tensor([[0.0, 1.0]]))
    assert out["labels"].tolist() == [3]
    # AF HEAD's offset 2 widens [0, 4] to [-2, 6]: half of [5, 7] is inside, so start 0 is accepted at once and
    # the segment is clipped to [5, 6], beyond the 4 cropped features
    out = truncate_video(item, 4, 0.5, None, offset=2.0, rng=_Scripted([0], high=6))
    torch.testing.assert_close(out["segments"], torch.tensor([[5.0, 6.0]]))
    # every draw rejected: the last window is used, with no segment left
    out = truncate_video(item, 4, 0.5, None, max_num_trials=3, rng=_Scripted([0, 1, 0], high=6))
    torch.testing.assert_close(out["feats"], torch.tensor([[0.0, 1.0, 2.0, 3.0]]))
    assert out["segments"].shape == (0, 2) and out["labels"].shape == (0,)


# ---------------------------------------------------------------- collate

def test_padded_length_rule():
    assert padded_length(100, 512, 256, True) == 512
    assert padded_length(512, 512, 256, False) == 512
    assert padded_length(513, 512, 256, False) == 768
    assert padded_length(1000, 512, 256, False) == 1024
    with pytest.raises(ValueError, match="more than max_seq_len 512"):
        padded_length(600, 512, 256, True)


def test_collate_pads_and_masks():
    items = [{"video_id": f"v{i}", "feats": torch.full((2, n), float(i + 1)), "segments": torch.zeros(i, 2),
              "labels": torch.zeros(i, dtype=torch.long), "fps": 30.0, "duration": 9.0, "feat_stride": 4.0,
              "num_frames": 16.0} for i, n in enumerate([5, 8])]
    batch = collate_videos(items, max_seq_len=8, max_div_factor=4, is_training=True)
    assert batch["feats"].shape == (2, 2, 8) and batch["mask"].dtype == torch.bool
    assert batch["mask"].tolist() == [[True] * 5 + [False] * 3, [True] * 8]
    assert (batch["feats"][0, :, 5:] == 0).all() and (batch["feats"][0, :, :5] == 1).all()
    assert batch["video_ids"] == ["v0", "v1"] and [len(s) for s in batch["segments"]] == [0, 1]
    long = [dict(items[0], feats=torch.ones(2, 11))]
    assert collate_videos(long, 8, 4, is_training=False)["feats"].shape == (1, 2, 12)
    with pytest.raises(ValueError, match="11 time steps"):
        collate_videos(long, 8, 4, is_training=True)


# ---------------------------------------------------------------- dataset on a small on-disk dataset

def _make_dataset(root, *, missing=(), dim=4):
    database = {
        "t1": {"subset": "Validation", "duration": 12.0, "fps": 30.0,
               "annotations": [{"label": "A", "label_id": 0, "segment": [1.0, 2.0]},
                               {"label": "B", "label_id": 1, "segment": [10.0, 11.9]}]},
        "t2": {"subset": "Validation", "duration": 8.0, "fps": 25.0,
               "annotations": [{"label": "B", "label_id": 1, "segment": [0.5, 7.5]}]},
        "e1": {"subset": "Test", "duration": 5.0, "fps": 30.0,
               "annotations": [{"label": "A", "label_id": 0, "segment": [2.0, 3.0]}]},
        "e2": {"subset": "Test", "duration": 6.0, "fps": 30.0, "annotations": []},
    }
    (root / "features").mkdir(parents=True)
    (root / "annotations.json").write_text(json.dumps({"database": database}))
    lengths = {"t1": 87, "t2": 48, "e1": 36, "e2": 43}  # ~ (fps * duration - 16) / 4 + 1 clips
    for vid, n in lengths.items():
        if vid not in missing:
            feats = np.arange(n * dim, dtype=np.float32).reshape(n, dim)
            np.save(root / "features" / f"{vid}.npy", feats)
    return root


def _cfg(*overrides):
    return load_config("demo", overrides=["dataset.input_dim=4", "dataset.num_classes=2", "dataset.max_seq_len=256",
                                          "dataset.crop_ratio=null", "dataset.default_fps=null", *overrides])


def test_eval_items_hand_values(tmp_path):
    root = _make_dataset(tmp_path)
    ds = TALDataset(_cfg(), root, is_training=False)
    assert ds.video_ids == ["e1", "e2"] and ds.label_names == ["A", "B"]
    item = ds[0]
    assert item["feats"].shape == (4, 36) and item["feats"].dtype == torch.float32
    torch.testing.assert_close(item["feats"][:, 1], torch.tensor([4.0, 5.0, 6.0, 7.0]))  # [T, C] file -> [C, T]
    torch.testing.assert_close(item["segments"], torch.tensor([[(30 * 2.0 - 8) / 4, (30 * 3.0 - 8) / 4]]))
    assert item["segments"].dtype == torch.float32 and item["labels"].tolist() == [0]
    assert (item["fps"], item["duration"], item["feat_stride"], item["num_frames"]) == (30.0, 5.0, 4.0, 16.0)
    assert ds[1]["segments"].shape == (0, 2)
    train = TALDataset(_cfg(), root, is_training=True)
    t2 = train[1]  # fps 25 from the JSON; shorter than max_seq_len and no crop_ratio: the whole video
    torch.testing.assert_close(t2["segments"], torch.tensor([[(25 * 0.5 - 8) / 4, (25 * 7.5 - 8) / 4]]))
    fixed_fps = TALDataset(_cfg("dataset.default_fps=30"), root, is_training=True)[1]
    assert fixed_fps["fps"] == 30.0
    torch.testing.assert_close(fixed_fps["segments"], torch.tensor([[(30 * 0.5 - 8) / 4, (30 * 7.5 - 8) / 4]]))


def test_downsample_clip_and_single_class(tmp_path):
    root = _make_dataset(tmp_path)
    ds = TALDataset(_cfg("dataset.downsample_rate=2"), root, is_training=False)
    item = ds[0]
    assert item["feats"].shape == (4, 18) and item["feat_stride"] == 8.0
    torch.testing.assert_close(item["feats"][:, 1], torch.tensor([8.0, 9.0, 10.0, 11.0]))
    torch.testing.assert_close(item["segments"], torch.tensor([[(30 * 2.0 - 8) / 8, (30 * 3.0 - 8) / 8]]))
    # t1 has 87 features; its second segment [10, 11.9] s = grid [73, 87.25]: clamped to end at 87
    clipped = TALDataset(_cfg("dataset.clip_segments_to_features=true"), root, is_training=True)[0]
    torch.testing.assert_close(clipped["segments"][1], torch.tensor([73.0, 87.0]))
    single = TALDataset(_cfg("dataset.num_classes=1"), root, is_training=True)
    assert single.label_names == ["action"] and single[0]["labels"].tolist() == [0, 0]


def test_reference_grid_resampling(tmp_path):
    root = _make_dataset(tmp_path)
    (root / "i3d").mkdir()
    for vid in ("e1", "e2"):
        np.save(root / "i3d" / f"{vid}.npy", np.zeros((72, 7), np.float32))
    ds = TALDataset(_cfg("dataset.reference_feat_folder=i3d"), root, is_training=False)
    item = ds[0]
    assert item["feats"].shape == (4, 72)
    # 36 -> 72 doubles the length: output i reads input (i + 0.5) / 2 - 0.5; channel 0 of step k is 4k
    torch.testing.assert_close(item["feats"][0, :4], torch.tensor([0.0, 1.0, 3.0, 5.0]))
    # the notebook's explanation of the same resampling: output i reads source step (i + 0.5) / 2 - 0.5, i.e. time
    # ((i + 0.5) / 2 - 0.5) * 4 / 30 + 8 / 30 s, while grid point i claims (4 i + 8) / 30 s
    from tal_kit.tutorial.features import resampling_example

    example = resampling_example(ds.cfg, root, ds.videos[0], fps=30.0)
    np.testing.assert_allclose(example.resampled, item["feats"].numpy())
    assert example.source.shape == (4, 36) and "resampled to the length of i3d (72)" in example.description
    np.testing.assert_allclose(example.time_shift[1:3], [-3 / 30, -5 / 30])
    assert resampling_example(_cfg(), root, ds.videos[0], fps=30.0) is None  # no reference, not the demo


def test_missing_features_listed_or_skipped(tmp_path):
    root = _make_dataset(tmp_path, missing=("t1", "t2"))
    with pytest.raises(FeatureError, match=r"2 feature file\(s\) missing for \['validation'\]") as info:
        TALDataset(_cfg(), root, is_training=True)
    assert "t1.npy" in str(info.value) and "t2.npy" in str(info.value)
    root2 = _make_dataset(tmp_path / "b", missing=("e2",))
    with pytest.warns(MissingFeaturesWarning, match=r"skipping 1 video\(s\)"):
        ds = TALDataset(_cfg("dataset.missing_features=skip"), root2, is_training=False)
    assert ds.video_ids == ["e1"]


def test_class_count_and_fps_errors(tmp_path):
    root = _make_dataset(tmp_path)
    with pytest.raises(AnnotationError, match="defines 2 classes, but dataset.num_classes is 20"):
        TALDataset(_cfg("dataset.num_classes=20"), root)
    data = json.loads((root / "annotations.json").read_text())
    del data["database"]["e1"]["fps"]
    (root / "annotations.json").write_text(json.dumps(data))
    with pytest.raises(AnnotationError, match="video 'e1' has no field 'fps' and dataset.default_fps is not set"):
        TALDataset(_cfg(), root)
    with pytest.raises(FeatureError, match=r"feature dimension is 4 .* dataset.input_dim is 6"):
        TALDataset(_cfg("dataset.input_dim=6", "dataset.default_fps=30"), root)[0]


def test_dataloader_seeded_crops(tmp_path):
    root = _make_dataset(tmp_path)
    cfg = _cfg("dataset.crop_ratio=[0.5,1.0]", "loader.batch_size=2", "loader.num_workers=0")
    ds = TALDataset(cfg, root, is_training=True)

    def crops(seed, workers):
        cfg.loader.num_workers = workers
        random.seed(seed)
        out = []
        for _ in range(3):
            loader, sampler = build_train_loader(ds, cfg, DistContext(), torch.Generator().manual_seed(seed))
            assert sampler is None  # one process: the loader shuffles with its generator
            for batch in loader:
                longest, stride = int(batch["mask"].sum(1).max()), cfg.model.level_strides[-1]
                assert batch["feats"].shape == (2, 4, min(256, (-(-longest // stride) + 1) * stride))  # length-aware
                out.append((tuple(batch["video_ids"]), tuple(batch["mask"].sum(1).tolist())))
        return out

    assert crops(3, 0) == crops(3, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert crops(3, 1) == crops(3, 1)  # worker seeded from the loader's generator
    evaluation = TALDataset(cfg, root, is_training=False)
    assert [evaluation[i]["video_id"] for i in range(len(evaluation))] == ["e1", "e2"]  # whole videos, in order


def test_fixed_length_items_and_resampling_example(tmp_path):
    """Fixed-length features (FineAction-style): resized to max_seq_len, grid from the duration (SPEC §C.3)."""
    from tal_kit.tutorial.features import resampling_example

    root = _make_dataset(tmp_path)
    cfg = _cfg("dataset.feat_stride=-1", "dataset.force_upsampling=true")
    ds = TALDataset(cfg, root, is_training=False)
    item = ds[0]  # e1: 36 features over 5 s at 30 fps -> 256 steps of 150/256 frames, clips 16x as long (fork)
    assert item["feats"].shape == (4, 256)
    assert item["feat_stride"] == pytest.approx(150 / 256) and item["num_frames"] == pytest.approx(16 * 150 / 256)
    torch.testing.assert_close(item["segments"], torch.tensor([[2.0 * 256 / 5 - 8, 3.0 * 256 / 5 - 8]]))
    example = resampling_example(cfg, root, ds.videos[0], fps=30.0)
    assert example.source.shape == (4, 36) and example.resampled.shape == (4, 256)
    np.testing.assert_allclose(example.resampled, item["feats"].numpy(), rtol=1e-6)


@pytest.mark.parametrize("choice", ["ignore", "resize"])
def test_force_upsampling_on_variable_length_features_is_an_explicit_choice(tmp_path, choice):
    """force_upsampling with feat_stride > 0: the InternVideo fork ignores it (features and grid as without it);
    AF HEAD's case 2 resizes to max_seq_len with stride ((T-1)*4+16)/256 frames per step (SPEC §C.3)."""
    root = _make_dataset(tmp_path)
    cfg = _cfg("dataset.force_upsampling=true", f"dataset.variable_length_upsampling={choice}")
    item = TALDataset(cfg, root, is_training=False)[0]  # e1: 36 features, stride 4, 16 frames, 30 fps
    if choice == "ignore":
        plain = TALDataset(_cfg(), root, is_training=False)[0]
        assert item["feats"].shape == (4, 36) and (item["feat_stride"], item["num_frames"]) == (4.0, 16.0)
        torch.testing.assert_close(item["feats"], plain["feats"])
        torch.testing.assert_close(item["segments"], torch.tensor([[(30 * 2.0 - 8) / 4, (30 * 3.0 - 8) / 4]]))
    else:
        stride = (35 * 4 + 16) / 256
        assert item["feats"].shape == (4, 256)
        assert item["feat_stride"] == pytest.approx(stride) and item["num_frames"] == pytest.approx(stride)
        torch.testing.assert_close(item["segments"], torch.tensor([[30 * 2.0 / stride - 0.5, 30 * 3.0 / stride - 0.5]]))


def test_internvideo_presets_keep_the_forks_variable_length_rule():
    for preset in ("thumos14", "anet", "hacs", "fineaction"):
        assert load_config(preset).dataset.variable_length_upsampling == "ignore", preset
