"""Every file and folder the kit writes gets the permissions a plain ``open(path, "w")`` / ``os.mkdir`` would give
it under the process's umask — not mkstemp's 0600 or mkdtemp's 0700, and not a fixed 0644.

The umask is set to 0o027 here, which no hard-coded mode produces: files must come out 0o640, folders 0o750.
"""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

UMASK = 0o027


@pytest.fixture
def umask_027():
    old = os.umask(UMASK)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _plain_file_mode(folder: Path) -> int:
    """What open(..., "w") gives under the current umask: the independent reference."""
    reference = folder / "plain.txt"
    with open(reference, "w") as handle:
        handle.write("x")
    return _mode(reference)


def test_json_text_checkpoint_and_feature_files(tmp_path, umask_027):
    from tal_kit.atomic import write_json_atomic, write_text_atomic
    from tal_kit.data.features import write_feature_file
    from tal_kit.training.checkpoint import save_checkpoint
    from tests.test_checkpoint import minimal_state

    expected = _plain_file_mode(tmp_path)
    assert expected == 0o640
    written = [write_json_atomic(tmp_path / "a.json", {"x": 1}), write_text_atomic(tmp_path / "b.txt", "t"),
               save_checkpoint(tmp_path / "last.pt", minimal_state(epoch=0)),
               *[write_feature_file(tmp_path / f"f{ext}", np.zeros((3, 2), np.float32))
                 for ext in (".npy", ".npz", ".pt", ".pkl", ".csv")]]
    assert {p.name: oct(_mode(p)) for p in written} == {p.name: oct(expected) for p in written}


def test_figures_timelines_and_candidates(tmp_path, umask_027):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    import plotly.graph_objects as go

    from tal_kit.inference.candidates import VideoCandidates, save_candidates
    from tal_kit.viz.export import export_html
    from tal_kit.viz.figures import save_figure

    expected = _plain_file_mode(tmp_path)
    fig = Figure()
    fig.add_subplot().plot([0, 1], [1, 0])
    candidates = {"v": VideoCandidates("v", np.zeros((1, 2), np.float32), np.ones(1, np.float32),
                                       np.zeros(1, np.int64), 30.0, 4.0, 16.0, 10.0)}
    written = [save_figure(fig, tmp_path / "fig.png"), export_html(go.Figure(), tmp_path / "timelines.html"),
               save_candidates(tmp_path / "pre_nms_candidates.npz", candidates)]
    assert {p.name: oct(_mode(p)) for p in written} == {p.name: oct(expected) for p in written}


def test_demo_and_dry_run_folders(tmp_path, umask_027):
    from tal_kit.data.demo import DemoSpec, generate_demo_dataset

    reference_dir = tmp_path / "plain_dir"
    reference_dir.mkdir()
    expected_dir, expected_file = _mode(reference_dir), _plain_file_mode(tmp_path)
    assert expected_dir == 0o750
    out = tmp_path / "demo"
    generate_demo_dataset(out, DemoSpec(seed=1, num_train_videos=2, num_test_videos=1))
    assert oct(_mode(out)) == oct(expected_dir)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert files and {oct(_mode(p)) for p in files} == {oct(expected_file)}
    assert json.loads((out / "annotations.json").read_text())["database"]
