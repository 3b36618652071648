"""Notebook 07 (your own videos) executes end to end in quick mode: generated videos -> random-ViT features ->
training -> detect on the held-out videos -> the evaluator -> the linked view, into temporary folders."""
from __future__ import annotations

import re

import numpy as np
import pytest

from tests.notebooks import REPO, output_text, run_notebook, shown_images

NOTEBOOK = REPO / "notebooks" / "07_own_videos.ipynb"


@pytest.mark.slow
def test_07_quick_from_pixels_to_watched_detections(tmp_path):
    from tal_kit.data.annotations import load_annotations
    from tal_kit.detections import Detections
    from tal_kit.evaluate import evaluate_detections

    data_root, run_dir = tmp_path / "data", tmp_path / "run"
    nb = run_notebook(NOTEBOOK, tmp_path / "07.ipynb", data_root=str(data_root), run_dir=str(run_dir),
                      figure_dir=str(tmp_path / "figures"), device="cpu", quick=True)
    text = output_text(nb)
    assert shown_images(nb) >= 1  # the frames of a held-out video

    # the detections file is there and the evaluator reads it, against the generated held-out annotations
    detections_path = run_dir / "detect" / "detections.json"
    assert detections_path.is_file() and (run_dir / "detect" / "report.html").is_file()
    db = load_annotations(data_root / "annotations.json")
    held_out = db.select(["test"])
    assert len(held_out) == 4  # quick: 16 training + 4 held-out videos
    detections = Detections.from_results_json(detections_path, db.label_names)
    assert len(detections) > 0 and set(np.unique(detections.video_ids)) <= {r.video_id for r in held_out}
    ours = evaluate_detections(held_out, detections, [0.3, 0.4, 0.5, 0.6, 0.7], label_names=db.label_names)

    # the printed mAP is labelled synthetic, and it is the evaluator's number for that file
    assert "SYNTHETIC videos" in text and "never comparable with a published number" in text
    printed = re.search(r"average mAP \(synthetic\): ([0-9.]+)%", text)
    assert printed is not None
    assert float(printed.group(1)) == pytest.approx(100 * ours.average_mAP, abs=0.006)


def test_the_lesson_backbone_is_the_makefiles():
    """Notebook 07 extracts with the same tiny random ViT as `make demo-videos` (its DEMO_VIDEOS_VIT flags)."""
    from tal_kit.tutorial.videos import DEMO_VIDEO_VIT

    line = next(l for l in (REPO / "Makefile").read_text().splitlines() if l.startswith("DEMO_VIDEOS_VIT"))
    flags = line.split(":=", 1)[1].split()
    values = {flags[i][2:].replace("-", "_"): flags[i + 1] for i in range(len(flags) - 1)
              if flags[i].startswith("--") and not flags[i + 1].startswith("--")}
    assert values.pop("backbone") == "vit-b/16" and values.pop("seed") == "0"
    assert {k: int(v) for k, v in values.items()} == DEMO_VIDEO_VIT
