"""Greedy matching of detections to ground truth, as the official ActivityNet evaluation does it — vectorised.

The official ``compute_average_precision_detection`` (activitynet/ActivityNet, Evaluation/eval_detection.py; SPEC §F)
works per class: it ranks the class's detections by score and, one detection at a time and per tIoU threshold,
walks the ground truth of the detection's video in descending tIoU; the first segment below the threshold ends the
walk (false positive), a segment already matched at this threshold is skipped, any other one becomes this
detection's match (true positive) and is locked. In other words each detection takes its *best still-unmatched*
segment among those with tIoU >= threshold.

**Ties.** The official code ranks with ``np.argsort(values)[::-1]``; NumPy's default sort is not stable (and differs
between versions and CPUs), so the official result on tied scores or tied tIoUs is not defined. tal_kit's rule,
independent of the NumPy version:

* detections: by score, highest first; equal scores keep table order (the row listed first ranks first);
* ground truth, for one detection: by tIoU, highest first; equal tIoUs keep annotation order.

**Zero-length pairs** (the one statement of the rule; every evaluation tIoU is :func:`segment_tiou`). When a
zero-length detection meets a zero-length segment, the union is 0 and the official tIoU is NaN; NaN sorts first in
the descending order and never compares below a threshold, so such a segment is matched first and at every
threshold. The evaluator keeps that behaviour, to give the official numbers on any input. Where a tIoU is a
statistic rather than a matching key (DETAD's error analysis) the pair counts as not overlapping: those callers
pass ``zero_union=0.0``.

**How it is vectorised.** All (detection, ground-truth) pairs of the same video and class are listed once with their
tIoU. The sequential greedy walk is then resolved in rounds over every (threshold, video, class) at once: each
unresolved detection *proposes* its best available segment, each available segment is *claimed* by its
earliest-ranked unresolved candidate detection, and a proposal that is also the claim is final (no detection ranked
earlier can still take that segment, and taking segments away never changes a detection's best remaining choice).
Every round settles at least the earliest detection of each group, so the result equals the sequential walk; in
practice a handful of rounds suffice.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["segment_tiou", "rank_order", "CandidatePairs", "candidate_pairs", "greedy_match"]


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


def rank_order(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Row indices grouped by label (ascending), and within a label by score descending, ties in row order."""
    # lexsort is stable and sorts by the last key first; -score puts high scores first (scores are finite).
    return np.lexsort((-scores, labels))


@dataclass(frozen=True)
class CandidatePairs:
    """Every (detection, ground-truth) pair in the same video and class, sorted by detection rank, then by the
    detection's preference for the segment (tIoU descending, NaN first, ties in annotation order)."""

    det: np.ndarray  # int64 [P], detection position in rank order
    gt: np.ndarray  # int64 [P], ground-truth row
    tiou: np.ndarray  # float64 [P]


def candidate_pairs(det_group: np.ndarray, det_starts: np.ndarray, det_ends: np.ndarray, gt_group: np.ndarray,
                    gt_starts: np.ndarray, gt_ends: np.ndarray) -> CandidatePairs:
    """All pairs sharing a group id (one id per video and class).

    Detections are given in rank order (their position is their rank key); ground-truth rows in annotation order.
    """
    gt_order = np.argsort(gt_group, kind="stable")
    sorted_groups = gt_group[gt_order]
    first = np.searchsorted(sorted_groups, det_group, side="left")
    counts = np.searchsorted(sorted_groups, det_group, side="right") - first
    det = np.repeat(np.arange(len(det_group), dtype=np.int64), counts)
    offset_in_group = np.arange(len(det), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    gt = gt_order[np.repeat(first, counts) + offset_in_group]
    tiou = segment_tiou(det_starts[det], det_ends[det], gt_starts[gt], gt_ends[gt])
    # Pairs are generated by detection, each detection's segments in annotation order; a stable sort on
    # (detection, -tIoU with NaN as -inf) keeps annotation order among equal tIoUs.
    preference = np.lexsort((np.where(np.isnan(tiou), -np.inf, -tiou), det))
    return CandidatePairs(det[preference], gt[preference], tiou[preference])


def greedy_match(pairs: CandidatePairs, tiou_thresholds: np.ndarray, num_dets: int, num_gt: int) -> np.ndarray:
    """The official greedy matching at every threshold. Returns ``matched [T, num_dets]``: the ground-truth row
    each detection (in rank order) is matched to, or -1 for a false positive."""
    num_thresholds = len(tiou_thresholds)
    matched = np.full(num_thresholds * num_dets, -1, dtype=np.int64)
    # One entry per (threshold, eligible pair); a pair is eligible when its tIoU is not below the threshold.
    det_keys, gt_keys, gt_rows = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for t, threshold in enumerate(tiou_thresholds):
        eligible = ~(pairs.tiou < threshold)  # NaN stays eligible, as in the official comparison
        det_keys.append(t * num_dets + pairs.det[eligible])
        gt_keys.append(t * num_gt + pairs.gt[eligible])
        gt_rows.append(pairs.gt[eligible])
    det_key, gt_key, gt_row = np.concatenate(det_keys), np.concatenate(gt_keys), np.concatenate(gt_rows)
    # by_det: entries by (threshold, detection rank, preference) -- the construction order;
    # by_gt: entries by (threshold, segment, detection rank).
    by_det = np.arange(len(det_key))
    by_gt = np.lexsort((det_key, gt_key))
    locked = np.zeros(num_thresholds * num_gt, dtype=bool)
    resolved = np.zeros(num_thresholds * num_dets, dtype=bool)
    is_proposal = np.zeros(len(det_key), dtype=bool)
    while by_det.size:
        keys = det_key[by_det]
        proposals = by_det[np.r_[True, keys[1:] != keys[:-1]]]
        keys = gt_key[by_gt]
        claims = by_gt[np.r_[True, keys[1:] != keys[:-1]]]
        is_proposal[proposals] = True
        winners = claims[is_proposal[claims]]
        is_proposal[proposals] = False
        matched[det_key[winners]] = gt_row[winners]
        locked[gt_key[winners]] = True
        resolved[det_key[winners]] = True
        by_det = by_det[~(locked[gt_key[by_det]] | resolved[det_key[by_det]])]
        by_gt = by_gt[~(locked[gt_key[by_gt]] | resolved[det_key[by_gt]])]
    return matched.reshape(num_thresholds, num_dets)
