"""The video demo generator: deterministic, and its annotations agree with the pixels of the encoded videos."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tal_kit.__main__ import main
from tal_kit.data.demo_videos import (META_FILE, VIDEO_CLASSES, VideoDemoSpec,
                                      generate_demo_videos, plan_video)

SMALL = VideoDemoSpec(seed=5, num_train_videos=2, num_test_videos=1, min_duration=9.0, max_duration=10.0,
                      instances=(2, 2), min_instance=1.5, max_instance=2.5, distractors=(2, 2))


def _frames(path):
    from tal_kit.extraction.decode import iter_frames

    return [f.rgb for f in iter_frames(path)]


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo_videos") / "dv"
    generate_demo_videos(root, SMALL)
    return root


def _video(root, video_id):
    return next((root / "videos").rglob(f"{video_id}.*"))


def test_layout_and_annotations(small_demo):
    db = json.loads((small_demo / "annotations.json").read_text())["database"]
    assert sorted(db) == ["clip_test_0001", "clip_training_0001", "clip_training_0002"]
    assert {v["subset"] for v in db.values()} == {"training", "test"}
    assert (small_demo / META_FILE).exists()
    for vid, v in db.items():
        path = _video(small_demo, vid)
        assert path.parent.name == ("test" if v["subset"] == "test" else "train")
        frames = _frames(path)
        # the JSON's duration and fps are the encoded video's
        assert len(frames) == round(v["duration"] * v["fps"])
        assert frames[0].shape == (SMALL.size, SMALL.size, 3)
        assert len(v["annotations"]) == 2
        for a in v["annotations"]:
            assert 0 < a["segment"][0] < a["segment"][1] < v["duration"]
            assert VIDEO_CLASSES[a["label_id"]].name == a["label"]


def _near(frame: np.ndarray, colour, tol: float = 50.0) -> int:
    """Pixels within ``tol`` (RGB Euclidean) of ``colour``."""
    return int((np.linalg.norm(frame.astype(float) - np.asarray(colour, float), axis=-1) < tol).sum())


def test_class_colour_present_inside_actions_and_absent_outside(small_demo):
    db = json.loads((small_demo / "annotations.json").read_text())["database"]
    for vid, v in db.items():
        frames = _frames(_video(small_demo, vid))
        fps = v["fps"]
        times = (np.arange(len(frames)) + 0.5) / fps
        for a in v["annotations"]:
            start, end = a["segment"]
            colour = VIDEO_CLASSES[a["label_id"]].colour
            # fully visible between the fades: a good part of the shape is in the class colour
            inside = [i for i, t in enumerate(times) if start + SMALL.blur / 2 < t < end - SMALL.blur / 2]
            assert inside
            for i in inside:
                assert _near(frames[i], colour) >= 100, (vid, a, i)
        # away from every action (beyond its fades) no pixel has any class colour, distractors included
        busy = np.zeros(len(frames), bool)
        for a in v["annotations"]:
            busy |= (times > a["segment"][0] - SMALL.blur / 2 - 1 / fps) & (times < a["segment"][1] + SMALL.blur / 2 + 1 / fps)
        idle = np.flatnonzero(~busy)
        assert len(idle) > fps  # the check sees more than a second of the video
        for i in idle:
            for c in VIDEO_CLASSES:
                assert _near(frames[i], c.colour) == 0, (vid, i, c.name)


def test_deterministic_for_a_seed(small_demo, tmp_path):
    again = tmp_path / "again"
    generate_demo_videos(again, SMALL)
    assert (again / "annotations.json").read_text() == (small_demo / "annotations.json").read_text()
    a, b = _frames(_video(small_demo, "clip_test_0001")), _frames(_video(again, "clip_test_0001"))
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
    other = VideoDemoSpec(**{**SMALL.to_dict(), "seed": 6})
    assert plan_video(other, 0).actions != plan_video(SMALL, 0).actions


def test_cli_refuses_a_foreign_folder_and_bad_settings(tmp_path, capsys):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert main(["demo-videos", "--out", str(foreign)]) == 2
    assert "not a demo-videos folder" in capsys.readouterr().err
    assert main(["demo-videos", "--out", str(tmp_path / "x"), "--set", "fps=0"]) == 2
    assert "fps" in capsys.readouterr().err
    assert (foreign / "notes.txt").read_text() == "mine"
