"""Clip windows slid over a stream of frames in memory: the recipe's grid, with constant memory.

Clip k holds frames k·stride … k·stride + clip_len − 1, for start indices exactly ``range(0, N − clip_len + 1,
stride)``: only whole windows, so T = ⌊(N − clip_len)/stride⌋ + 1 clips (none when N < clip_len). Clip k's centre
time on a constant-rate grid is (k·stride + clip_len/2)/fps (ActionFormer's convention, EXTRACTION.md §3); here it is
taken from the presentation times of the clip's own frames, which equals that formula for constant-rate video.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Iterable, Iterator

import torch

__all__ = ["Clip", "slide_clips", "num_clips", "clip_starts"]


@dataclass(frozen=True)
class Clip:
    """One window: ``pixels`` [3, clip_len, S, S]; ``start`` its first frame index; ``start_time`` and
    ``centre_time`` in seconds (centre = midpoint between the first frame's start and the last frame's end)."""

    index: int
    start: int
    start_time: float
    centre_time: float
    pixels: torch.Tensor


def num_clips(num_frames: int, clip_len: int, stride: int) -> int:
    """T = ⌊(N − clip_len)/stride⌋ + 1 for N ≥ clip_len, else 0."""
    return 0 if num_frames < clip_len else (num_frames - clip_len) // stride + 1


def clip_starts(num_frames: int, clip_len: int, stride: int) -> range:
    """The reference's start indices, ``range(0, N − clip_len + 1, stride)``."""
    return range(0, max(num_frames - clip_len + 1, 0), stride)


def slide_clips(frames: Iterable[tuple[float, torch.Tensor]], clip_len: int, stride: int,
                frame_interval: float) -> Iterator[Clip]:
    """Yield the clips of a stream of ``(time, preprocessed frame [3, S, S])`` pairs, holding at most ``clip_len``
    frames. ``frame_interval`` (1/fps) is the time one frame stays on screen, used for the last frame's end."""
    if clip_len < 1 or stride < 1:
        raise ValueError(f"clip_len and stride must be >= 1, got {clip_len} and {stride}")
    window: deque[tuple[float, torch.Tensor]] = deque(maxlen=clip_len)
    k = 0
    for i, item in enumerate(frames):
        window.append(item)
        start = i - clip_len + 1
        if start >= 0 and start % stride == 0:
            first_time, last_time = window[0][0], window[-1][0]
            pixels = torch.stack([f for _, f in window], dim=1)
            yield Clip(k, start, first_time, 0.5 * (first_time + last_time + frame_interval), pixels)
            k += 1
