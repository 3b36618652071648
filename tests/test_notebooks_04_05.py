"""Notebooks 04 (training) and 05 (evaluation): committed clean with a proper papermill parameters cell, and they
execute end to end in quick mode on the tiny demo, 05 reading what 04 trained."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import nbformat
import pytest

from tests.tiny_demo import TINY_OVERRIDES, tiny_demo  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = [REPO / "notebooks" / "04_training.ipynb", REPO / "notebooks" / "05_evaluation.ipynb"]
SHARED_PARAMETERS = {"config", "data_root", "run_dir", "device", "quick", "overrides", "seed", "figure_dir"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_clean_with_parameters_cell(path):
    nb = nbformat.read(str(path), as_version=4)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    params = nb.cells[1]
    assert params.cell_type == "code" and "parameters" in params.metadata.get("tags", [])
    names = set()
    for node, line in zip(ast.parse(params.source).body, params.source.splitlines()):
        assert isinstance(node, ast.AnnAssign), line  # typed
        ast.literal_eval(node.value)  # literals only
        assert "  # " in line, f"parameter without a comment: {line}"
        names.add(node.target.id)
    assert SHARED_PARAMETERS <= names
    papermill = pytest.importorskip("papermill")
    assert set(papermill.inspect_notebook(str(path))) == names
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "outputs must be stripped before commit"


def _run(notebook: Path, out: Path, **parameters) -> nbformat.NotebookNode:
    papermill = pytest.importorskip("papermill")
    papermill.execute_notebook(str(notebook), str(out), parameters=parameters, kernel_name="python3",
                               progress_bar=False, cwd=str(REPO))
    return nbformat.read(str(out), as_version=4)


def _text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            parts.append(output.get("text", ""))
            parts.append(output.get("data", {}).get("text/markdown", ""))
    return "\n".join(parts)


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
