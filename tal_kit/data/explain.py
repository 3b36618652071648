"""Data prepared for notebook 01's explanations: a video's features on two grids and the resampling between them."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tal_kit.data.annotations import VideoRecord
from tal_kit.data.features import FeatureSource, load_feature_file
from tal_kit.data.grid import (FeatureGrid, grid_for_video, resample_features, resampling_time_shift,
                               resizes_to_max_seq_len)

__all__ = ["ResamplingExample", "resampling_example"]


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


def resampling_example(cfg: Any, data_root: str | Path, video: VideoRecord, fps: float,
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


def _demo_example(cfg: Any, data_root: str | Path, video: VideoRecord, fps: float, source_stride: int,
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
