"""Real-preset dry runs: all six notebooks, each preset's real model and post-processing, on the real annotation
format with synthetic features of the preset's real dimension (THUMOS-14 and ActivityNet from ../shared/data,
small generated annotation files for HACS and FineAction)."""
from __future__ import annotations

import json
import re

import pytest

from tal_kit.config import load_config
from tal_kit.dryrun import DRY_RUN_OVERRIDES, make_dryrun_data
from tal_kit.reproduce import PUBLISHED, NotebookFailed, list_notebooks, reproduce

pytestmark = pytest.mark.slow

CELL_TIMEOUT = 300  # seconds; the slowest dry-run cell takes ~1 minute on 2 cores
REAL_ANNOTATIONS = {"thumos14": "thumos14/thumos14.json", "anet": "anet/anet1.3_trainval_gt.json"}


def rp_published(preset: str) -> str:
    return f"{PUBLISHED[preset]['average_mAP']:.2f}"


@pytest.mark.parametrize("preset", ["thumos14", "anet", "hacs", "fineaction"])
def test_dry_run_all_notebooks(preset, tmp_path, request):
    annotation_file = None
    if preset in REAL_ANNOTATIONS:
        from tests.conftest import shared_file

        annotation_file = shared_file(REAL_ANNOTATIONS[preset])
    data_root = tmp_path / "data"
    info = make_dryrun_data(preset, data_root, annotation_file, videos_per_split=2)
    run_dir = tmp_path / "run"
    logs: list[str] = []
    run = dict(data_root=str(data_root), run_dir=str(run_dir), quick=True, device="auto",
               overrides=DRY_RUN_OVERRIDES, cell_timeout=CELL_TIMEOUT, log=logs.append)
    try:
        results = reproduce(preset, **run)
    except NotebookFailed as err:
        # A kernel that hangs (seen once in ~20 runs: idle kernel, nbclient waiting on a reply) is retried once;
        # the runner skips the notebooks that completed, so only the hung one runs again. Real errors fail twice.
        if "CellTimeoutError" not in str(err) and "DeadKernelError" not in str(err):
            raise
        results = reproduce(preset, **run)

    executed = sorted(p.name for p in run_dir.glob("[0-9][0-9]_*.ipynb"))
    assert executed == [p.name for p in list_notebooks()]
    cfg = load_config(preset)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["tiou_thresholds"] == pytest.approx(cfg.dataset.tiou_thresholds)
    assert all(0.0 <= m <= 1.0 for m in metrics["mAP"])
    detections = json.loads((run_dir / "detections.json").read_text())["results"]
    evaluated = [v for v in info["videos"] if v in detections]
    assert evaluated, "no detections for the dry-run evaluation videos"
    assert results["table"], "the results table is empty"

    # Numbers say what they are (issue 14): synthetic features always; class-agnostic for the single-class presets
    class_agnostic = cfg.dataset.num_classes == 1
    assert metrics["metric"]["synthetic"] and metrics["metric"]["class_agnostic"] is class_agnostic
    table = (run_dir / "results.md").read_text()
    assert "synthetic features" in table and results["published"] is None  # nothing set beside a published number
    if class_agnostic:
        assert metrics["metric"]["name"] == "class-agnostic mAP"
        assert f"not comparable to the published InternVideo {rp_published(preset)}" in table
        published_row = next(line for line in table.splitlines() if line.startswith("| published"))
        assert not re.search(r"\d", published_row.split("|", 2)[2])  # the comparison cells stay empty
    # Runs you can watch: the training notebook's progress and one summary line per notebook
    assert any(line.startswith("    epoch ") and " done in " in line and "evaluation: average" in line for line in logs)
    done = [line for line in logs if ": done in " in line]
    assert len(done) == len(executed) and any("04_training.ipynb: done in" in d and "epochs" in d for d in done)
