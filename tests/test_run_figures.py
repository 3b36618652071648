"""Figures follow the run (issue 15 item 4): `reproduce --quick` or `--run-dir elsewhere` used to draw into the
repository's figures/<config>/ and overwrite the full run's figures."""
from __future__ import annotations

from pathlib import Path

import pytest

from tal_kit import reproduce as rp
from tal_kit.config import REPO_ROOT, figures_dir_for, load_config
from tests.test_reproduce import _notebook


@pytest.fixture
def planned(tmp_path, monkeypatch):
    """Run reproduce with stand-in notebooks that declare figure_dir, recording each run instead of executing it."""
    nb_dir = tmp_path / "notebooks"
    nb_dir.mkdir()
    params = 'config: str = "demo"\nrun_dir: str = ""\nfigure_dir: str = ""\nseed: int = -1\n'
    _notebook(nb_dir / "03_model.ipynb", params, "pass")
    _notebook(nb_dir / "04_training.ipynb", params, "pass")
    recorded: list[rp.NotebookRun] = []
    monkeypatch.setattr(rp, "execute", lambda run, **kwargs: recorded.append(run))
    import tal_kit.config

    fake_repo = tmp_path / "repo"  # runs/ and figures/ of a stand-in repository, so the test writes nothing real
    monkeypatch.setattr(rp, "REPO_ROOT", fake_repo)
    monkeypatch.setattr(tal_kit.config, "REPO_ROOT", fake_repo)

    def plan(**options):
        recorded.clear()
        rp.reproduce("demo", data_root=str(tmp_path), notebook_dir=nb_dir, log=lambda *_: None, **options)
        return [(run.source.name, Path(run.parameters["figure_dir"])) for run in recorded]
    return plan


def test_quick_run_and_other_run_dirs_draw_beside_their_run(planned, tmp_path):
    repo = tmp_path / "repo"
    full = planned(force=True)  # the full run in runs/demo draws into figures/demo
    assert {d for _, d in full} == {(repo / "figures" / "demo").resolve()}
    full_figures = (repo / "figures" / "demo").resolve()
    quick = planned(quick=True, force=True)  # the default quick folder: runs/demo-quick
    assert {d for _, d in quick} == {(repo / "runs" / "demo-quick" / "figures").resolve()}
    elsewhere = planned(run_dir=str(tmp_path / "mine"), force=True)
    assert {d for _, d in elsewhere} == {(tmp_path / "mine" / "figures").resolve()}
    assert all(d != full_figures for _, d in quick + elsewhere)
    chosen = planned(run_dir=str(tmp_path / "mine"), figures_dir=str(tmp_path / "figs"), force=True)
    assert {d for _, d in chosen} == {(tmp_path / "figs").resolve()}
    seeds = planned(run_dir=str(tmp_path / "seeds"), seeds=2, force=True)
    by_notebook = {}
    for name, d in seeds:
        by_notebook.setdefault(name, []).append(d.relative_to((tmp_path / "seeds" / "figures").resolve()).as_posix())
    assert by_notebook == {"03_model.ipynb": ["."], "04_training.ipynb": ["seed_1234567891", "seed_1234567892"]}


def test_figures_dir_for_the_default_run_is_the_repository_folder():
    cfg = load_config("demo")
    assert figures_dir_for(cfg) == REPO_ROOT / "figures" / "demo"
    assert figures_dir_for(cfg, REPO_ROOT / "runs" / "demo") == REPO_ROOT / "figures" / "demo"
    assert figures_dir_for(cfg, "/tmp/x") == Path("/tmp/x/figures")
    assert figures_dir_for(cfg, "/tmp/x", "/tmp/y") == Path("/tmp/y")
