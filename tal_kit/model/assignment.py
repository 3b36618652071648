"""Label assignment: which pyramid points are positives for which ground-truth segment (SPEC §D.5).

A point at time t on a level with stride s is a positive for segment [a, b] when
  1. it lies strictly inside the segment's centre region [max(c - r*s, a), min(c + r*s, b)] (c the centre,
     r = center_sample_radius), or strictly inside the segment with center_sample = "none"; and
  2. the larger of its distances to the segment's ends, max(t - a, b - t), lies in the level's regression range
     [low, high] (both ends inclusive), so each level handles actions of its own scale.
If several segments qualify, the shortest wins the regression target; every qualifying segment within 1e-3 of the
shortest length adds its class (co-occurring labels such as CliffDiving + Diving give a multi-label target).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


@torch.no_grad()
def assign_targets(points: Tensor, segments: Tensor, labels: Tensor, num_classes: int, *,
                   center_sample: str = "radius", center_sample_radius: float = 1.5) -> tuple[Tensor, Tensor]:
    """Targets for one video.

    points: [P, 4] (t, range_low, range_high, stride); segments: [N, 2] in input-grid units; labels: [N] int64.
    Returns (cls_targets [P, K] float in {0, 1}, reg_targets [P, 2] = (t - a, b - t) / stride of the assigned
    segment; meaningless where a point has no class, and all zeros for a video without segments).
    """
    num_points = points.shape[0]
    if segments.numel() == 0:
        return points.new_zeros(num_points, num_classes), points.new_zeros(num_points, 2)
    segments = segments.to(points.dtype)
    t, low, high, stride = (points[:, i:i + 1] for i in range(4))  # each [P, 1]
    start, end = segments[:, 0][None], segments[:, 1][None]  # each [1, N]
    left, right = t - start, end - t  # [P, N]

    if center_sample == "radius":
        centre = 0.5 * (start + end)
        inside = (t - torch.maximum(centre - center_sample_radius * stride, start) > 0) & \
                 (torch.minimum(centre + center_sample_radius * stride, end) - t > 0)
    elif center_sample == "none":
        inside = torch.minimum(left, right) > 0
    else:
        raise ValueError(f"train_cfg.center_sample must be 'radius' or 'none', got {center_sample!r}")
    reach = torch.maximum(left, right)
    in_range = (reach >= low) & (reach <= high)

    lengths = (end - start).expand(num_points, -1).masked_fill(~(inside & in_range), float("inf"))
    min_len, nearest = lengths.min(dim=1)
    matches = (lengths <= min_len[:, None] + 1e-3) & torch.isfinite(lengths)
    cls_targets = (matches.to(points.dtype) @ F.one_hot(labels, num_classes).to(points.dtype)).clamp_(0.0, 1.0)

    rows = torch.arange(num_points, device=points.device)
    reg_targets = torch.stack([left[rows, nearest], right[rows, nearest]], dim=1) / stride
    return cls_targets, reg_targets
