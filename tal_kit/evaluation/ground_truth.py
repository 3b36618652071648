"""Ground truth for evaluation: the evaluated videos' segments as flat arrays, with the optional filtering.

Which ground-truth segments count is the one place where the official ActivityNet evaluation and ActionFormer's
``ANETdetection`` differ (SPEC §F.2.3); ``dedup_gt`` picks the variant:

* ``False`` / ``"none"`` — the official ``eval_detection.py``: every segment counts, duplicates and zero-length
  segments included.
* ``"duplicates"`` — InternVideo's fork of ActionFormer (AF@5d8df9f): a segment is dropped when an earlier kept
  segment of the same video has the same label and both endpoints within 1e-3 s.
* ``True`` / ``"actionformer"`` — ActionFormer HEAD and the PyPI ``actionformer`` package: as ``"duplicates"``,
  and segments shorter than 1e-3 s are dropped as well.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from tal_kit.data.annotations import DUPLICATE_TOLERANCE, VideoRecord, remove_duplicate_segments

__all__ = ["GroundTruth", "DEDUP_MODES", "dedup_mode"]

DEDUP_MODES = ("none", "duplicates", "actionformer")


def dedup_mode(dedup_gt: bool | str) -> str:
    """Normalise the ``dedup_gt`` option to one of :data:`DEDUP_MODES`."""
    if dedup_gt is False or dedup_gt is None:
        return "none"
    if dedup_gt is True:
        return "actionformer"
    if dedup_gt in DEDUP_MODES:
        return str(dedup_gt)
    raise ValueError(f"dedup_gt must be False, True or one of {DEDUP_MODES}, got {dedup_gt!r}")


def _kept_mask(video: np.ndarray, starts: np.ndarray, ends: np.ndarray, labels: np.ndarray,
               mode: str) -> np.ndarray:
    """Which rows count under ``mode`` (rows grouped by video, annotation order within a video)."""
    keep = np.ones(len(labels), dtype=bool)
    if mode == "none":
        return keep
    if mode == "actionformer":
        # A short segment is never kept, so it cannot shadow a later duplicate: dropping it first is equivalent.
        keep &= (ends - starts) >= DUPLICATE_TOLERANCE
    # The duplicate rule is greedy in annotation order, so it runs per video; only videos where two segments of one
    # label start within the tolerance can lose one (such starts are neighbours once sorted by video/label/start).
    rows = np.flatnonzero(keep)
    order = rows[np.lexsort((starts[rows], labels[rows], video[rows]))]
    close = ((video[order[1:]] == video[order[:-1]]) & (labels[order[1:]] == labels[order[:-1]])
             & (starts[order[1:]] - starts[order[:-1]] <= DUPLICATE_TOLERANCE))
    for v in np.unique(video[order[1:][close]]):
        in_video = rows[video[rows] == v]
        segments = np.stack([starts[in_video], ends[in_video]], axis=1)
        kept = in_video[remove_duplicate_segments(segments, labels[in_video])]
        keep[in_video] = False
        keep[kept] = True
    return keep


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """The evaluated videos (``video_ids``, including videos without segments) and their counted segments, one row
    each, grouped by video in the given order and in annotation order within a video."""

    video_ids: np.ndarray  # str [V], every evaluated video
    video: np.ndarray  # int64 [M], row -> index into video_ids
    starts: np.ndarray  # float64 [M], seconds
    ends: np.ndarray  # float64 [M]
    labels: np.ndarray  # int64 [M]
    source_index: np.ndarray  # int64 [M], the segment's position in its VideoRecord (before filtering)

    @classmethod
    def from_records(cls, records: Sequence[VideoRecord], dedup_gt: bool | str = False) -> "GroundTruth":
        """Flatten :class:`VideoRecord` objects (e.g. ``AnnotationDB.select(["Test"])``), filtering per ``dedup_gt``."""
        mode = dedup_mode(dedup_gt)
        video_ids = [r.video_id for r in records]
        if len(set(video_ids)) != len(video_ids):
            dup = next(v for v in video_ids if video_ids.count(v) > 1)
            raise ValueError(f"ground truth lists video {dup!r} more than once")
        segments = [np.asarray(r.segments, dtype=np.float64).reshape(-1, 2) for r in records]
        labels = [np.asarray(r.labels, dtype=np.int64).reshape(-1) for r in records]
        counts = np.array([len(s) for s in segments], dtype=np.int64)
        for record, seg, lab in zip(records, segments, labels):
            if len(seg) != len(lab):
                raise ValueError(f"video {record.video_id!r}: {len(seg)} segments but {len(lab)} labels")
        segments = np.concatenate(segments) if segments else np.zeros((0, 2))
        labels = np.concatenate(labels) if labels else np.zeros(0, np.int64)
        video = np.repeat(np.arange(len(records), dtype=np.int64), counts)
        source = np.arange(len(labels), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
        bad = ~np.isfinite(segments).all(axis=1) | (segments[:, 1] < segments[:, 0])
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"ground truth video {video_ids[video[i]]!r}, segment {source[i]}: "
                             f"{segments[i].tolist()} is not a finite [start, end] with start <= end")
        keep = _kept_mask(video, segments[:, 0], segments[:, 1], labels, mode)
        return cls(np.array(video_ids, dtype=str), video[keep], segments[keep, 0], segments[keep, 1],
                   labels[keep], source[keep])

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def class_ids(self) -> np.ndarray:
        """The label ids with at least one segment: the classes the mean AP is taken over (as officially)."""
        return np.unique(self.labels)
