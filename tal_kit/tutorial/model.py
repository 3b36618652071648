"""Notebook 03 (the model): tables of its parameters and pyramid, figures of the pyramid, the per-level scores and
the label assignment, and a tiny fitting loop. Tables are lists of dicts (``tal_kit.viz.tables.records_table``
writes them); figures are pyplot-free ``matplotlib.figure.Figure`` objects."""
from __future__ import annotations

from typing import Sequence

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from tal_kit.model.actionformer import ActionFormer, ModelOutput
from tal_kit.model.assignment import assign_targets
from tal_kit.model.points import pyramid_points

__all__ = ["parameter_table", "pyramid_table", "plot_pyramid", "plot_level_scores", "plot_label_assignment",
           "fit_one_batch"]

_GROUPS = ("backbone.embedding", "backbone.stem", "backbone.branch")


def parameter_table(model: nn.Module) -> list[dict]:
    """Rows {"module", "parameters", "share %"}: the backbone's embedding, stem and branch, the neck and each head
    (LayerNorms and LayerScales counted with the module they belong to), then the total."""
    counts: dict[str, int] = {}
    for name, param in model.named_parameters():
        group = next((g for g in _GROUPS if name.startswith(g)), name.split(".")[0])
        counts[group] = counts.get(group, 0) + param.numel()
    total = sum(counts.values())
    rows = [{"module": name, "parameters": f"{count:,}", "share %": 100.0 * count / total}
            for name, count in counts.items()]
    rows.append({"module": "total", "parameters": f"{total:,}", "share %": 100.0})
    return rows


def pyramid_table(model: ActionFormer, length: int | None = None) -> list[dict]:
    """One row per pyramid level: stride, steps at ``length`` (default max_seq_len), regression range and the
    attention window, both in input-grid steps."""
    length = length or model.max_seq_len
    rows = []
    for level, (stride, (low, high), window) in enumerate(zip(model.level_strides, model.regression_range,
                                                             model.window_sizes)):
        span = f"{window} steps = {window * stride} input steps" if window > 1 else "global"
        rows.append({"level": level, "stride": stride, "steps": length // stride,
                     "regression range (input steps)": f"[{low:g}, {high:g}]", "attention": span})
    return rows


