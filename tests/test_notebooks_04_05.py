"""Notebooks 04 (training) and 05 (evaluation) execute end to end in quick mode on the tiny demo, 05 reading what
04 trained."""
from __future__ import annotations

import json

import pytest

from tests.notebooks import REPO, output_text as _text, run_notebook as _run
from tests.tiny_demo import TINY_OVERRIDES, tiny_demo  # noqa: F401  (fixture)

NOTEBOOKS = [REPO / "notebooks" / "04_training.ipynb", REPO / "notebooks" / "05_evaluation.ipynb"]


@pytest.mark.slow
def test_04_then_05_on_the_tiny_demo(tiny_demo, tmp_path):  # noqa: F811
    run_dir, figures = tmp_path / "run", tmp_path / "figures"
    common = dict(config="demo", data_root=str(tiny_demo), run_dir=str(run_dir), figure_dir=str(figures),
                  device="cpu", quick=True, overrides=list(TINY_OVERRIDES))
    nb04 = _run(NOTEBOOKS[0], tmp_path / "04.ipynb", interrupt_after=1, **common)
    text = _text(nb04)
    assert "run " + str(run_dir) + ": 1/2 epochs" in text  # interrupted after one epoch ...
    assert "2/2 epochs" in text  # ... and resumed to the end
    assert "| scheduler | step 10 of 20 |" in text  # the checkpoint of the interruption, described
    assert "| raw weights |" in text and "| EMA weights |" in text
    assert "detections.json and metrics.json show the last epoch" in text
    summary = json.loads((run_dir / "train_summary.json").read_text())
    assert summary["finished"] and summary["last"]["epoch"] == 1
    assert {p.name for p in figures.iterdir()} >= {"lr_schedule.png", "training_curves.png", "ema_of_losses.png"}

    trained_metrics = json.loads((run_dir / "metrics.json").read_text())
    nb05 = _run(NOTEBOOKS[1], tmp_path / "05.ipynb", **common)
    text = _text(nb05)
    assert "epoch 1: 8 videos" in text
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["mAP"] == trained_metrics["mAP"] and metrics["which"] == "last"
    # the NMS table's first row replays the config's NMS on cached candidates: it must equal the direct result
    config_row = next(line for line in text.splitlines() if line.startswith("| config: soft NMS"))
    cells = [c.strip() for c in config_row.strip("|").split("|")]
    assert [float(c) for c in cells[1:6]] == pytest.approx([100 * v for v in metrics["mAP"]], abs=0.0051)
    assert {p.name for p in figures.iterdir()} >= {"map_vs_tiou.png", "per_class_ap.png", "pr_curves.png",
                                                    "nms_variants.png"}
