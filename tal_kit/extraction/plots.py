"""Figures of the extraction pipeline (matplotlib only, like tal_kit.data.plots)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from tal_kit.extraction.demo import DemoExtraction

__all__ = ["plot_clips_over_frames"]


def plot_clips_over_frames(demo: DemoExtraction, num_clips: int = 6) -> Figure:
    """Frame thumbnails along the frame axis, the first clips as bars under them (frames start..start+L-1) with
    their centre times (the features' grid points), and the whole video's features as a heat map."""
    fps, stride, clip_len = demo.result.fps, demo.grid.stride, demo.grid.clip_len
    num_clips = min(num_clips, demo.result.features.shape[0])
    indices = sorted(demo.thumbnails)
    span = max(indices[-1] + 1, (num_clips - 1) * stride + clip_len)
    fig = plt.figure(figsize=(11, 6.2))
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
