"""Notebook 04 (training): the schedule's length in optimizer steps, and what a weight EMA does, on numbers and on
a run's logged losses."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
from matplotlib.figure import Figure

from tal_kit.viz.training import read_metrics

if TYPE_CHECKING:
    from tal_kit.config import Config

__all__ = ["iterations_per_epoch", "ema_illustration", "plot_ema_of_losses"]


def iterations_per_epoch(cfg: Config, data_root: str | Path | None = None, world_size: int = 1) -> int:
    """Optimizer steps per epoch: training videos // global batch (the last partial batch is dropped)."""
    from tal_kit.data.dataset import TALDataset

    videos = len(TALDataset(cfg, data_root, split=cfg.train_split, is_training=True)) // world_size
    return videos // (cfg.loader.batch_size // world_size)


def ema_illustration(values: Sequence[float], decays: Sequence[float] = (0.9, 0.99, 0.999)) -> dict[float, np.ndarray]:
    """The EMA e_k = d·e_{k-1} + (1 − d)·v_k of a sequence (e_0 = v_0), for each decay d."""
    values = np.asarray(values, dtype=np.float64)
    out = {}
    for decay in decays:
        ema = np.empty_like(values)
        if len(values) == 0:
            out[decay] = ema
            continue
        ema[0] = values[0]
        for k in range(1, len(values)):
            ema[k] = decay * ema[k - 1] + (1.0 - decay) * values[k]
        out[decay] = ema
    return out


def plot_ema_of_losses(run_dir: str | Path, decays: Sequence[float] = (0.9, 0.99)) -> Figure:
    """What an EMA does to a noisy signal, shown on the run's per-iteration loss (the weights get the same)."""
    iters, _ = read_metrics(run_dir)
    losses = [r["final_loss"] for r in iters]
    steps = [r["step"] for r in iters]
    fig = Figure(figsize=(8, 3.2), layout="tight")
    ax = fig.subplots()
    ax.plot(steps, losses, color="0.7", lw=0.8, label="per logged iteration")
    for i, (decay, smooth) in enumerate(ema_illustration(losses, decays).items()):
        ax.plot(steps, smooth, color=f"C{i}", label=f"EMA, decay {decay:g} (~{1 / (1 - decay):.0f} values)")
    ax.set(xlabel="iteration", ylabel="final loss", title="exponential moving average of a noisy sequence")
    if losses:
        ax.legend(fontsize=8)
    else:  # a smoke run can end before the first logged iteration
        ax.text(0.5, 0.5, "no iteration logged in this run", ha="center", va="center", transform=ax.transAxes)
    return fig
