"""Matplotlib figures for the data notebooks: the feature grid, a video's features with its ground truth, resampling
onto a reference grid (notebook 01), and dataset statistics (notebook 02). Each function returns the Figure."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from tal_kit.data.annotations import VideoRecord
from tal_kit.data.grid import FeatureGrid
from tal_kit.data.stats import coverage, instance_durations, pyramid_level_shares

__all__ = ["plot_clip_grid", "plot_video_features", "plot_resampling", "plot_dataset_overview",
           "plot_class_counts", "plot_pyramid_levels", "principal_components"]

_SUBSET_COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:red"]


def _label_colors(labels: Sequence[int]) -> dict[int, tuple]:
    cmap = plt.get_cmap("tab20")
    return {lab: cmap(i % 20) for i, lab in enumerate(sorted(set(int(x) for x in labels)))}


def plot_clip_grid(grid: FeatureGrid, num_features: int = 6) -> Figure:
    """The first clips of a video: each feature's frame window (bar) and its grid point at the clip centre (dot)."""
    windows = grid.clip_windows(num_features)
    centres = grid.clip_centres(num_features)
    fig, ax = plt.subplots(figsize=(9, 0.45 * num_features + 1.4))
    for i, ((start, end), centre) in enumerate(zip(windows, centres)):
        ax.barh(i, end - start, left=start, height=0.55, color="tab:blue", alpha=0.35)
        ax.plot(centre, i, "o", color="tab:red")
        ax.text(end + 0.01, i, f"feature {i}: frames {i * grid.feat_stride:g}-{i * grid.feat_stride + grid.num_frames - 1:g}"
                , va="center", fontsize=8)
    frame_times = np.arange(0, windows[-1, 1] + 1e-9, 1 / grid.fps)
    ax.vlines(frame_times, -0.8, -0.55, color="gray", lw=0.6)
    ax.set_ylim(-1, num_features)
    ax.set_xlim(0, windows[-1, 1] * 1.35)
    ax.invert_yaxis()
    ax.set_yticks([])
    ax.set_xlabel("time (s)   (ticks at the bottom: video frames)")
    ax.set_title(f"clips of {grid.num_frames:g} frames every {grid.feat_stride:g} frames at {grid.fps:g} fps: "
                 f"one feature per {grid.seconds_per_step:.3f} s; red dots = grid points (clip centres)")
    fig.tight_layout()
    return fig


def principal_components(feats: np.ndarray, n_components: int = 3) -> np.ndarray:
    """[n_components, T] projections of [C, T] features on their top principal directions."""
    x = np.asarray(feats, dtype=np.float64).T
    x = x - x.mean(0, keepdims=True)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return (x @ vt[:n_components].T).T


def _draw_ground_truth(ax, video: VideoRecord, label_names: Sequence[str], colors: dict[int, tuple]) -> None:
    """Ground-truth segments as labelled bars, one row per class present."""
    rows = {lab: i for i, lab in enumerate(sorted(colors))}
    for (s, e), lab in zip(video.segments, video.labels):
        ax.barh(rows[int(lab)], e - s, left=s, height=0.7, color=colors[int(lab)], edgecolor="black", lw=0.4)
    ax.set_yticks(list(rows.values()), [label_names[lab] for lab in rows], fontsize=8)
    ax.set_ylim(len(rows) - 0.4, -0.6)
    ax.set_xlabel("time (s)")


