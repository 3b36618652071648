"""Temporal IoU of segments: the one definition every stage uses (the evaluator's matching, DETAD's analyses, the
dataset statistics).

**Zero-length pairs** (the one statement of the rule). When a zero-length segment meets another zero-length segment,
the union is 0 and the official ActivityNet ``segment_iou`` gives NaN. The evaluator keeps NaN
(`tal_kit.evaluation.matching`: it then matches such a pair first and at every threshold, as the official code does),
so that it gives the official numbers on any input. Where a tIoU is a statistic rather than a matching key (DETAD's
error analysis, the overlaps of a dataset's annotations) the pair counts as not overlapping: those callers pass
``zero_union=0.0``.
"""
from __future__ import annotations

import numpy as np

__all__ = ["segment_tiou"]


def segment_tiou(det_starts: np.ndarray, det_ends: np.ndarray, gt_starts: np.ndarray, gt_ends: np.ndarray, *,
                 zero_union: float = np.nan) -> np.ndarray:
    """Element-wise temporal IoU (the arguments broadcast: pass ``a[:, None, 0]`` and ``b[None, :, 0]`` for every
    pair), computed as the official ``segment_iou``: the intersection is clipped at 0 and the union is
    (ground-truth length + detection length) - intersection, no epsilon.

    Where the union is not positive (two zero-length segments) the result is ``zero_union``: NaN, the official
    value, by default; see the module docstring for who passes 0.
    """
    intersection = np.clip(np.minimum(det_ends, gt_ends) - np.maximum(det_starts, gt_starts), 0.0, None)
    union = (gt_ends - gt_starts) + (det_ends - det_starts) - intersection
    with np.errstate(divide="ignore", invalid="ignore"):
        tiou = intersection / union
    if np.isnan(zero_union):
        return tiou
    return np.where(union > 0, tiou, zero_union)
