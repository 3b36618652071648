"""Notebook 01 (features): the feature grid, a video's features with its ground truth, the resampling a config
applies before the model (data and figure), and the demo extraction's clips over the frames.

Figures are ``matplotlib.figure.Figure`` objects built without pyplot (see :mod:`tal_kit.viz.figures`); the notebook
displays them and saves them with :func:`tal_kit.viz.figures.save_figure`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure

from tal_kit.data.annotations import VideoRecord
from tal_kit.data.features import FeatureSource, load_feature_file
from tal_kit.data.grid import (FeatureGrid, grid_for_video, resample_features, resampling_time_shift,
                               resizes_to_max_seq_len)

if TYPE_CHECKING:
    from tal_kit.config import Config
    from tal_kit.extraction.demo import DemoExtraction

__all__ = ["plot_clip_grid", "principal_components", "plot_video_features", "ResamplingExample",
           "resampling_example", "plot_resampling", "plot_clips_over_frames"]


def _label_colors(labels: Sequence[int]) -> dict[int, tuple]:
    cmap = matplotlib.colormaps["tab20"]
    return {lab: cmap(i % 20) for i, lab in enumerate(sorted(set(int(x) for x in labels)))}


def plot_clip_grid(grid: FeatureGrid, num_features: int = 6) -> Figure:
    """The first clips of a video: each feature's frame window (bar) and its grid point at the clip centre (dot)."""
    windows = grid.clip_windows(num_features)
    centres = grid.clip_centres(num_features)
    fig = Figure(figsize=(9, 0.45 * num_features + 1.4), layout="tight")
    ax = fig.subplots()
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
    fig = Figure(figsize=(11, 7), layout="tight")
    axes = fig.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2, 0.4 + 0.35 * max(len(colors), 1)]})
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
    return fig


def plot_resampling(source: np.ndarray, source_grid: FeatureGrid, resampled: np.ndarray, target_grid: FeatureGrid,
                    native: np.ndarray | None = None, video: VideoRecord | None = None, channel: int = 0,
                    window_s: tuple[float, float] | None = None) -> Figure:
    """One channel of features before and after resampling onto a reference grid's length.

    ``source`` [C, T_src] lives on ``source_grid``; ``resampled`` [C, T_ref] is drawn at ``target_grid``'s clip
    centres (where the model will believe it is); ``native`` (optional) is what an extractor on the target grid
    would have produced, for comparison.
    """
    fig = Figure(figsize=(11, 3.6), layout="tight")
    ax = fig.subplots()
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
    return fig


@dataclass
class ResamplingExample:
    video: VideoRecord
    source: np.ndarray  # [C, T_src] features as extracted on their own grid
    source_grid: FeatureGrid
    resampled: np.ndarray  # [C, T_ref] the same features linearly resampled to the reference length
    target_grid: FeatureGrid
    native: np.ndarray | None  # [C, T_ref] features extracted directly on the reference grid, when known
    time_shift: np.ndarray  # [T_ref] seconds each resampled feature is displaced (see resampling_time_shift)
    description: str

    @property
    def correlation_with_native(self) -> float | None:
        """Pearson correlation between resampled and natively extracted features (None without native)."""
        if self.native is None:
            return None
        return float(np.corrcoef(self.resampled.ravel(), self.native.ravel())[0, 1])


def resampling_example(cfg: Config, data_root: str | Path, video: VideoRecord, fps: float,
                       demo_source_stride: int = 8) -> ResamplingExample | None:
    """The resampling this config applies before the model, on one video; None when it applies none.

    * ``reference_feat_folder`` set (InternVideo THUMOS-14 / ActivityNet): the feature file is resampled to the
      reference file's length.
    * ``force_upsampling`` (FineAction; AF HEAD's ActivityNet with ``variable_length_upsampling: resize``): the
      feature file is resampled to ``max_seq_len``.
    * The demo (a folder with demo_meta.json): the demo generator renders the same video as a second extractor
      would see it, with clips every ``demo_source_stride`` frames, and that is resampled onto the demo's grid,
      where the natively extracted features serve as the comparison.
    """
    d = cfg.dataset
    features = FeatureSource.from_config(cfg, data_root)
    if d.reference_feat_folder is None and not resizes_to_max_seq_len(d):
        if (Path(data_root) / "demo_meta.json").exists():
            return _demo_example(cfg, data_root, video, fps, demo_source_stride, features)
        return None
    source = np.asarray(load_feature_file(features.path(video.video_id), d.input_dim, video_id=video.video_id).T)
    if d.reference_feat_folder is not None:
        resampled = features.load(video.video_id).numpy()
        # [inferred] the source features use the config's clip layout (true for THUMOS-14's 16-frame, stride-4
        # VideoMAE features; InternVideo's ANet features use 16-frame clips every 16 frames at ~30 fps instead)
        source_grid = FeatureGrid(float(d.feat_stride), float(d.num_frames), float(fps))
        description = (f"{d.feat_folder} ({source.shape[1]} features) resampled to the length of "
                       f"{d.reference_feat_folder} ({resampled.shape[1]})")
    else:
        resampled = resample_features(torch.from_numpy(np.ascontiguousarray(source)), d.max_seq_len).numpy()
        source_grid = grid_for_video(dataclasses.replace(d, force_upsampling=False), fps=fps, duration=video.duration,
                                     num_features=source.shape[1])
        description = f"{d.feat_folder} ({source.shape[1]} features) resampled to max_seq_len = {d.max_seq_len}"
    target_grid = grid_for_video(d, fps=fps, duration=video.duration, num_features=source.shape[1])
    shift = resampling_time_shift(source_grid, source.shape[1], target_grid, resampled.shape[1])
    return ResamplingExample(video, source, source_grid, np.asarray(resampled), target_grid, None, shift, description)


