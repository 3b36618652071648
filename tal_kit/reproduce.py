"""Headless reproduction: run the numbered notebooks for one config with papermill and collect a results table.

``python -m tal_kit reproduce --config demo`` executes notebooks/01_*.ipynb ... 06_*.ipynb in order, each into
``runs/<config>/NN_name.ipynb``. Only 01-06 are per-preset lessons (``PER_PRESET_PREFIXES``); notebook 07 (your
own videos) generates its own dataset and is run on its own (``make demo-videos`` is its command-line twin). A
notebook whose executed copy is complete (same parameters, no error, not older than its source, nothing upstream
re-run) is skipped unless ``--force``. With ``--seeds N`` the training and
evaluation notebooks run once per seed, each in ``runs/<config>/seed_<seed>/``. At the end the run's metrics are
gathered into ``runs/<config>/results.json`` and ``results.md`` (mAP per tIoU and average; last and best epoch;
mean +- std over seeds) beside the published numbers.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from tal_kit.config import REPO_ROOT, load_config, run_paths
from tal_kit.kernels import kernel_manager_class
from tal_kit.run_progress import TrainingProgress, format_duration, notebook_summary

if TYPE_CHECKING:
    from tal_kit.config import Config

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
# The per-preset notebooks, by number; 07 (the video demo) is a lesson of its own and never runs per preset.
PER_PRESET_PREFIXES = ("01", "02", "03", "04", "05", "06")
PER_SEED_PREFIXES = ("04", "05")  # training and evaluation run once per seed

# Published average mAP (%), and per-tIoU where the source gives it (SPEC §G).
PUBLISHED: dict[str, dict[str, Any]] = {
    "thumos14": {"source": "InternVideo (IV README)", "average_mAP": 71.58},
    "anet": {"source": "InternVideo (IV README)", "average_mAP": 39.00},
    "hacs": {"source": "InternVideo (IV README)", "average_mAP": 41.32},
    "fineaction": {"source": "InternVideo (IV README)", "average_mAP": 17.57},
    "thumos14_i3d": {"source": "ActionFormer (AF README, epoch_034)", "average_mAP": 66.83,
                     "mAP": {"0.3": 82.13, "0.4": 77.80, "0.5": 70.95, "0.6": 59.40, "0.7": 43.87}},
}

# What a fresh machine reproduces for the demo: last-epoch average mAP (%) of `reproduce --config demo --seeds 5`
# (seeds 1234567891-1234567895, one CPU thread each, torch 2.14 CPU; README "Results"). The CPU result also moves
# with the thread count (oneDNN's convolution reduction order), by as much as one seed changes it.
DEMO_REFERENCE: dict[str, Any] = {"average_mAP": [70.86, 70.83, 69.49, 71.17, 71.24], "seeds": "1234567891-1234567895",
                                  "threads": 1}

class NotebookFailed(RuntimeError):
    """A notebook raised; the message names the notebook, the cell and the error."""


@dataclass
class NotebookRun:
    source: Path
    output: Path
    parameters: dict[str, Any]


def list_notebooks(notebook_dir: Path = NOTEBOOK_DIR) -> list[Path]:
    """The per-preset notebooks (numbered 01-06, PER_PRESET_PREFIXES), in order: an explicit list, so that a
    later lesson such as 07 does not join every preset's reproduction."""
    notebooks = sorted(p for p in notebook_dir.glob("[0-9][0-9]_*.ipynb") if p.name.startswith(PER_PRESET_PREFIXES))
    if not notebooks:
        raise FileNotFoundError(f"no per-preset notebooks (01-06) in {notebook_dir}")
    return notebooks


def declared_parameters(notebook: Path) -> set[str]:
    """Names in the notebook's papermill ``parameters`` cell (we pass only those it declares)."""
    import papermill

    return set(papermill.inspect_notebook(str(notebook)).keys())


def is_complete(run: NotebookRun) -> bool:
    """True when the executed copy ran without error with these parameters and is not older than its source."""
    import nbformat

    if not run.output.exists() or run.output.stat().st_mtime < run.source.stat().st_mtime:
        return False
    try:
        nb = nbformat.read(str(run.output), as_version=4)
    except Exception:  # a half-written or foreign file: run again
        return False
    meta = nb.metadata.get("papermill", {})
    if meta.get("exception") or meta.get("status") not in (None, "completed"):
        return False
    if json.loads(json.dumps(meta.get("parameters", {}))) != json.loads(json.dumps(run.parameters)):
        return False
    code_cells = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    return all(c.get("execution_count") is not None for c in code_cells)


