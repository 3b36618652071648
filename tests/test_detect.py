"""``detect`` end to end on generated videos: a tiny detector trained once per module on demo-videos features."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tal_kit.data.demo_videos import VideoDemoSpec, generate_demo_videos

SPEC = VideoDemoSpec(seed=11, num_train_videos=16, num_test_videos=3, min_duration=10.0, max_duration=12.0,
                     instances=(1, 2), min_instance=2.0, max_instance=3.5, distractors=(0, 1), size=64,
                     shape_radius=(17, 22))
VIT = dict(embed_dim=64, depth=1, num_heads=2, mlp_dim=128, patch_size=32, img_size=64, num_frames=8)  # as make
TRAIN = ["opt.epochs=20", "opt.warmup_epochs=1", "trainer.eval_start_epoch=1000", "loader.num_workers=0"]


def _backbone(**changes):
    from tal_kit.extraction import random_backbone

    return random_backbone("vit-b/16", seed=0, **{**VIT, **changes})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from tal_kit.extraction import ClipSettings, find_videos, get_recipe, run_extraction
    from tal_kit.train import train

    root = tmp_path_factory.mktemp("detect") / "data"
    generate_demo_videos(root, SPEC)
    run_extraction(find_videos([root / "videos"]), root / "features", _backbone(),
                   get_recipe("videomae2_tad", 64), ClipSettings(4, 8), progress=False)
    run = root.parent / "run"
    train("demo_videos", TRAIN, data_root=root, run_dir=run, progress=False)
    return root, run / "checkpoints" / "last.pt"


def _detect(trained, out, **kwargs):
    from tal_kit.detect import detect

    root, ckpt = trained
    kwargs.setdefault("backbone", _backbone())
    return detect([root / "videos" / "test"], ckpt, out=out, data_root=root, report=False, progress=False, **kwargs)


def test_detections_are_valid_and_in_seconds(trained, tmp_path, capsys):
    from tal_kit.evaluation.cli import cli_evaluate

    root, _ = trained
    result = _detect(trained, tmp_path / "out")
    db = json.loads((root / "annotations.json").read_text())["database"]
    payload = json.loads(result.detections_path.read_text())
    assert set(payload["results"]) == {vid for vid, v in db.items() if v["subset"] == "test"}
    for vid, dets in payload["results"].items():
        assert dets and all(0 <= d["segment"][0] < d["segment"][1] <= db[vid]["duration"] + 1e-6 for d in dets)
    # the evaluator reads the file
    capsys.readouterr()
    assert cli_evaluate(["--gt", str(root / "annotations.json"), "--pred", str(result.detections_path),
                         "--subset", "test", "--tiou", "0.3:0.7:0.1", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(summary["mAP"]) == 5
    # ground truth for the report came from the training annotations
    assert set(result.ground_truth) == set(payload["results"])


def test_boundaries_agree_with_the_generated_ground_truth(trained, tmp_path):
    """For each annotated action, the top-scoring detection of its class that overlaps it starts and ends within
    the grid's resolution of the truth.

    Tolerance: a boundary at time b is a fade of ``blur`` seconds centred on b, and the feature of a clip sees it
    whenever its ``num_frames`` frames overlap the fade, so one boundary is smeared over every feature whose clip
    centre lies within (clip length + fade) / 2 of b: a window of 8/15 + 0.4 = 0.93 s that the features cannot
    resolve further. A detected boundary anywhere in that window is as good as the grid allows, hence
    tolerance = clip length + fade (about 3.5 feature steps of 4/15 s).
    """
    root, _ = trained
    result = _detect(trained, tmp_path / "out")
    db = json.loads((root / "annotations.json").read_text())["database"]
    tolerance = 8 / SPEC.fps + SPEC.blur
    errors = []
    for vid in result.ground_truth:
        mine = result.detections.for_video(vid)
        starts, ends = np.asarray(mine.starts), np.asarray(mine.ends)
        for a in db[vid]["annotations"]:
            s, e = a["segment"]
            match = (np.asarray(mine.labels) == a["label_id"]) & (np.minimum(ends, e) > np.maximum(starts, s))
            assert match.any(), (vid, a, "no detection of the class overlaps it")
            best = np.flatnonzero(match)[np.argmax(np.asarray(mine.scores)[match])]
            errors.append((vid, a["label"], round(float(starts[best] - s), 3), round(float(ends[best] - e), 3)))
    assert errors and all(max(abs(ds), abs(de)) <= tolerance for _, _, ds, de in errors), (tolerance, errors)


def test_grid_mismatch_is_refused_naming_video_and_field(trained, tmp_path, capsys):
    from tal_kit.__main__ import main
    from tal_kit.detect import DetectError
    from tal_kit.extraction import ClipSettings, find_videos, get_recipe, run_extraction

    root, ckpt = trained
    other = tmp_path / "stride8"
    run_extraction(find_videos([root / "videos" / "test"]), other, _backbone(), get_recipe("videomae2_tad", 64),
                   ClipSettings(8, 8), progress=False)
    with pytest.raises(DetectError, match=r"clip_test_0001\.mp4.*field 'stride' is 8 frames.*feat_stride is 4"):
        _detect(trained, tmp_path / "out", features=other)
    with pytest.raises(DetectError, match=r"field 'feature_dim'.*input_dim is 64"):
        _detect(trained, tmp_path / "out2", backbone=_backbone(embed_dim=32, mlp_dim=64))
    code = main(["detect", str(root / "videos" / "test"), "--checkpoint", str(ckpt), "--out", str(tmp_path / "cli"),
                 "--features", str(other), "--no-report"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: ") and "field 'stride'" in err[-1]


def test_report_links_each_video(trained, tmp_path):
    import os

    from tal_kit.detect import detect

    root, ckpt = trained
    result = detect([root / "videos" / "test"], ckpt, out=tmp_path / "out", backbone=_backbone(), data_root=root,
                    progress=False)
    html = result.report_path.read_text()
    assert html.count("<video") == len(result.videos) > 0
    for v in result.videos:  # each video by its path relative to the report (the page works from file:// as moved)
        assert f'src="{os.path.relpath(v.video_path, result.report_path.parent)}"' in html, v.video_id
