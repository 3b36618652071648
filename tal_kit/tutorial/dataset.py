"""Notebook 02 (dataset inspection): instances per class, the dataset overview (durations, instances per video,
coverage) and which pyramid level each instance falls to. Each function returns a pyplot-free Figure; the numbers
come from :mod:`tal_kit.data.stats`."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from tal_kit.data.annotations import VideoRecord
from tal_kit.data.stats import coverage, instance_durations, pyramid_level_shares

__all__ = ["plot_class_counts", "plot_dataset_overview", "plot_pyramid_levels"]

_SUBSET_COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:red"]


def plot_class_counts(videos_by_subset: Mapping[str, Sequence[VideoRecord]], label_names: Sequence[str]) -> Figure:
    """Instances per class, one bar per subset. Up to 60 classes are named, one row each; more (ActivityNet's 200)
    are drawn unnamed in a figure of bounded height (a 45-inch-tall figure took most of a dry run's notebook 02)."""
    named = len(label_names) <= 60
    fig = Figure(figsize=(10, max(3.0, 0.22 * len(label_names) + 1) if named else 8.0), layout="tight")
    ax = fig.subplots()
    width = 0.8 / max(len(videos_by_subset), 1)
    y = np.arange(len(label_names))
    for k, (subset, videos) in enumerate(videos_by_subset.items()):
        labels = np.concatenate([v.labels for v in videos]) if videos else np.zeros(0, np.int64)
        counts = np.bincount(labels, minlength=len(label_names))
        ax.barh(y + k * width, counts, height=width, label=f"{subset} ({counts.sum()})",
                color=_SUBSET_COLORS[k % len(_SUBSET_COLORS)])
    if named:
        ax.set_yticks(y + width * (len(videos_by_subset) - 1) / 2, label_names, fontsize=7)
    else:
        ax.set_yticks([])
        ax.set_ylabel(f"{len(label_names)} classes (in label-id order)")
    ax.invert_yaxis()
    ax.set_xlabel("instances")
    ax.legend(fontsize=8)
    ax.set_title("instances per class")
    return fig


def plot_dataset_overview(videos_by_subset: Mapping[str, Sequence[VideoRecord]]) -> Figure:
    """Four panels: instance durations (log scale), instances per video, video durations, coverage."""
    fig = Figure(figsize=(11, 6.5), layout="tight")
    axes = fig.subplots(2, 2)
    all_durations = [d for vs in videos_by_subset.values() for d in instance_durations(vs)]
    positive = [d for d in all_durations if d > 0]
    bins = np.logspace(np.log10(max(min(positive), 1e-2)), np.log10(max(positive)), 30) if positive else 10
    for k, (subset, videos) in enumerate(videos_by_subset.items()):
        color = _SUBSET_COLORS[k % len(_SUBSET_COLORS)]
        style = dict(histtype="step", lw=1.5, color=color, label=subset)
        axes[0, 0].hist(np.clip(instance_durations(videos), bins[0] if positive else 0, None), bins=bins, **style)
        counts = [v.num_segments for v in videos]
        axes[0, 1].hist(counts, bins=np.arange(0, max(counts) + 2) - 0.5 if max(counts) < 60 else 30, **style)
        axes[1, 0].hist([v.duration for v in videos], bins=30, **style)
        axes[1, 1].hist([100 * coverage(v) for v in videos], bins=np.linspace(0, 100, 21), **style)
    axes[0, 0].set_xscale("log")
    axes[0, 0].set_xlabel("instance duration (s, log scale)")
    axes[0, 1].set_xlabel("instances per video")
    axes[1, 0].set_xlabel("video duration (s)")
    axes[1, 1].set_xlabel("coverage: % of the video inside an action")
    for ax in axes.flat:
        ax.set_ylabel("count")
        ax.legend(fontsize=8)
    return fig


def plot_pyramid_levels(lengths_in_steps: np.ndarray, regression_range: Sequence[Sequence[float]]) -> Figure:
    """Instance lengths in grid steps, with the share that each pyramid level's regression range takes."""
    shares = pyramid_level_shares(lengths_in_steps, regression_range)
    fig = Figure(figsize=(11, 3.4), layout="tight")
    axes = fig.subplots(1, 2)
    positive = np.asarray(lengths_in_steps)[np.asarray(lengths_in_steps) > 0]
    if len(positive):
        axes[0].hist(positive, bins=np.logspace(np.log10(positive.min()), np.log10(positive.max()), 30),
                     color="tab:blue")
    for lo, _ in regression_range[1:]:
        axes[0].axvline(2 * lo, color="gray", ls="--", lw=0.8)  # centre point: max distance = length / 2
    axes[0].set_xscale("log")
    axes[0].set_xlabel("instance length (grid steps); dashed: level boundaries (2 x range)")
    axes[0].set_ylabel("instances")
    names = [f"L{level}\n[{lo:g}, {hi:g}]" for level, (lo, hi) in enumerate(regression_range)]
    axes[1].bar(names, 100 * shares, color="tab:green")
    axes[1].set_ylabel("% of instances")
    axes[1].set_title("pyramid level whose range holds the instance's centre", fontsize=9)
    return fig