def execute(run: NotebookRun, kernel_name: str | None = None, progress_bar: bool = True,
            cell_timeout: int | None = None) -> None:
    """Execute one notebook with papermill; on error raise NotebookFailed naming the notebook and the cell.

    ``cell_timeout`` (seconds per cell, None = no limit) turns a hung kernel into a NotebookFailed instead of a
    run that never ends.
    """
    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    run.output.parent.mkdir(parents=True, exist_ok=True)
    try:
        papermill.execute_notebook(str(run.source), str(run.output), parameters=run.parameters,
                                   kernel_name=kernel_name, progress_bar=progress_bar, cwd=str(REPO_ROOT),
                                   execution_timeout=cell_timeout, kernel_manager_class=kernel_manager_class())
    except (CellTimeoutError, DeadKernelError) as err:
        raise NotebookFailed(f"{run.source.name}: {type(err).__name__}: {str(err).strip().splitlines()[0]}\n"
                             f"  the partly executed copy is {run.output}") from err
    except PapermillExecutionError as err:
        raise NotebookFailed(
            f"{run.source.name} failed in cell {err.cell_index} (execution count {err.exec_count}): "
            f"{err.ename}: {err.evalue}\n  the executed copy with the full traceback is {run.output}") from err


def plan_runs(config: str, data_root: Path, run_dir: Path, seeds: list[int | None], quick: bool,
              device: str, overrides: list[str], notebook_dir: Path = NOTEBOOK_DIR,
              figure_dir: Path | None = None) -> list[NotebookRun]:
    """Which notebook runs, with which parameters, into which file.

    ``figure_dir`` (default ``RUN_DIR/figures``) is where the notebooks draw; with several seeds the per-seed
    notebooks draw into its ``seed_<seed>/`` subfolders.
    """
    figure_dir = Path(figure_dir) if figure_dir is not None else run_dir / "figures"
    runs = []
    for notebook in list_notebooks(notebook_dir):
        declared = declared_parameters(notebook)
        per_seed = notebook.name.startswith(PER_SEED_PREFIXES)
        for seed in (seeds if per_seed else seeds[:1]):
            target_dir = run_dir if (len(seeds) == 1 or not per_seed) else run_dir / f"seed_{seed}"
            # Notebook 06 looks at the first seed's detections.
            nb_run_dir = target_dir if per_seed or len(seeds) == 1 else run_dir / f"seed_{seeds[0]}"
            nb_figures = figure_dir / f"seed_{seed}" if per_seed and len(seeds) > 1 else figure_dir
            values = {"config": config, "data_root": str(data_root), "run_dir": str(nb_run_dir), "device": device,
                      "quick": quick, "overrides": list(overrides), "seed": -1 if seed is None else seed,
                      "figure_dir": str(nb_figures),
                      "interactive": False}  # headless: no frontend to drive widgets
            params = {k: v for k, v in values.items() if k in declared}
            runs.append(NotebookRun(notebook, target_dir / notebook.name, params))
    return runs


# ----------------------------------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return mean, std


