"""End to end on a tiny demo: train -> run dir -> inference; resume bit-exactness with the real model; the CLIs.

Independent checks: the cached pre-NMS candidates, put through NMS again by the viz module, reproduce
detections.json; the evaluator run on detections.json reproduces metrics.json; ``infer`` on the last
checkpoint reproduces the training's final metrics; an interrupted-and-resumed run equals an uninterrupted one.
"""
from __future__ import annotations

import json

import pytest
import torch

from tal_kit.__main__ import main
from tal_kit.config import load_config
from tal_kit.train import train
from tests.tiny_demo import TINY_OVERRIDES, tiny_demo  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tiny_demo, tmp_path_factory):  # noqa: F811
    run_dir = tmp_path_factory.mktemp("tiny_run")
    result = train("demo", TINY_OVERRIDES, data_root=tiny_demo, run_dir=run_dir, device="cpu", progress=False,
                   figure_dir=run_dir / "figures")
    return result, run_dir


def test_run_dir_layout(trained):
    result, run_dir = trained
    cfg = load_config("demo", TINY_OVERRIDES)
    assert result["finished"] and result["epochs_completed"] == cfg.opt.total_epochs == 2
    for name in ("metrics.jsonl", "train_summary.json", "detections.json", "metrics.json", "pre_nms_candidates.npz",
                 "figures/training_curves.png"):
        assert (run_dir / name).stat().st_size > 0, name
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert checkpoints == ["best.pt", "epoch_000.pt", "epoch_001.pt", "last.pt"]
    summary = json.loads((run_dir / "train_summary.json").read_text())
    assert summary["report"] == "last" and summary["last"]["epoch"] == 1
    assert [h["epoch"] for h in summary["history"]] == [0, 1]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epoch"] == 1 and metrics["which"] == "last"
    assert metrics["tiou_thresholds"] == [0.3, 0.4, 0.5, 0.6, 0.7]
    assert metrics["mAP"] == summary["last"]["mAP"]  # the final pass and the per-epoch evaluation agree
    assert set(metrics) >= {"average_mAP", "per_class_ap"}
    # the lr of the first logged step follows the schedule: warmup from 0 over one epoch
    first = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])
    iters_per_epoch = 40 // 4
    assert first["lr"] == pytest.approx(cfg.opt.learning_rate * (first["step"] - 1) / (iters_per_epoch - 1))


def test_candidates_and_metrics_are_consistent(trained, tiny_demo):  # noqa: F811
    """Replaying NMS on the cached candidates gives detections.json; scoring detections.json gives metrics.json."""
    import numpy as np

    from tal_kit.data.annotations import load_annotations
    from tal_kit.detections import Detections
    from tal_kit.evaluate import evaluate_detections
    from tal_kit.inference.candidates import load_candidates
    from tal_kit.inference.nms import detections_from_candidates, nms_settings

    _, run_dir = trained
    cfg = load_config("demo", TINY_OVERRIDES)
    db = load_annotations(tiny_demo / "annotations.json")
    written = Detections.from_results_json(run_dir / "detections.json", db.label_names)
    replayed = detections_from_candidates(load_candidates(run_dir / "pre_nms_candidates.npz"),
                                          nms_settings(cfg.test_cfg))
    assert len(written) == len(replayed) > 0
    assert (written.video_ids == replayed.video_ids).all() and (written.labels == replayed.labels).all()
    np.testing.assert_allclose(written.scores, replayed.scores, rtol=1e-6)
    np.testing.assert_allclose(written.starts, replayed.starts, rtol=1e-6, atol=1e-5)

    result = evaluate_detections(db.select(cfg.val_split), written, cfg.dataset.tiou_thresholds,
                                 label_names=db.label_names, dedup_gt="duplicates", unknown_labels="ignore")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    np.testing.assert_allclose(result.mAP, metrics["mAP"], rtol=1e-9, atol=1e-12)


def test_infer_cli_reproduces_final_metrics(trained, tiny_demo, tmp_path):  # noqa: F811
    from tal_kit.infer import cli_infer

    _, run_dir = trained
    out = tmp_path / "dets.json"
    code = cli_infer(["--ckpt", str(run_dir / "checkpoints" / "last.pt"), "--out", str(out),
                      "--data-root", str(tiny_demo), "--device", "cpu", "--no-progress"])
    assert code == 0
    ours = json.loads((tmp_path / "metrics.json").read_text())
    theirs = json.loads((run_dir / "metrics.json").read_text())
    assert ours["mAP"] == theirs["mAP"] and ours["epoch"] == 1
    assert json.loads(out.read_text())["results"] == json.loads((run_dir / "detections.json").read_text())["results"]


def test_resume_equals_uninterrupted_with_the_real_model(trained, tiny_demo, tmp_path):  # noqa: F811
    _, straight_dir = trained
    resumed_dir = tmp_path / "resumed"
    partial = train("demo", TINY_OVERRIDES, data_root=tiny_demo, run_dir=resumed_dir, device="cpu",
                    progress=False, stop_after=1, figure_dir=tmp_path / "fig")
    assert not partial["finished"] and partial["epochs_completed"] == 1 and partial["final"] is None
    assert not (resumed_dir / "metrics.json").exists()
    with pytest.raises(Exception, match="pass resume=True"):
        train("demo", TINY_OVERRIDES, data_root=tiny_demo, run_dir=resumed_dir, device="cpu", progress=False)
    finished = train("demo", TINY_OVERRIDES, data_root=tiny_demo, run_dir=resumed_dir, device="cpu", progress=False,
                     resume=True, figure_dir=tmp_path / "fig")
    assert finished["finished"]
    a = torch.load(straight_dir / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(resumed_dir / "checkpoints" / "last.pt", weights_only=True)
    for part in ("model", "ema"):
        for key, value in a[part].items():
            assert torch.equal(value, b[part][key]), f"{part}.{key}"
    assert a["model"]["loss_normalizer"].item() == b["model"]["loss_normalizer"].item()
    assert json.loads((straight_dir / "metrics.json").read_text())["mAP"] == \
        json.loads((resumed_dir / "metrics.json").read_text())["mAP"]


def test_cli_errors_are_clear(trained, tiny_demo, capsys):  # noqa: F811
    _, run_dir = trained
    code = main(["train", "--config", "demo", "--data-root", str(tiny_demo), "--run-dir", str(run_dir),
                 "--device", "cpu", "--no-progress", *sum((["--set", o] for o in TINY_OVERRIDES), [])])
    assert code == 2 and "last.pt exists: pass resume=True (--resume)" in capsys.readouterr().err
    code = main(["train", "--config", "demo", "--data-root", str(tiny_demo), "--run-dir", str(run_dir), "--resume",
                 "--device", "cpu", "--no-progress", "--set", "opt.learning_rate=0.5",
                 *sum((["--set", o] for o in TINY_OVERRIDES), [])])
    err = capsys.readouterr().err
    assert code == 2 and "opt.learning_rate: checkpoint 0.001, now 0.5" in err
    code = main(["train", "--config", "nonexistent_preset"])
    assert code == 2 and "unknown preset" in capsys.readouterr().err