def plot_video_features(feats: np.ndarray, grid: FeatureGrid, video: VideoRecord, label_names: Sequence[str],
                        n_components: int = 3) -> Figure:
    """A video's features as a heat map (channels x time, placed at the clip centres) and as principal-component
    curves, above its ground truth."""
    feats = np.asarray(feats)
    centres = grid.clip_centres(feats.shape[1])
    half = grid.seconds_per_step / 2
    colors = _label_colors(video.labels)
    fig, axes = plt.subplots(3, 1, figsize=(11, 7), sharex=True,
                             gridspec_kw={"height_ratios": [3, 2, 0.4 + 0.35 * max(len(colors), 1)]})
    limit = np.percentile(np.abs(feats), 99)
    axes[0].imshow(feats, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest",
                   extent=(centres[0] - half, centres[-1] + half, feats.shape[0] - 0.5, -0.5))
    axes[0].set_ylabel("channel")
    axes[0].set_title(f"{video.video_id}: {feats.shape[1]} features x {feats.shape[0]} channels "
                      f"({video.duration:.1f} s at {grid.fps:g} fps)")
    pcs = principal_components(feats, n_components)
    for k, pc in enumerate(pcs):
        axes[1].plot(centres, pc, lw=0.9, label=f"PC {k + 1}")
    for (s, e), lab in zip(video.segments, video.labels):
        axes[1].axvspan(s, e, color=colors[int(lab)], alpha=0.25, lw=0)
    axes[1].legend(loc="upper right", fontsize=8)
    axes[1].set_ylabel("projection")
    _draw_ground_truth(axes[2], video, label_names, colors)
    axes[2].set_xlim(0, video.duration)
    fig.tight_layout()
    return fig


def plot_resampling(source: np.ndarray, source_grid: FeatureGrid, resampled: np.ndarray, target_grid: FeatureGrid,
                    native: np.ndarray | None = None, video: VideoRecord | None = None, channel: int = 0,
                    window_s: tuple[float, float] | None = None) -> Figure:
    """One channel of features before and after resampling onto a reference grid's length.

    ``source`` [C, T_src] lives on ``source_grid``; ``resampled`` [C, T_ref] is drawn at ``target_grid``'s clip
    centres (where the model will believe it is); ``native`` (optional) is what an extractor on the target grid
    would have produced, for comparison.
    """
    fig, ax = plt.subplots(figsize=(11, 3.6))
    t_src = source_grid.clip_centres(source.shape[1])
    t_ref = target_grid.clip_centres(resampled.shape[1])
    ax.plot(t_src, source[channel], "o-", ms=3, lw=0.8, label=f"source: {source.shape[1]} features, stride "
                                                                f"{source_grid.feat_stride:g} frames")
    ax.plot(t_ref, resampled[channel], ".-", ms=3, lw=0.8, label=f"resampled to {resampled.shape[1]} features "
                                                                  f"(reference grid, stride {target_grid.feat_stride:g})")
    if native is not None:
        ax.plot(target_grid.clip_centres(native.shape[1]), native[channel], lw=0.8, color="gray", alpha=0.7,
                label="extracted directly on the reference grid")
    if video is not None:
        for s, e in video.segments:
            ax.axvspan(s, e, color="gold", alpha=0.2, lw=0)
    if window_s is not None:
        ax.set_xlim(*window_s)
    ax.set_xlabel("time (s)")
    ax.set_ylabel(f"channel {channel}")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def plot_class_counts(videos_by_subset: Mapping[str, Sequence[VideoRecord]], label_names: Sequence[str]) -> Figure:
    """Instances per class, one bar per subset. Up to 60 classes are named, one row each; more (ActivityNet's 200)
    are drawn unnamed in a figure of bounded height (a 45-inch-tall figure took most of a dry run's notebook 02)."""
    named = len(label_names) <= 60
    fig, ax = plt.subplots(figsize=(10, max(3.0, 0.22 * len(label_names) + 1) if named else 8.0))
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
    fig.tight_layout()
    return fig


def plot_dataset_overview(videos_by_subset: Mapping[str, Sequence[VideoRecord]]) -> Figure:
    """Four panels: instance durations (log scale), instances per video, video durations, coverage."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 6.5))
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
    fig.tight_layout()
    return fig


def plot_pyramid_levels(lengths_in_steps: np.ndarray, regression_range: Sequence[Sequence[float]]) -> Figure:
    """Instance lengths in grid steps, with the share that each pyramid level's regression range takes."""
    shares = pyramid_level_shares(lengths_in_steps, regression_range)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
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
    fig.tight_layout()
    return fig