def collect_results(config: str, run_dir: Path, seed_dirs: list[Path],
                    metric: dict[str, Any] | None = None) -> dict[str, Any]:
    """Gather each seed's last- and best-epoch metrics into one summary (fractions in, percent out).

    ``metric`` (a ``MetricKind.to_dict()``) says what the numbers measure; when they are not comparable with the
    published number (class-agnostic or synthetic), "published" is None and the number moves to
    "published_not_comparable", so that nothing sets the two side by side.
    """
    per_seed = []
    for seed_dir in seed_dirs:
        summary = _read_json(seed_dir / "train_summary.json") or {}
        final = _read_json(seed_dir / "metrics.json") or {}
        entry: dict[str, Any] = {"run_dir": str(seed_dir)}
        for which in ("last", "best"):
            block = summary.get(which)
            if isinstance(block, dict) and "mAP" in block:
                entry[which] = {"epoch": block.get("epoch"), "tiou_thresholds": block.get("tiou_thresholds"),
                                "mAP": block["mAP"], "average_mAP": block.get("average_mAP")}
        if "last" not in entry and "mAP" in final:
            entry["last"] = {"epoch": final.get("epoch"), "tiou_thresholds": final.get("tiou_thresholds"),
                             "mAP": final["mAP"], "average_mAP": final.get("average_mAP")}
        per_seed.append(entry)

    table: dict[str, Any] = {}
    for which in ("last", "best"):
        blocks = [s[which] for s in per_seed if which in s]
        if not blocks:
            continue
        thresholds = blocks[0]["tiou_thresholds"]
        per_tiou = list(zip(*[[100 * v for v in b["mAP"]] for b in blocks]))
        table[which] = {
            "tiou_thresholds": thresholds,
            "mAP_mean": [_mean_std(list(col))[0] for col in per_tiou],
            "mAP_std": [_mean_std(list(col))[1] for col in per_tiou],
            "average_mAP_mean": _mean_std([100 * b["average_mAP"] for b in blocks])[0],
            "average_mAP_std": _mean_std([100 * b["average_mAP"] for b in blocks])[1],
            "epochs": [b.get("epoch") for b in blocks],
            "num_seeds": len(blocks),
        }
    published = PUBLISHED.get(config)
    comparable = metric is None or metric["comparable_to_published"]
    return {"config": config, "run_dir": str(run_dir), "metric": metric, "seeds": per_seed, "table": table,
            "published": published if comparable else None,
            "published_not_comparable": None if comparable else published}


def demo_reference_check(results: dict[str, Any], *, quick: bool, overrides: list[str]) -> dict[str, Any] | None:
    """For a default demo run: is its last-epoch average mAP inside the spread a fresh machine reproduces?

    "Inside" means within mean ± 3 std of DEMO_REFERENCE's seeds. None for other configs, quick runs and runs with
    overrides (they are not the reference setting).
    """
    last = results.get("table", {}).get("last")
    if results.get("config") != "demo" or quick or overrides or not last:
        return None
    values = list(DEMO_REFERENCE["average_mAP"])
    mean, std = _mean_std(values)
    low, high = mean - 3 * std, mean + 3 * std
    value = last["average_mAP_mean"]
    inside = low <= value <= high
    text = (f"demo check: last-epoch average mAP {value:.2f} is {'inside' if inside else 'OUTSIDE'} the range a fresh "
            f"machine reproduces, {mean:.2f} ± {std:.2f} (mean ± std over {len(values)} seeds; inside = within "
            f"{low:.2f}-{high:.2f}, mean ± 3 std)")
    if not inside:
        text += ": check the torch version, the data generator settings and data/demo (README 'Results')"
    return {"value": value, "mean": mean, "std": std, "low": low, "high": high, "inside": inside, "text": text}


def metric_of(cfg: Config, data_root: Path) -> dict[str, Any]:
    """What the run's mAP measures (``MetricKind.to_dict()``), naming the published number it is not comparable to."""
    from tal_kit.evaluation.metric_kind import metric_kind_for_config

    published = PUBLISHED.get(cfg.name)
    source = published and f"{published['source'].split(' (')[0]} {published['average_mAP']:.2f}"
    return metric_kind_for_config(cfg, data_root, published=source).to_dict()


def _atomic_write(path: Path, text: str) -> None:
    from tal_kit.atomic import write_text_atomic

    write_text_atomic(path, text)  # (a kill leaves a temporary the next write removes)


# ----------------------------------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------------------------------


