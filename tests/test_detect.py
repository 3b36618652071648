"""``detect`` end to end on generated videos: a tiny detector trained once per module on demo-videos features."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tal_kit.data.demo_videos import VideoDemoSpec, generate_demo_videos

SPEC = VideoDemoSpec(seed=11, num_train_videos=16, num_test_videos=3, min_duration=10.0, max_duration=12.0,
                     instances=(1, 2), min_instance=2.0, max_instance=3.5, distractors=(0, 1), size=64)
VIT = dict(embed_dim=64, depth=1, num_heads=2, mlp_dim=128, img_size=64, num_frames=8)
TRAIN = ["opt.epochs=14", "opt.warmup_epochs=1", "trainer.eval_start_epoch=1000", "loader.num_workers=0"]


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


@pytest.mark.xfail(strict=True, reason="open: the 14-epoch detector of this fixture (16 videos) does not localise "
                   "the actions yet; generator/training settings still to tune (see E1's report)")
def test_boundaries_agree_with_the_generated_ground_truth(trained, tmp_path):
    """Each annotated action has a detection of its class whose start and end lie within the grid's resolution
    (one feature step, 4/15 s) plus the fade (the boundary is the fade's midpoint) of the truth."""
    root, _ = trained
    result = _detect(trained, tmp_path / "out")
    db = json.loads((root / "annotations.json").read_text())["database"]
    tolerance = 4 / SPEC.fps + SPEC.blur
    det = result.detections
    for vid in result.ground_truth:
        mine = det.for_video(vid)
        for a in db[vid]["annotations"]:
            s, e = a["segment"]
            same = np.asarray(mine.labels) == a["label_id"]
            close = same & (np.abs(np.asarray(mine.starts) - s) <= tolerance) & \
                (np.abs(np.asarray(mine.ends) - e) <= tolerance)
            assert close.any(), (vid, a, list(zip(mine.starts[same][:5], mine.ends[same][:5])))


def test_grid_mismatch_is_refused_naming_video_and_field(trained, tmp_path, capsys):
    from tal_kit.detect import DetectError, cli_detect
    from tal_kit.extraction import ClipSettings, find_videos, get_recipe, run_extraction

    root, ckpt = trained
    other = tmp_path / "stride8"
    run_extraction(find_videos([root / "videos" / "test"]), other, _backbone(), get_recipe("videomae2_tad", 64),
                   ClipSettings(8, 8), progress=False)
    with pytest.raises(DetectError, match=r"clip_test_0001\.mp4.*field 'stride' is 8 frames.*feat_stride is 4"):
        _detect(trained, tmp_path / "out", features=other)
    with pytest.raises(DetectError, match=r"field 'feature_dim'.*input_dim is 64"):
        _detect(trained, tmp_path / "out2", backbone=_backbone(embed_dim=32, mlp_dim=64))
    code = cli_detect([str(root / "videos" / "test"), "--checkpoint", str(ckpt), "--out", str(tmp_path / "cli"),
                       "--features", str(other), "--no-report"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: ") and "field 'stride'" in err[-1]


def test_report_links_each_video(trained, tmp_path):
    pytest.importorskip("tal_kit.viz.video")
    from tal_kit.detect import detect

    root, ckpt = trained
    result = detect([root / "videos" / "test"], ckpt, out=tmp_path / "out", backbone=_backbone(), data_root=root,
                    progress=False)
    html = result.report_path.read_text()
    for v in result.videos:
        assert v.video_path.name in html