def plot_pyramid(model: ActionFormer, length: int = 64) -> Figure:
    """Left: where each level's points sit on the first ``length`` input steps, with one point's attention window
    and centre-sampling radius drawn. Right: the distance range each level regresses (log scale)."""
    fig = Figure(figsize=(13, 3.8), layout="tight")
    ax, ax_range = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2.2, 1]})
    levels = range(model.num_levels)
    colors = matplotlib.colormaps["viridis"](np.linspace(0.05, 0.85, model.num_levels))
    for level, stride, window, color in zip(levels, model.level_strides, model.window_sizes, colors):
        t = np.arange(0, length, stride)
        ax.scatter(t, np.full_like(t, level), s=14, color=color, zorder=3)
        centre = t[len(t) // 2]
        if window > 1:
            half = (window // 2) * stride
            ax.plot([max(0, centre - half), min(length - 1, centre + half)], [level + 0.22] * 2, color=color, lw=2)
            ax.text(min(length - 1, centre + half) + 0.5, level + 0.22, f"window {window} = {window * stride} steps",
                    fontsize=7, va="center")
        else:
            ax.text(centre, level + 0.22, "global attention", fontsize=7, ha="center")
    ax.set_yticks(list(levels), [f"L{lv} (stride {s})" for lv, s in zip(levels, model.level_strides)])
    ax.set_xlabel("input grid step")
    ax.set_ylim(-0.5, model.num_levels - 0.3)
    ax.invert_yaxis()
    ax.set_title("points per level (one per step of that level)", fontsize=9)

    for level, ((low, high), color) in enumerate(zip(model.regression_range, colors)):
        ax_range.barh(level, max(high, 1) - max(low, 0.5), left=max(low, 0.5), color=color, height=0.6)
        ax_range.text(max(high, 1) * 1.15, level, f"[{low:g}, {high:g}]", va="center", fontsize=7)
    ax_range.set_xscale("log")
    ax_range.set_xlim(0.5, max(high for _, high in model.regression_range) * 20)
    ax_range.set_yticks(list(levels), [f"L{lv}" for lv in levels])
    ax_range.invert_yaxis()
    ax_range.set_xlabel("max(distance to start, distance to end), input steps")
    ax_range.set_title("regression range: which action sizes a level handles", fontsize=9)
    return fig


def plot_level_scores(output: ModelOutput, segments: torch.Tensor, labels: torch.Tensor,
                      label_names: Sequence[str] | None = None, index: int = 0, max_classes: int = 3) -> Figure:
    """Per level, the classification score (sigmoid of the logit) over time for the video's ground-truth classes,
    with its ground-truth segments shaded; x is in input-grid steps, so the levels line up."""
    segments, labels = segments.detach().cpu().numpy(), labels.detach().cpu().numpy()
    classes = list(dict.fromkeys(labels.tolist()))[:max_classes] or [0]
    num_levels = len(output.cls_logits)
    fig = Figure(figsize=(12, 1.25 * num_levels + 0.6), layout="tight")
    axes = fig.subplots(num_levels, 1, sharex=True, squeeze=False)
    valid_steps = int(output.masks[0][index].sum())
    for level, ax in enumerate(axes[:, 0]):
        scores = torch.sigmoid(output.cls_logits[level][index]).detach().cpu().numpy()
        valid = output.masks[level][index].cpu().numpy()
        t = output.points_per_level()[level][:, 0].cpu().numpy()
        for start, end in segments:
            ax.axvspan(start, end, color="tab:orange", alpha=0.18, lw=0)
        for cls in classes:
            name = label_names[cls] if label_names is not None else str(cls)
            ax.plot(t[valid], scores[valid, cls], lw=1, label=name)
        ax.set_ylabel(f"L{level}", rotation=0, ha="right", va="center")
        ax.set_ylim(0, 1)
    axes[0, 0].legend(loc="upper right", fontsize=7, ncol=len(classes))
    axes[0, 0].set_title("classification score per level (shaded: ground truth)", fontsize=9)
    axes[-1, 0].set_xlim(0, valid_steps)
    axes[-1, 0].set_xlabel("input grid step")
    return fig


def plot_label_assignment(model: ActionFormer, segments: torch.Tensor, labels: torch.Tensor, length: int,
                          label_names: Sequence[str] | None = None,
                          window: tuple[float, float] | None = None) -> Figure:
    """Every point of every level, marked by why it is (not) a positive for the given ground truth:
    filled = positive (colour: the segment it regresses), ring = inside a segment's centre region but the
    distance to its far end is outside the level's range, grey dot = neither. Segments are drawn on top."""
    cfg = model.train_cfg
    points = pyramid_points([length // s for s in model.level_strides], model.level_strides, model.regression_range)
    segments = segments.float().cpu()
    cls_targets, _ = assign_targets(points, segments, labels.cpu(), model.num_classes,
                                              center_sample=cfg.center_sample,
                                              center_sample_radius=cfg.center_sample_radius)
    t, low, high, stride = (points[:, i:i + 1] for i in range(4))
    start, end = segments[:, 0][None], segments[:, 1][None]
    centre = 0.5 * (start + end)
    radius = cfg.center_sample_radius * stride
    inside = (t - torch.maximum(centre - radius, start) > 0) & (torch.minimum(centre + radius, end) - t > 0)
    reach = torch.maximum(t - start, end - t)
    in_range = (reach >= low) & (reach <= high)
    positive = cls_targets.sum(1) > 0
    # the segment a positive regresses: the shortest one it qualifies for
    owner = (end - start).expand_as(inside).masked_fill(~(inside & in_range), float("inf")).argmin(1)

    if window is None:
        pad = 0.15 * float(end.max() - start.min()) + 4
        window = (max(0.0, float(start.min()) - pad), min(float(length), float(end.max()) + pad))
    fig = Figure(figsize=(12, 0.55 * model.num_levels + 1.6), layout="tight")
    ax = fig.subplots()
    colors = matplotlib.colormaps["tab10"](np.arange(len(segments)) % 10)
    level_of = torch.repeat_interleave(torch.arange(model.num_levels),
                                       torch.tensor([length // s for s in model.level_strides]))
    shown = (t[:, 0] >= window[0]) & (t[:, 0] <= window[1])
    for i in torch.nonzero(shown).flatten().tolist():
        x, y = t[i, 0].item(), level_of[i].item()
        if positive[i]:
            ax.scatter(x, y, s=36, color=colors[owner[i]], zorder=3)
        elif (inside[i] & ~in_range[i]).any():
            ax.scatter(x, y, s=36, facecolors="none", edgecolors="gray", zorder=3)
        else:
            ax.scatter(x, y, s=6, color="lightgray", zorder=2)
    for k, ((s, e), label, color) in enumerate(zip(segments.tolist(), labels.tolist(), colors)):
        name = f" ({label_names[label]})" if label_names is not None else f" (class {label})"
        ax.plot([s, e], [-0.8 - 0.25 * k] * 2, color=color, lw=4, solid_capstyle="butt")
        ax.text(e, -0.8 - 0.25 * k, f"  segment {k}{name}: [{s:.1f}, {e:.1f}], length {e - s:.1f}", fontsize=7,
                va="center")
    ax.set_yticks(range(model.num_levels), [f"L{lv} stride {s}, range [{lo:g}, {hi:g}]" for lv, (s, (lo, hi))
                                            in enumerate(zip(model.level_strides, model.regression_range))],
                  fontsize=7)
    ax.set_ylim(model.num_levels - 0.5, -1.2 - 0.25 * len(segments))
    ax.set_xlim(*window)
    ax.set_xlabel("input grid step")
    ax.set_title("label assignment: filled = positive (colour: its segment), ring = inside the centre region but "
                 "out of the level's range, grey = outside every centre region", fontsize=8)
    return fig


def fit_one_batch(model: ActionFormer, batch: dict, steps: int = 50, learning_rate: float = 1e-3) -> list[float]:
    """Fit the model to a single batch for a few AdamW steps (drop-path left on) and return the final losses.

    Only for illustration: it shows what the heads learn to output, not how to train (notebook 04 trains).
    """
    device = next(model.parameters()).device
    # Only the steps the losses depend on: the padding rule of `inference_length` gives the same losses and
    # gradients as the batch's own (longer) padding, for a fraction of the work on a short video.
    length = min(batch["feats"].shape[-1], model.inference_length(int(batch["mask"].sum(1).max())))
    feats, mask = batch["feats"][..., :length].to(device), batch["mask"][:, :length].to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    model.train()
    history = []
    for _ in range(steps):
        losses = model.losses(model(feats, mask), batch["segments"], batch["labels"])
        optimizer.zero_grad(set_to_none=True)
        losses["final_loss"].backward()
        optimizer.step()
        history.append(losses["final_loss"].item())
    model.eval()
    return history