def reproduce(config: str, data_root: str | None = None, run_dir: str | None = None, quick: bool = False,
              seeds: int = 1, force: bool = False, device: str = "auto", overrides: list[str] | None = None,
              kernel_name: str | None = None, notebook_dir: Path = NOTEBOOK_DIR, cell_timeout: int | None = None,
              log: Callable[[str], Any] = print, figure_dir: str | None = None,
              progress_every_s: float = 20.0) -> dict[str, Any]:
    """Run notebooks 01-06 for ``config`` and return the collected results (also written to the run dir).

    The folders follow :func:`tal_kit.config.run_paths`: a --quick run goes to runs/<config>-quick (notebook 04
    resumes, and must not resume a full run with quick settings); figures go to ``figure_dir``, by default
    figures/<config> for the full run in runs/<config> and ``<run_dir>/figures`` for any other run folder, so that
    a smoke run never overwrites the full run's figures. ``quick`` reaches every notebook as its ``quick``
    parameter (which applies tal_kit.config.QUICK_OVERRIDES). While a notebook trains, progress lines (epoch,
    step, loss, ETA; each evaluation's mAP) go to ``log`` at most every ``progress_every_s`` seconds; each notebook
    ends with one summary line.
    """
    from tal_kit.data.demo import ensure_demo_data

    cfg = load_config(config, overrides)  # fail fast on a bad config, before any notebook starts
    name = cfg.name
    paths = run_paths(cfg, data_root, run_dir, figure_dir, quick=quick)
    out_dir = paths.run_dir
    if name == "demo" and not data_root:
        ensure_demo_data(paths.data_root, log)
    user_overrides = list(overrides or [])
    seed_values: list[int | None] = [None] if seeds == 1 else [cfg.init_rand_seed + k for k in range(seeds)]
    runs = plan_runs(config, paths.data_root.resolve(), out_dir.resolve(), seed_values, quick, device,
                     user_overrides, notebook_dir, figure_dir=paths.figure_dir.resolve())

    upstream_rerun = False
    started = time.time()
    for index, run in enumerate(runs, 1):
        label = f"[{index}/{len(runs)}] {run.source.name}" + (f" ({run.output.parent.name})" if seeds > 1 else "")
        if not force and not upstream_rerun and is_complete(run):
            log(f"{label}: complete, skipped (use --force to run again)")
            continue
        t0 = time.time()
        log(f"{label}: running -> {run.output}")
        nb_run_dir = Path(run.parameters.get("run_dir") or out_dir)
        with TrainingProgress(nb_run_dir / "metrics.jsonl", log, every_s=progress_every_s):
            execute(run, kernel_name=kernel_name, progress_bar=False, cell_timeout=cell_timeout)
        upstream_rerun = True
        produced = notebook_summary(nb_run_dir, run.source.name)
        log(f"{label}: done in {format_duration(time.time() - t0)}" + (f"; {produced}" if produced else ""))

    seed_dirs = [out_dir] if seeds == 1 else [out_dir / f"seed_{s}" for s in seed_values]
    results = collect_results(name, out_dir, seed_dirs, metric_of(cfg, paths.data_root))
    results["wall_time_s"] = round(time.time() - started, 1)
    results["quick"] = quick
    results["reference_check"] = demo_reference_check(results, quick=quick, overrides=user_overrides)
    from tal_kit.viz.tables import results_markdown

    markdown = results_markdown(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    _atomic_write(out_dir / "results.json", json.dumps(results, indent=2))
    _atomic_write(out_dir / "results.md", markdown + "\n")
    log("\n" + markdown)
    return results


def cli_reproduce(argv: list[str]) -> int:
    """``python -m tal_kit reproduce --config PRESET [--quick] [--seeds N] ...``"""
    from tal_kit.cli import add_common_options

    parser = argparse.ArgumentParser(prog="tal-kit reproduce", description=__doc__.split("\n\n")[0])
    add_common_options(parser, "config", "data-root", "run-dir", required=("config",), help_texts={
        "data-root": "data folder (default data/<config>; the demo is generated there)",
        "run-dir": "output folder (default runs/<config>, runs/<config>-quick with --quick)"})
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 epoch (+1 warmup), smaller plots")
    parser.add_argument("--seeds", type=int, default=1, help="train and evaluate with N seeds, report mean +- std")
    parser.add_argument("--force", action="store_true", help="re-run notebooks whose executed copies are complete")
    add_common_options(parser, "device", "set", help_texts={
        "set": "config override passed to every notebook (repeatable)"})
    parser.add_argument("--figures-dir", dest="figure_dir", metavar="FIGURES_DIR",
                        help="where the notebooks draw (default figures/<config> for runs/<config>, else "
                             "RUN_DIR/figures)")
    parser.add_argument("--cell-timeout", type=int, default=None, metavar="SECONDS",
                        help="fail a notebook whose cell runs longer than this (default: no limit)")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    reproduce(args.config, args.data_root, args.run_dir, args.quick, args.seeds, args.force, args.device,
              args.overrides, cell_timeout=args.cell_timeout, figure_dir=args.figure_dir)
    return 0
