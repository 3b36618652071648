"""Figures follow the run (issue 15 item 4): `reproduce --quick` or `--run-dir elsewhere` used to draw into the
repository's figures/<config>/ and overwrite the full run's figures."""
from __future__ import annotations

from pathlib import Path

import pytest

from tal_kit import reproduce as rp
from tal_kit.config import REPO_ROOT, load_config, run_paths
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
    chosen = planned(run_dir=str(tmp_path / "mine"), figure_dir=str(tmp_path / "figs"), force=True)
    assert {d for _, d in chosen} == {(tmp_path / "figs").resolve()}
    seeds = planned(run_dir=str(tmp_path / "seeds"), seeds=2, force=True)
    by_notebook = {}
    for name, d in seeds:
        by_notebook.setdefault(name, []).append(d.relative_to((tmp_path / "seeds" / "figures").resolve()).as_posix())
    assert by_notebook == {"03_model.ipynb": ["."], "04_training.ipynb": ["seed_1234567891", "seed_1234567892"]}


def test_run_paths_of_the_default_run_quick_runs_and_runs_elsewhere():
    cfg = load_config("demo")
    default = run_paths(cfg)
    assert default == run_paths(cfg, "", "", "")  # the notebooks' "" means the default, as None does
    assert (default.data_root, default.run_dir, default.figure_dir) == \
        (REPO_ROOT / "data" / "demo", REPO_ROOT / "runs" / "demo", REPO_ROOT / "figures" / "demo")
    assert run_paths(cfg, run_dir=REPO_ROOT / "runs" / "demo").figure_dir == REPO_ROOT / "figures" / "demo"
    assert run_paths(cfg, run_dir="/tmp/x").figure_dir == Path("/tmp/x/figures")
    assert run_paths(cfg, "/d", "/tmp/x", "/tmp/y") == type(default)(Path("/d"), Path("/tmp/x"), Path("/tmp/y"))
    quick = run_paths(cfg, quick=True)  # reproduce --quick: its own folder, and figures beside it
    assert (quick.run_dir, quick.figure_dir) == (REPO_ROOT / "runs" / "demo-quick",
                                                 REPO_ROOT / "runs" / "demo-quick" / "figures")
    assert run_paths(cfg, run_dir="/tmp/x", quick=True).run_dir == Path("/tmp/x")  # a named folder is kept


def test_notebook_setup_applies_overrides_quick_seed_and_the_paths(monkeypatch, tmp_path):
    """The set-up cell of every notebook: overrides, then the quick-run overrides (they win, as in notebook 04),
    a seed >= 0 replaces the config's, "" paths are the defaults; the demo preset gets its data generated."""
    import tal_kit.data.demo
    from tal_kit.tutorial import setup

    generated = []
    monkeypatch.setattr(tal_kit.data.demo, "ensure_demo_data", lambda root, log=print: generated.append(root))
    cfg, data_root, run_dir, figure_dir = setup("thumos14", "", "", "", ["opt.epochs=3", "loader.batch_size=3"],
                                                True, 7)
    assert (cfg.opt.epochs, cfg.opt.warmup_epochs, cfg.trainer.eval_start_epoch) == (1, 1, 0)
    assert (cfg.loader.batch_size, cfg.loader.num_workers, cfg.init_rand_seed) == (3, 0, 7)
    assert (data_root, run_dir, figure_dir) == (REPO_ROOT / "data" / "thumos14", REPO_ROOT / "runs" / "thumos14",
                                                REPO_ROOT / "figures" / "thumos14")
    assert generated == []  # only the demo's data is generated
    cfg, data_root, run_dir, figure_dir = setup("demo", str(tmp_path / "d"), str(tmp_path / "r"), "",
                                                "opt.epochs=3", False, -1)
    assert cfg.opt.epochs == 3 and cfg.init_rand_seed == load_config("demo").init_rand_seed
    assert (run_dir, figure_dir) == (tmp_path / "r", tmp_path / "r" / "figures")
    assert generated == [tmp_path / "d"]
