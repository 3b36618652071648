"""Notebooks 01 and 02: committed clean with a proper papermill parameters cell, and they execute end to end on a
small demo dataset (and 02 on the real THUMOS-14 annotations when ../shared/data is present)."""
from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

from tal_kit.data.demo import DemoSpec, generate_demo_dataset

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = [REPO / "notebooks" / "01_features.ipynb", REPO / "notebooks" / "02_dataset_inspection.ipynb"]
SHARED_PARAMETERS = {"config", "data_root", "run_dir", "device", "quick", "overrides"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_clean_with_parameters_cell(path):
    nb = nbformat.read(str(path), as_version=4)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    params = nb.cells[1]
    assert params.cell_type == "code" and "parameters" in params.metadata.get("tags", [])
    names = set()
    for node, line in zip(ast.parse(params.source).body, params.source.splitlines()):
        # literals only, each typed and commented
        assert isinstance(node, ast.AnnAssign), line
        ast.literal_eval(node.value)  # raises on anything but a literal
        assert "#" in line, f"parameter without a comment: {line}"
        names.add(node.target.id)
    assert SHARED_PARAMETERS <= names
    papermill = pytest.importorskip("papermill")
    assert set(papermill.inspect_notebook(str(path))) == names  # papermill parses every line (and documents it)
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


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("nb") / "demo"
    generate_demo_dataset(root, DemoSpec(num_train_videos=20, num_test_videos=20, max_duration=60.0))
    return root


@pytest.mark.slow
def test_01_features_on_demo(demo_root, tmp_path):
    nb = _run(NOTEBOOKS[0], tmp_path / "01.ipynb", config="demo", data_root=str(demo_root),
              run_dir=str(tmp_path / "run"), figure_dir=str(tmp_path / "figures"))
    text = _text(nb)
    assert "round-trip error seconds -> grid -> seconds: 0.00e+00 s" in text
    assert "| seconds per grid step | 0.1333 |" in text  # 4 frames at 30 fps
    assert "correlation with features extracted on the reference grid: 0.9" in text
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == [
        "01_clip_grid.png", "01_resampling.png", "01_video_features.png"]


@pytest.mark.slow
def test_02_dataset_inspection_on_demo(demo_root, tmp_path):
    nb = _run(NOTEBOOKS[1], tmp_path / "02.ipynb", config="demo", data_root=str(demo_root),
              figure_dir=str(tmp_path / "figures"))
    text = _text(nb)
    assert "40 videos" in text and "20 classes" in text
    assert "['test']: 20 videos, 0 feature file(s) missing" in text
    assert len(list((tmp_path / "figures").glob("02_*.png"))) == 3


@pytest.mark.slow
def test_02_on_real_thumos_annotations(thumos_json, tmp_path):
    nb = _run(NOTEBOOKS[1], tmp_path / "02.ipynb", config="thumos14", annotation_file=str(thumos_json),
              figure_dir=str(tmp_path / "figures"))
    text = _text(nb)
    assert "412 videos, 6365 segments, 20 classes" in text
    assert "30 segment(s) with end after the video's duration" in text  # THUMOS's known annotation errors
