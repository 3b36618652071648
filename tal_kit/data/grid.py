"""The feature grid: which moment of the video each feature vector describes, and conversions seconds <-> grid.

A feature extractor slides a clip of ``num_frames`` frames over the video, advancing ``feat_stride`` frames each
step. Feature ``i`` describes frames ``[i * feat_stride, i * feat_stride + num_frames)``, so its grid point sits at
the clip's centre. A time ``t`` (seconds) therefore maps to the fractional grid position (SPEC §C.3)::

    g = (t * fps - 0.5 * num_frames) / feat_stride        e.g. THUMOS: g = (30 t - 8) / 4

and back (SPEC §D.11 step 3)::

    t = (g * feat_stride + 0.5 * num_frames) / fps

Fixed-length features (``feat_stride <= 0`` in the config, FineAction) spread T features over the whole video, so
the stride in frames is ``duration * fps / T``; the clip length is then either ``feat_stride * num_frames`` (the
InternVideo fork) or ``feat_stride`` (upstream HEAD), see ``fixed_length_num_frames``.

Resampling onto another grid (InternVideo's MAE features onto the I3D/TSP length) is linear interpolation with
``align_corners=False``: output ``i`` reads the input at ``src = (i + 0.5) * T_in / T_out - 0.5`` (clamped at 0).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from tal_kit.config import DatasetConfig

# times or grid positions: a float, a numpy array or a tensor (the conversions are element-wise)
Times = TypeVar("Times", float, np.ndarray, torch.Tensor)

__all__ = ["FeatureGrid", "grid_for_video", "resizes_to_max_seq_len", "resample_features"]


@dataclass(frozen=True)
class FeatureGrid:
    """One video's feature grid: ``feat_stride`` and ``num_frames`` in frames, ``fps`` in frames per second."""

    feat_stride: float
    num_frames: float
    fps: float

    @property
    def feat_offset(self) -> float:
        """Grid position of time 0 is ``-feat_offset``: half a clip, in grid steps."""
        return 0.5 * self.num_frames / self.feat_stride

    @property
    def seconds_per_step(self) -> float:
        return self.feat_stride / self.fps

    def seconds_to_grid(self, seconds: Times) -> Times:
        """Seconds -> fractional grid position (works on floats, numpy arrays and tensors)."""
        return seconds * self.fps / self.feat_stride - self.feat_offset

    def grid_to_seconds(self, grid: Times) -> Times:
        """Fractional grid position -> seconds (the inverse of :meth:`seconds_to_grid`)."""
        return (grid * self.feat_stride + 0.5 * self.num_frames) / self.fps

    def num_clips(self, duration: float) -> int:
        """Clips a sliding-window extractor yields over ``duration`` seconds: one per ``feat_stride`` frames while a
        whole clip of ``num_frames`` fits, ``floor((duration * fps - num_frames) / feat_stride) + 1``, and at least
        one (a video shorter than a clip still gets a feature)."""
        return max(int((duration * self.fps - self.num_frames) // self.feat_stride) + 1, 1)

    def clip_centres(self, num_features: int) -> np.ndarray:
        """Time (s) of each feature's grid point, the centre of the clip it was computed from."""
        return self.grid_to_seconds(np.arange(num_features, dtype=np.float64))

    def clip_windows(self, num_features: int) -> np.ndarray:
        """[num_features, 2] start and end time (s) of the clip behind each feature."""
        start = np.arange(num_features, dtype=np.float64) * self.feat_stride / self.fps
        return np.stack([start, start + self.num_frames / self.fps], axis=1)


def resizes_to_max_seq_len(dataset_cfg: DatasetConfig) -> bool:
    """Whether a video's features are resized to ``max_seq_len`` steps (the one rule the grid, the dataset and
    check-data share): ``force_upsampling`` always resizes fixed-length features (``feat_stride <= 0``); it resizes
    variable-length ones only with ``variable_length_upsampling: resize`` (AF HEAD's case 2; the fork ignores it)."""
    if not dataset_cfg.force_upsampling:
        return False
    return dataset_cfg.feat_stride <= 0 or dataset_cfg.variable_length_upsampling == "resize"


def grid_for_video(dataset_cfg: DatasetConfig, *, fps: float, duration: float, num_features: int) -> FeatureGrid:
    """The grid the model sees for one video, following the loaders' three cases (SPEC §C.3).

    Args:
        dataset_cfg: ``cfg.dataset`` (feat_stride, num_frames, downsample_rate, max_seq_len, force_upsampling,
            variable_length_upsampling, fixed_length_num_frames).
        fps: the video's frame rate (``default_fps`` or the JSON's).
        duration: seconds (only used by fixed-length features).
        num_features: features in the file, after resampling onto a reference grid but before downsampling.
    """
    stride, frames = float(dataset_cfg.feat_stride), float(dataset_cfg.num_frames)
    resized = resizes_to_max_seq_len(dataset_cfg)
    if stride > 0 and not resized:
        # variable-length features; downsampling by r keeps every r-th feature, so the stride grows r-fold
        return FeatureGrid(stride * dataset_cfg.downsample_rate, frames, float(fps))
    if stride > 0:
        # AF HEAD "case 2": variable-length input resized to max_seq_len steps covering all clips
        new_stride = ((num_features - 1) * stride + frames) / dataset_cfg.max_seq_len
        return FeatureGrid(new_stride, new_stride, float(fps))
    # fixed-length features spread over the whole video
    seq_len = dataset_cfg.max_seq_len if resized else num_features
    new_stride = duration * fps / seq_len
    if dataset_cfg.fixed_length_num_frames == "stride_x_frames":  # the fork: an 8-cell shift at num_frames 16
        new_frames = new_stride * frames
    else:  # AF HEAD: each feature covers exactly one grid step
        new_frames = new_stride
    return FeatureGrid(new_stride, new_frames, float(fps))


def resample_features(feats: torch.Tensor, length: int) -> torch.Tensor:
    """Linearly resample ``feats`` [C, T_in] to [C, length] (align_corners=False), as InternVideo does."""
    if feats.dim() != 2:
        raise ValueError(f"resample_features expects [C, T], got shape {tuple(feats.shape)}")
    if feats.shape[1] == length:
        return feats
    if length <= 0 or feats.shape[1] == 0:
        raise ValueError(f"cannot resample {feats.shape[1]} features to length {length}")
    return F.interpolate(feats[None], size=int(length), mode="linear", align_corners=False)[0]


def resampling_source_positions(source_length: int, target_length: int) -> np.ndarray:
    """For each of the ``target_length`` outputs of :func:`resample_features`, the fractional input index it reads
    (``(i + 0.5) * T_in / T_out - 0.5``, clamped to [0, T_in - 1])."""
    i = np.arange(target_length, dtype=np.float64)
    src = (i + 0.5) * source_length / target_length - 0.5
    return np.clip(src, 0.0, source_length - 1)


def resampling_time_shift(source_grid: FeatureGrid, source_length: int, target_grid: FeatureGrid,
                          target_length: int) -> np.ndarray:
    """Seconds by which each resampled feature is displaced: the time it was read at on the source grid minus the
    time its target grid point claims. Resampling by length alone ignores the grids' offsets and strides, so this is
    not zero in general; it shows how far InternVideo's MAE-onto-I3D/TSP resampling moves features in time."""
    read_at = source_grid.grid_to_seconds(resampling_source_positions(source_length, target_length))
    return read_at - target_grid.clip_centres(target_length)
