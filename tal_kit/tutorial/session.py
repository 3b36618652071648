"""The set-up every notebook does first: its papermill parameters -> the config and the run's folders.

Each notebook's cell after ``parameters`` is one call::

    cfg, data_root, run_dir, figure_dir = setup(config, data_root, run_dir, figure_dir, overrides, quick, seed)

The rules are those of the CLI and of ``reproduce`` (tal_kit.config.resolve_config, QUICK_OVERRIDES, run_paths);
this module only applies them to the notebooks' parameter conventions ("" for "the default", a seed of -1 for "the
config's").
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

from tal_kit.config import QUICK_OVERRIDES, Config, as_override_list, resolve_config, run_paths

__all__ = ["Session", "setup"]


class Session(NamedTuple):
    """A notebook's config and folders (a tuple, so that the set-up cell can unpack it in one line)."""

    cfg: Config
    data_root: Path
    run_dir: Path
    figure_dir: Path


def setup(config: str | Path | Config = "demo", data_root: str | Path = "", run_dir: str | Path = "",
          figure_dir: str | Path = "", overrides: str | Sequence[str] = (), quick: bool = False,
          seed: int | None = None, log: Callable[[str], Any] = print) -> Session:
    """The config (``overrides``, then tal_kit.config.QUICK_OVERRIDES when ``quick``; ``seed`` >= 0 replaces the
    config's) and the folders of tal_kit.config.run_paths ("" means the default); for the demo preset the demo
    dataset is generated in ``data_root`` when it is missing (it is never committed)."""
    from tal_kit.data.demo import ensure_demo_data

    cfg = resolve_config(config, as_override_list(overrides) + (list(QUICK_OVERRIDES) if quick else []), seed)
    paths = run_paths(cfg, data_root, run_dir, figure_dir)
    if cfg.name == "demo":
        ensure_demo_data(paths.data_root, log)
    return Session(cfg, paths.data_root, paths.run_dir, paths.figure_dir)
