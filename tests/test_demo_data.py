"""The demo dataset: deterministic, in the real on-disk layout, THUMOS-shaped annotations, and features whose class
structure a simple independent classifier can pick up (learnable) while distractors and noise remain."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from tal_kit.__main__ import main
from tal_kit.config import load_config
from tal_kit.data.annotations import load_annotations
from tal_kit.data.dataset import TALDataset
from tal_kit.data.demo import (THUMOS_CLASSES, DemoSpec, generate_demo_dataset, load_demo_spec,
                               plan_video, plan_videos, render_features)

SMALL = DemoSpec(num_train_videos=24, num_test_videos=20, max_duration=60.0)


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo") / "demo"
    summary = generate_demo_dataset(root, SMALL)
    return root, summary


def test_layout_and_loading(small_demo):
    root, summary = small_demo
    assert sorted(p.name for p in root.iterdir()) == ["annotations.json", "demo_meta.json", "features"]
    assert summary["videos"] == 44 and len(list((root / "features").glob("*.npy"))) == 44
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no segment beyond its video, none of zero length
        db = load_annotations(root / "annotations.json")
    assert db.label_names == THUMOS_CLASSES  # all 20 classes present, ids alphabetical like THUMOS
    assert len(db.select(["validation"])) == 24 and len(db.select(["test"])) == 20
    assert db.num_segments == summary["segments"]
    assert load_demo_spec(root) == SMALL
    cfg = load_config("demo")
    ds = TALDataset(cfg, root, is_training=False)
    for i in (0, 7):
        item, video = ds[i], ds.videos[i]
        expected_t = (int(np.floor(video.duration * video.fps)) - 16) // 4 + 1  # whole 16-frame clips, stride 4
        assert item["feats"].shape == (cfg.dataset.input_dim, expected_t)
    train = TALDataset(cfg, root, is_training=True)
    assert train[0]["feats"].shape[1] <= cfg.dataset.max_seq_len


def test_deterministic(small_demo, tmp_path):
    root, _ = small_demo
    again = tmp_path / "again"
    generate_demo_dataset(again, SMALL)
    assert (again / "annotations.json").read_bytes() == (root / "annotations.json").read_bytes()
    for name in ("video_validation_0000003.npy", "video_test_0000020.npy"):
        assert (again / "features" / name).read_bytes() == (root / "features" / name).read_bytes()
    other = DemoSpec(**{**SMALL.to_dict(), "seed": 1})
    assert plan_video(other, 0) != plan_video(SMALL, 0)


def test_annotation_statistics_are_thumos_like():
    plans = plan_videos(DemoSpec())  # planning only: no features rendered
    lengths = np.array([i.end - i.start for p in plans for i in p.instances])
    per_video = np.array([sum(len(i.labels) for i in p.instances) for p in plans])
    assert 2.5 < np.median(lengths) < 5.0 and lengths.min() >= 0.3 and lengths.max() <= 25.0
    assert 3 <= per_video.mean() <= 10 and per_video.min() >= 1
    fps = {p.fps for p in plans}
    assert fps == {30.0, 25.0, 29.97}
    assert {p.subset for p in plans} == {"Validation", "Test"}
    durations = np.array([p.duration for p in plans])
    assert durations.min() >= 30 and durations.max() <= 120
    ids = {n: i for i, n in enumerate(THUMOS_CLASSES)}
    cliff = [i for p in plans for i in p.instances if ids["CliffDiving"] in i.labels]
    assert cliff and all(i.labels == (ids["CliffDiving"], ids["Diving"]) for i in cliff)  # THUMOS's double label
    overlaps = sum(1 for p in plans for a, b in zip(p.instances, p.instances[1:]) if b.start < a.end)
    assert overlaps > 10  # CricketShot overlapping CricketBowling
    assert sum(len(p.distractors) for p in plans) > len(plans)


def test_features_carry_class_structure_with_noise(small_demo):
    """A nearest-centroid classifier on the mean feature inside each instance (centroids from the train videos)
    must beat chance by far on the test videos; a single actionness direction (from the train videos) must tell
    feature steps inside actions from background steps on the test videos, but not cleanly."""
    root, _ = small_demo
    db = load_annotations(root / "annotations.json")

    def instance_means(subset):
        xs, ys, inside_steps, background_steps = [], [], [], []
        for video in db.select([subset]):
            feats = np.load(root / "features" / f"{video.video_id}.npy")
            feats = feats - feats.mean(0)  # remove the per-video scene offset
            centre = (np.arange(len(feats)) * 4 + 8) / video.fps  # clip centres (s)
            inside_any = np.zeros(len(feats), bool)
            near_any = np.zeros(len(feats), bool)
            for (s, e), label in zip(video.segments, video.labels):
                inside = (centre > s + 0.3) & (centre < e - 0.3)
                inside_any |= inside
                near_any |= (centre > s - 1) & (centre < e + 1)
                if inside.sum() >= 2:
                    xs.append(feats[inside].mean(0))
                    ys.append(label)
            inside_steps.append(feats[inside_any])
            background_steps.append(feats[~near_any])
        return np.array(xs), np.array(ys), np.concatenate(inside_steps), np.concatenate(background_steps)

    x_train, y_train, inside_train, background_train = instance_means("validation")
    x_test, y_test, inside_test, background_test = instance_means("test")
    classes = np.unique(y_train)
    centroids = np.stack([x_train[y_train == c].mean(0) for c in classes])
    predicted = classes[np.argmin(((x_test[:, None] - centroids[None]) ** 2).sum(-1), axis=1)]
    accuracy = (predicted == y_test).mean()
    assert accuracy > 0.4  # chance is 1/20
    # actionness: project each test step on (mean inside - mean background) of the train videos; the AUC is the
    # chance that a random inside step scores above a random background step
    direction = inside_train.mean(0) - background_train.mean(0)
    inside_score, background_score = inside_test @ direction, background_test @ direction
    auc = (inside_score[:, None] > background_score[None, :]).mean()
    assert 0.75 < auc < 0.95  # actions change the features, but no single step is clean
    single_step_noise = np.load(root / "features" / "video_test_0000001.npy").std(0).mean()
    assert single_step_noise > 0.5


def test_render_on_another_grid():
    plan = plan_video(SMALL, 2)
    fine = render_features(SMALL, plan)
    coarse = render_features(SMALL, plan, feat_stride=8)
    assert coarse.shape[0] == (int(np.floor(plan.duration * plan.fps)) - 16) // 8 + 1
    assert abs(fine.shape[0] - 2 * coarse.shape[0]) <= 2
    np.testing.assert_array_equal(render_features(SMALL, plan), fine)


def test_refuses_foreign_folder_and_overwrites_demo(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a demo dataset folder"):
        generate_demo_dataset(foreign, SMALL)
    assert (foreign / "precious.txt").exists()
    tiny = DemoSpec(num_train_videos=2, num_test_videos=1, max_duration=35.0)
    demo = tmp_path / "demo"
    generate_demo_dataset(demo, tiny)
    with pytest.raises(FileExistsError, match="overwrite"):
        generate_demo_dataset(demo, tiny)
    generate_demo_dataset(demo, DemoSpec(num_train_videos=1, num_test_videos=1, max_duration=35.0), overwrite=True)
    assert len(list((demo / "features").iterdir())) == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left behind


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["demo-data", "--out", str(out), "--set", "num_train_videos=2", "--set", "num_test_videos=1",
                          "--set", "max_duration=35"]) == 0
    assert "3 videos" in capsys.readouterr().out
    assert json.loads((out / "demo_meta.json").read_text())["spec"]["num_train_videos"] == 2
    assert main(["demo-data", "--out", str(tmp_path / "x"), "--set", "num_videos=3"]) == 2
    assert "unknown demo settings ['num_videos']" in capsys.readouterr().err


@pytest.mark.parametrize("settings, message", [
    ({"num_train_videos": 2.5}, "num_train_videos = 2.5: must be a positive integer"),
    ({"min_duration": 0.2}, "shorter than one clip of 16 frames"),
    ({"fps_probs": [0.5, 0.5, 0.5]}, "one probability per fps choice"),
    ({"amplitude_range": [1.0, 0.5]}, "0 <= low <= high"),
])
def test_bad_settings(settings, message):
    with pytest.raises(ValueError, match=message):
        DemoSpec.from_dict(settings)


def test_cli_bad_value(tmp_path, capsys):
    assert main(["demo-data", "--out", str(tmp_path / "x"), "--set", "seed=abc"]) == 2
    assert "setting seed: 'abc' is not a number" in capsys.readouterr().err