def _demo_example(cfg: Config, data_root: str | Path, video: VideoRecord, fps: float, source_stride: int,
                  features: FeatureSource) -> ResamplingExample:
    from tal_kit.data import demo

    d = cfg.dataset
    spec = demo.load_demo_spec(data_root)
    plan = next(p for p in demo.plan_videos(spec) if p.video_id == video.video_id)
    source = demo.render_features(spec, plan, feat_stride=source_stride).T
    native = features.load(video.video_id).numpy()
    resampled = resample_features(torch.from_numpy(np.ascontiguousarray(source)), native.shape[1]).numpy()
    source_grid = FeatureGrid(float(source_stride), float(spec.num_frames), float(fps))
    target_grid = FeatureGrid(float(d.feat_stride), float(d.num_frames), float(fps))
    description = (f"the demo video rendered with {spec.num_frames}-frame clips every {source_stride} frames "
                   f"({source.shape[1]} features), resampled to the {native.shape[1]} features of the demo grid "
                   f"(every {d.feat_stride:g} frames)")
    shift = resampling_time_shift(source_grid, source.shape[1], target_grid, resampled.shape[1])
    return ResamplingExample(video, np.asarray(source), source_grid, np.asarray(resampled), target_grid, native,
                             shift, description)


def plot_clips_over_frames(demo: DemoExtraction, num_clips: int = 6) -> Figure:
    """Frame thumbnails along the frame axis, the first clips as bars under them (frames start..start+L-1) with
    their centre times (the features' grid points), and the whole video's features as a heat map."""
    fps, stride, clip_len = demo.result.fps, demo.grid.stride, demo.grid.clip_len
    num_clips = min(num_clips, demo.result.features.shape[0])
    indices = sorted(demo.thumbnails)
    span = max(indices[-1] + 1, (num_clips - 1) * stride + clip_len)
    fig = Figure(figsize=(11, 6.2))  # axes placed by hand: no layout engine
    left, width = 0.04, 0.93
    for index in indices:  # one small axes per thumbnail, placed at its frame index
        image = demo.thumbnails[index]
        ax = fig.add_axes([left + width * index / span, 0.70, width * 0.92 * (indices[1] - indices[0]) / span
                           if len(indices) > 1 else 0.1, 0.2])
        ax.imshow(image)
        ax.set_axis_off()
        ax.set_title(f"frame {index}", fontsize=7)
    fig.text(0.5, 0.96, f"{demo.path.name}: {demo.result.num_frames} frames decoded at {fps:g} fps "
             f"({demo.result.width}x{demo.result.height}); clips of {clip_len} frames every {stride} frames",
             ha="center", fontsize=10)
    mid = fig.add_axes([left, 0.38, width, 0.28])
    for k in range(num_clips):
        start = k * stride
        mid.barh(k, clip_len, left=start, height=0.6, color="tab:blue", alpha=0.3)
        mid.plot(demo.result.clip_centres[k] * fps, k, "o", color="tab:red")
        mid.text(start + 0.3, k, f"clip {k}: frames {start}-{start + clip_len - 1}, centre "
                 f"{demo.result.clip_centres[k]:.2f} s", va="center", fontsize=7)
    mid.set_xlim(0, span)
    mid.set_ylim(num_clips - 0.4, -0.6)
    mid.set_yticks([])
    mid.set_xlabel("frame index   (red dots: clip centres = the features' grid points)", fontsize=8)
    bottom = fig.add_axes([left + 0.03, 0.07, width - 0.03, 0.2])
    feats = demo.result.features - demo.result.features.mean(axis=0, keepdims=True)
    times = np.asarray(demo.result.clip_centres)
    lim = float(np.abs(feats).max()) or 1.0
    half = 0.5 * stride / fps
    bottom.imshow(feats.T, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest",
                  extent=(times[0] - half, times[-1] + half, feats.shape[1], 0))
    bottom.set_xlabel("time (s)", fontsize=8)
    bottom.set_ylabel("channel", fontsize=8)
    bottom.set_title(f"features [T={feats.shape[0]}, C={feats.shape[1]}] minus each channel's mean, from a "
                     "RANDOM-weight ViT: this shows the pipeline, not semantics", fontsize=9)
    return fig
