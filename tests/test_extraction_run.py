"""Many videos -> a feature folder: the CLI end to end, bad videos, resume after a kill, shards, the manifest."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("av")

from tal_kit.__main__ import main  # noqa: E402
from tal_kit.extraction.checkpoints import random_backbone  # noqa: E402
from tal_kit.extraction.features import ClipSettings  # noqa: E402
from tal_kit.extraction.recipes import get_recipe  # noqa: E402
from tal_kit.extraction.runner import find_videos, run_extraction  # noqa: E402
from tests.videos import write_empty_video, write_video  # noqa: E402

# a ViT-g/14-wide backbone (1408-d, the thumos14 preset's input_dim) with one block, on a reduced 28x28 input
SMALL_G = ["--random-weights", "--depth", "1", "--img-size", "28", "--no-progress"]
TINY = dict(embed_dim=32, depth=1, num_heads=2, mlp_dim=64, img_size=32)


@pytest.fixture
def video_folder(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    for i, n in enumerate((40, 57, 70)):
        write_video(folder / f"vid_{i}.mkv", n)
    return folder


def test_end_to_end_extract_check_data_dataset_inference(tmp_path, video_folder, capsys, monkeypatch):
    monkeypatch.setenv("TAL_KIT_NMS_EXT", "cpu")  # the C++ NMS kernels suffice; no CUDA build on the way
    root = tmp_path / "root"
    no_ref = ["--set", "dataset.reference_feat_folder=null"]
    assert main(["extract", str(video_folder), "--out", str(root), "--preset", "thumos14", *no_ref, *SMALL_G]) == 0
    for i, n in enumerate((40, 57, 70)):
        feats = np.load(root / "mae_features" / f"vid_{i}.npy")
        assert feats.dtype == np.float32 and feats.shape == ((n - 16) // 4 + 1, 1408)  # stride 4, 16 frames
    manifest = json.loads((root / "mae_features" / "manifest.json").read_text())
    entry = manifest["videos"]["vid_1"]
    assert (entry["fps"], entry["num_frames"], entry["stride"], entry["clip_len"]) == (30.0, 57, 4, 16)
    assert entry["duration"] == pytest.approx(57 / 30)
    assert entry["clip_centres"] == pytest.approx([(4 * k + 8) / 30 for k in range(11)])
    assert entry["recipe"] == "videomae2_tad" and entry["backbone"]["arch"]["embed_dim"] == 1408
    assert entry["checkpoint_sha256"] == "random(seed=0)" and entry["kit_version"]
    assert manifest["failed"] == {}

    # the preset's grid: check-data passes (inference-only data: no training split, hence the override)
    capsys.readouterr()
    assert main(["check-data", "--config", "thumos14", "--data-root", str(root), *no_ref,
                 "--set", "train_split=[test]"]) == 0
    assert "OK: ready to train" in capsys.readouterr().out

    from tal_kit.config import load_config
    from tal_kit.data.dataset import TALDataset
    from tal_kit.inference.predict import predict
    from tal_kit.model import ActionFormer

    cfg = load_config("thumos14", ["dataset.reference_feat_folder=null"])
    dataset = TALDataset(cfg, root, split=["test"])
    assert len(dataset) == 3 and dataset[0]["feats"].shape == (1408, 7)
    torch.manual_seed(0)
    predictions = predict(ActionFormer(cfg), dataset, cfg, progress=False)
    videos = {out["video_id"]: out for out in predictions.video_outputs}
    assert set(videos) == {"vid_0", "vid_1", "vid_2"}
    for vid, out in videos.items():
        duration = dataset.annotations[vid].duration
        assert len(out["segments"]) > 0 and out["segments"].min() >= 0 and out["segments"].max() <= duration + 1e-6


def test_other_presets_get_their_grid_fps_prefix_and_format(tmp_path, video_folder):
    from tal_kit.data.features import load_feature_file

    # fineaction: fixed-length features in .csv, VideoMAEv2's FineAction stride 16 at native fps, v_ prefix
    assert main(["extract", str(video_folder), "--out", str(tmp_path / "fa"), "--preset", "fineaction", *SMALL_G]) == 0
    feats = load_feature_file(tmp_path / "fa" / "features" / "v_vid_2.csv", 1408)
    assert feats.shape == ((70 - 16) // 16 + 1, 1408)
    # anet: the preset's 15 fps grid (30 fps video resampled by timestamps), stride 16, ViT-H width
    assert main(["extract", str(video_folder), "--out", str(tmp_path / "an"), "--preset", "anet", *SMALL_G,
                 "--img-size", "32"]) == 0
    entry = json.loads((tmp_path / "an" / "mae_features" / "manifest.json").read_text())["videos"]["vid_2"]
    assert (entry["fps"], entry["num_frames"], entry["stride"], entry["feature_dim"]) == (15.0, 35, 16, 1280)
    assert np.load(tmp_path / "an" / "mae_features" / "v_vid_2.npy").shape == ((35 - 16) // 16 + 1, 1280)


def test_bad_videos_are_reported_skipped_and_fail_the_run(tmp_path, video_folder, capsys):
    (video_folder / "junk.mp4").write_bytes(b"\x00garbage" * 20)
    write_video(video_folder / "short.mkv", 12)
    write_empty_video(video_folder / "empty.avi")
    out = tmp_path / "feats"
    code = main(["extract", str(video_folder), "--out", str(out), "--backbone", "vit-b/16", "--random-weights",
                 "--embed-dim", "32", "--depth", "1", "--num-heads", "2", "--mlp-dim", "64", "--img-size", "32",
                 "--no-progress"])
    captured = capsys.readouterr()
    assert code == 1
    assert "FAILED junk: unreadable" in captured.out
    assert "FAILED short: 12 frame(s), shorter than one clip of 16" in captured.out
    assert "FAILED empty: zero frames decoded" in captured.out
    assert sorted(p.name for p in out.glob("*.npy")) == ["vid_0.npy", "vid_1.npy", "vid_2.npy"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["failed"]) == {"junk", "short", "empty"} and len(manifest["videos"]) == 3
    info = json.loads((out / "video_info.json").read_text())["database"]
    assert info["vid_0"] == {"subset": "test", "duration": pytest.approx(40 / 30, abs=1e-6), "fps": 30.0,
                             "annotations": []}


@pytest.mark.parametrize("argv,message", [
    (["--checkpoint", "missing.pth"], "checkpoint missing.pth does not exist"),
    (["--random-weights", "--preset", "anet", "--backbone", "vit-g/14"],
     "dataset.input_dim is 1280 but the backbone gives 1408-d"),
    (["--random-weights", "--shard", "3/2"], "--shard: need 0 <= i < n"),
    (["--random-weights", "--preset", "hacs"], "no named backbone gives dataset.input_dim = 2560"),
    (["--random-weights", "--preset", "no_such_preset"], "no_such_preset"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, video_folder, capsys, argv, message):
    code = main(["extract", str(video_folder), "--out", str(tmp_path / "o"),
                 "--depth", "1", "--img-size", "28", "--no-progress", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: ") and message in err[-1]
    assert "Traceback" not in "\n".join(err)


def test_no_videos_is_bad_input(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["extract", str(tmp_path / "empty"), "--out", str(tmp_path / "o"), "--random-weights"]) == 2
    assert "no video files" in capsys.readouterr().err


class Killer(torch.nn.Module):
    """Wraps a backbone and raises KeyboardInterrupt (a kill) on its n-th forward call."""

    def __init__(self, model, kill_at: int):
        super().__init__()
        self.model, self.kill_at, self.calls = model, kill_at, 0
        self.feature_dim, self.arch = model.feature_dim, model.arch

    def forward(self, x):
        self.calls += 1
        if self.calls == self.kill_at:
            raise KeyboardInterrupt
        return self.model(x)


def test_killed_run_resumes_without_redoing_finished_videos(tmp_path, video_folder):
    videos = find_videos([video_folder])
    out = tmp_path / "feats"
    backbone = random_backbone("vit-b/16", **TINY)
    recipe, grid = get_recipe("videomae2_tad", 32), ClipSettings(4, 16)
    reference = run_extraction(videos, tmp_path / "ref", backbone, recipe, grid, batch_size=2, progress=False)
    assert reference.ok and len(reference.extracted) == 3

    real = backbone.model
    backbone.model = Killer(real, kill_at=6)  # vid_0 takes 7 clips = 4 batches of 2; dies inside vid_1
    with pytest.raises(KeyboardInterrupt):
        run_extraction(videos, out, backbone, recipe, grid, batch_size=2, progress=False)
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == ["manifest.json", "vid_0.npy"]  # no temp file
    assert [p.name for p in (out / "manifest.d").glob("*.json")] == ["vid_0.json"]
    assert not list(out.rglob("*.tmp"))  # no half-written file anywhere
    done_time = (out / "vid_0.npy").stat().st_mtime_ns

    backbone.model = real
    report = run_extraction(videos, out, backbone, recipe, grid, batch_size=2, progress=False)
    assert report.skipped == ["vid_0"] and report.extracted == ["vid_1", "vid_2"]
    assert (out / "vid_0.npy").stat().st_mtime_ns == done_time
    for vid in ("vid_0", "vid_1", "vid_2"):
        assert np.allclose(np.load(out / f"{vid}.npy"), np.load(tmp_path / "ref" / f"{vid}.npy"), atol=1e-6)
    assert set(json.loads((out / "manifest.json").read_text())["videos"]) == {"vid_0", "vid_1", "vid_2"}

    other = ClipSettings(8, 16)  # a folder never mixes grids
    with pytest.raises(ValueError, match="already extracted with other settings \\(stride=4"):
        run_extraction(videos, out, backbone, recipe, other, progress=False)


def test_shards_split_the_videos_and_together_cover_them(tmp_path, video_folder, monkeypatch):
    videos = find_videos([video_folder])
    backbone = random_backbone("vit-b/16", **TINY)
    recipe, grid = get_recipe("videomae2_tad", 32), ClipSettings(4, 16)
    first = run_extraction(videos, tmp_path / "o", backbone, recipe, grid, shard=(0, 2), progress=False)
    second = run_extraction(videos, tmp_path / "o", backbone, recipe, grid, shard=(1, 2), progress=False)
    assert first.extracted == ["vid_0", "vid_2"] and second.extracted == ["vid_1"]
    assert set(json.loads((tmp_path / "o" / "manifest.json").read_text())["videos"]) == {"vid_0", "vid_1", "vid_2"}
    from tal_kit.extraction.runner import resolve_shard

    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert resolve_shard(None) == (1, 4) and resolve_shard("2/3") == (2, 3)


def test_extraction_keeps_the_layer_rule():
    """Extraction is the first pipeline stage: it imports no later stage and no plotly/ipywidgets/IPython."""
    import subprocess
    import sys

    code = ("import sys, tal_kit.extraction, tal_kit.extraction.cli, tal_kit.extraction.demo; "
            "tal_kit.extraction.cli.build_parser(); "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('plotly', 'ipywidgets', 'IPython') or "
            "m.startswith(('tal_kit.data', 'tal_kit.model', 'tal_kit.training', 'tal_kit.inference', "
            "'tal_kit.evaluation', 'tal_kit.viz', 'tal_kit.ops'))); print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
