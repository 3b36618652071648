"""The temporal "points" of the feature pyramid (SPEC §D.3).

Level l (stride s_l = scale_factor^l) has one point per step, at input-grid positions 0, s_l, 2 s_l, ... (no half-step
offset). Each point carries the range of action extents it is responsible for, in input-grid units. Points are made
for the lengths at hand, so unlike upstream's fixed buffer (max_seq_len x max_buffer_len_factor) any video length
works; the values are the same.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


def pyramid_points(lengths: Sequence[int], strides: Sequence[float], regression_range: Sequence[Sequence[float]],
                   device: torch.device | str | None = None) -> Tensor:
    """[sum T_l, 4] float32 rows (t, range_low, range_high, stride), level after level."""
    if not (len(lengths) == len(strides) == len(regression_range)):
        raise ValueError(f"{len(lengths)} levels but {len(strides)} strides and {len(regression_range)} ranges")
    rows = []
    for length, stride, (low, high) in zip(lengths, strides, regression_range):
        t = torch.arange(length, dtype=torch.float32, device=device) * float(stride)
        fixed = torch.tensor([low, high, stride], dtype=torch.float32, device=device).expand(length, 3)
        rows.append(torch.cat([t[:, None], fixed], dim=1))
    return torch.cat(rows, dim=0)
