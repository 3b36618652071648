"""Notebook 03 (the model) runs end to end on a small demo dataset (quick mode), writing its three figures."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from tal_kit.data.demo import DemoSpec, generate_demo_dataset

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "03_model.ipynb"


@pytest.mark.slow
def test_03_model_on_demo(tmp_path):
    papermill = pytest.importorskip("papermill")
    root = tmp_path / "demo"
    generate_demo_dataset(root, DemoSpec(num_train_videos=4, num_test_videos=4, max_duration=60.0))
    out = tmp_path / "03.ipynb"
    papermill.execute_notebook(str(NOTEBOOK), str(out), kernel_name="python3", progress_bar=False, cwd=str(REPO),
                               parameters=dict(config="demo", data_root=str(root), figure_dir=str(tmp_path / "fig"),
                                               quick=True))
    nb = nbformat.read(str(out), as_version=4)
    text = "\n".join(o.get("text", "") + o.get("data", {}).get("text/markdown", "")
                     for cell in nb.cells for o in cell.get("outputs", []))
    assert "| total | 1,685,020 | 100.0 |" in text  # the demo model's parameter count
    assert "level 5: logits [1, 16, 20], offsets [1, 16, 2]" in text
    first, last = (float(x) for x in text.split("on this video: ")[1].split()[0:3:2])
    assert last < first  # fitting one video lowers its loss
    assert "| label | start (s) | end (s) | score |" in text
    assert sorted(p.name for p in (tmp_path / "fig").iterdir()) == [
        "03_label_assignment.png", "03_level_scores.png", "03_pyramid.png"]
    assert sum("image/png" in o.get("data", {}) for cell in nb.cells for o in cell.get("outputs", [])) == 3  # shown
