"""Training figures: the curves of a run's metrics.jsonl (loss, lr, mAP), the learning-rate schedule of a config,
and a live loss plot for notebooks. Figures are pyplot-free (see :mod:`tal_kit.viz.figures`): callers save them
with :func:`tal_kit.viz.figures.save_figure`."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure

from tal_kit.training.schedule import learning_rate_at, schedule_settings

if TYPE_CHECKING:
    from tal_kit.config import OptConfig

__all__ = ["read_metrics", "plot_training_curves", "plot_lr_schedule", "LiveLossPlot"]


def read_metrics(run_dir: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(iteration records, epoch records) of a run's metrics.jsonl; a line cut by an interruption is skipped."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: has this run trained yet?")
    iters, epochs = [], []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        (iters if record.get("type") == "iter" else epochs).append(record)
    return iters, epochs


def plot_training_curves(run_dir: str | Path) -> Figure:
    """Three panels: the losses per iteration (with epoch means), the lr per iteration, the EMA model's mAP."""
    iters, epochs = read_metrics(run_dir)
    fig = Figure(figsize=(15, 3.8), layout="tight")
    ax_loss, ax_lr, ax_map = fig.subplots(1, 3)
    steps = [r["step"] for r in iters]
    for name, color in (("final_loss", "C0"), ("cls_loss", "C1"), ("reg_loss", "C2")):
        ax_loss.plot(steps, [r[name] for r in iters], color=color, alpha=0.35, lw=0.8)
        ax_loss.plot([e["step"] for e in epochs], [e.get(name, math.nan) for e in epochs], "o-", color=color,
                     ms=3, label=f"{name} (epoch mean)")
    ax_loss.set(xlabel="iteration", ylabel="loss", title="training losses")
    ax_loss.legend(fontsize=8)
    ax_lr.plot(steps, [r["lr"] for r in iters], color="C3")
    ax_lr.set(xlabel="iteration", ylabel="learning rate", title="learning rate (warmup + cosine)")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    evaluated = [e for e in epochs if e.get("eval")]
    if evaluated:
        x = [e["epoch"] for e in evaluated]
        ax_map.plot(x, [100 * e["eval"]["average_mAP"] for e in evaluated], "o-", color="k", label="average")
        thresholds = evaluated[0]["eval"]["tiou_thresholds"]
        for t, thr in enumerate(thresholds):
            ax_map.plot(x, [100 * e["eval"]["mAP"][t] for e in evaluated], lw=0.9, alpha=0.7, label=f"tIoU {thr:g}")
        ax_map.legend(fontsize=7, ncol=2)
    else:
        ax_map.text(0.5, 0.5, "not evaluated yet", ha="center", va="center", transform=ax_map.transAxes)
    metric = next((e["eval"]["metric"] for e in evaluated if e["eval"].get("metric")), "mAP")  # class-agnostic?
    ax_map.set(xlabel="epoch (0-based)", ylabel=f"{metric} (%)", title="EMA model on the evaluation split")
    return fig


def plot_lr_schedule(opt_cfg: OptConfig, iters_per_epoch: int) -> Figure:
    """The lr of every iteration for ``cfg.opt``, with the warmup region shaded and lr(0) = 0 marked."""
    if iters_per_epoch <= 0:
        raise ValueError("no training iterations per epoch: loader.batch_size exceeds the number of training videos "
                         "(the last incomplete batch is dropped, as in the recipe)")
    settings = schedule_settings(opt_cfg, iters_per_epoch)  # the schedule training runs, step for step
    warmup, total = settings["warmup_steps"], settings["total_steps"]
    warmup_epochs = warmup // iters_per_epoch
    steps = np.arange(total)
    lrs = [learning_rate_at(int(k), base_lr=opt_cfg.learning_rate, **settings) for k in steps]
    fig = Figure(figsize=(8, 3.2), layout="tight")
    ax = fig.subplots()
    ax.plot(steps, lrs, color="C3")
    if warmup:
        ax.axvspan(0, warmup, color="C1", alpha=0.15, label=f"linear warmup ({warmup_epochs} epochs)")
    ax.plot([0], [lrs[0]], "ko", ms=4, label="first step: lr = 0")
    for epoch in range(0, total // iters_per_epoch + 1, max(1, (total // iters_per_epoch) // 10)):
        ax.axvline(epoch * iters_per_epoch, color="0.85", lw=0.6, zorder=0)
    ax.set(xlabel=f"iteration ({iters_per_epoch} per epoch; grey lines: epochs)", ylabel="learning rate",
           title=f"{opt_cfg.schedule_type} schedule, base lr {opt_cfg.learning_rate:g}")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    ax.legend(fontsize=8)
    return fig


class LiveLossPlot:
    """A Trainer callback that redraws the loss/lr curves in a notebook while training runs.

    Outside IPython it does nothing. ``every`` iterations it re-renders one figure in place (a display handle).
    """

    def __init__(self, every: int = 10, title: str = "training"):
        self.every = max(1, int(every))
        self.title = title
        self.steps: list[int] = []
        self.losses: dict[str, list[float]] = {"final_loss": [], "cls_loss": [], "reg_loss": []}
        self.lrs: list[float] = []
        self.epoch_marks: list[tuple[int, float | None]] = []
        self._handle = None
        try:
            from IPython import get_ipython
            self.active = get_ipython() is not None
        except ImportError:
            self.active = False

    def on_iteration(self, record: dict[str, Any]) -> None:
        self.steps.append(record["step"])
        for name in self.losses:
            self.losses[name].append(record.get(name, math.nan))
        self.lrs.append(record["lr"])
        if record["step"] % self.every == 0:
            self.draw()

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        evaluation = record.get("eval") or {}
        self.epoch_marks.append((record["step"], evaluation.get("average_mAP")))
        self.draw()

    def new_output(self) -> None:
        """Draw the next update as a new output (of the cell running now) instead of updating the old one."""
        self._handle = None

    def figure(self) -> Figure:
        fig = Figure(figsize=(12, 3.4), layout="tight")
        ax_loss, ax_lr = fig.subplots(1, 2)
        for i, (name, values) in enumerate(self.losses.items()):
            ax_loss.plot(self.steps, values, color=f"C{i}", lw=0.9, label=name)
        for step, mAP in self.epoch_marks:
            ax_loss.axvline(step, color="0.8", lw=0.6, zorder=0)
            if mAP is not None:
                ax_loss.annotate(f"{100 * mAP:.1f}", (step, 1), xycoords=("data", "axes fraction"), fontsize=7,
                                 ha="right", va="top", color="0.3")
        ax_loss.set(xlabel="iteration", ylabel="loss",
                    title=f"{self.title}: losses (grey: epoch ends, avg mAP % of the EMA model)")
        ax_loss.legend(fontsize=8, loc="upper right")
        ax_lr.plot(self.steps, self.lrs, color="C3")
        ax_lr.set(xlabel="iteration", ylabel="learning rate", title="learning rate")
        ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
        return fig

    def draw(self) -> None:
        if not self.active or not self.steps:
            return
        from IPython.display import display

        fig = self.figure()  # pyplot-free: nothing to close, nothing drawn twice at the cell's end
        if self._handle is None:
            self._handle = display(fig, display_id=True)
        else:
            self._handle.update(fig)
