"""Grouping evaluation videos into batches whose detections equal one video at a time (SPEC §D.11).

A video's outputs at its real steps do not change when it is padded further, as long as every pyramid level keeps
the same "padding after it or not" (see `ActionFormer.exact_at_length`). Videos of similar length are therefore
batched together, padded to the longest one's `inference_length`; a video that the longer length would change gets
a batch of its own kind instead.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from .actionformer import ActionFormer


def plan_batches(lengths: Sequence[int], model: ActionFormer, max_videos: int, max_steps: int) -> list[list[int]]:
    """Positions into ``lengths`` grouped into batches, longest videos first.

    Each batch has at most ``max_videos`` videos and at most ``max_steps`` padded steps in all (a longer video gets a
    batch of its own), and every video in it is exact at the batch's padded length, the `inference_length` of its
    longest video. ``model`` provides ``inference_length`` and ``exact_at_length`` (an ActionFormer).
    """
    if max_videos < 1:
        raise ValueError(f"max_videos must be at least 1, got {max_videos}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    length = 0
    for position in order:
        num_steps = lengths[position]
        fits = (current and len(current) < max_videos and (len(current) + 1) * length <= max_steps
                and model.exact_at_length(num_steps, length))
        if fits:
            current.append(position)
            continue
        if current:
            batches.append(current)
        current, length = [position], model.inference_length(num_steps)
    if current:
        batches.append(current)
    return batches
