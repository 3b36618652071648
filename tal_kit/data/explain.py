"""Data prepared for notebook 01's explanations: a video's features on two grids and the resampling between them."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tal_kit.data.annotations import VideoRecord
from tal_kit.data.features import FeatureSource, load_feature_file
from tal_kit.data.grid import FeatureGrid, resample_features, resampling_time_shift

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
                       demo_source_stride: int = 8) -> ResamplingExample:
    """The resampling InternVideo applies, on one video.

    With a ``reference_feat_folder`` in the config (the real presets) the source is the feature file and the target
    length is the reference file's. For the demo (no reference folder) the demo generator renders the same video
    as a second extractor would see it, with clips every ``demo_source_stride`` frames, and resamples that onto the
    demo's own grid, where the natively extracted features serve as the comparison.
    """
    d = cfg.dataset
    target_grid = FeatureGrid(float(d.feat_stride), float(d.num_frames), float(fps))
    if d.reference_feat_folder is not None:
        source_features = FeatureSource.from_config(cfg, data_root)
        source = load_feature_file(source_features.path(video.video_id), d.input_dim, video_id=video.video_id).T
        resampled = source_features.load(video.video_id).numpy()
        source_grid = FeatureGrid(float(d.feat_stride), float(d.num_frames), float(fps))  # [inferred] same clip grid
        native = None
        description = (f"{d.feat_folder} ({source.shape[1]} features) resampled to the length of "
                       f"{d.reference_feat_folder} ({resampled.shape[1]})")
    else:
        from tal_kit.data import demo

        spec = demo.load_demo_spec(data_root)
        plan = next(p for p in demo.plan_videos(spec) if p.video_id == video.video_id)
        source = demo.render_features(spec, plan, feat_stride=demo_source_stride).T
        native = FeatureSource.from_config(cfg, data_root).load(video.video_id).numpy()
        resampled = resample_features(torch.from_numpy(np.ascontiguousarray(source)), native.shape[1]).numpy()
        source_grid = FeatureGrid(float(demo_source_stride), float(spec.num_frames), float(fps))
        description = (f"the demo video rendered with {spec.num_frames}-frame clips every {demo_source_stride} frames "
                       f"({source.shape[1]} features), resampled to the {native.shape[1]} features of the demo grid "
                       f"(every {d.feat_stride} frames)")
    shift = resampling_time_shift(source_grid, source.shape[1], target_grid, resampled.shape[1])
    return ResamplingExample(video, np.asarray(source), source_grid, np.asarray(resampled), target_grid, native,
                             shift, description)
