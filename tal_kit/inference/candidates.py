"""Pre-NMS candidates, cached per video, so that post-processing can be replayed with other NMS settings.

The model's inference is: decode every feature step into candidate segments (grid units), then NMS, then
seconds = (grid · feat_stride + 0.5 · num_frames) / fps, clipped to [0, duration] (SPEC §D.11). Only the first
step needs the network; caching its output lets the explorer show what NMS does in milliseconds
(:mod:`tal_kit.inference.nms` replays it).

Candidates come from a trained model (:func:`tal_kit.inference.predict.predict` with ``keep_candidates``), from a
file written earlier (:func:`save_candidates` / :func:`load_candidates`, one ``.npz``), or — for demos and tests
without a run — from ground truth (:func:`synthetic_candidates`): clusters of jittered copies around each action,
some with the wrong class, plus background, roughly what a detector emits before NMS.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from tal_kit.atomic import atomic_path
from tal_kit.data.grid import FeatureGrid

if TYPE_CHECKING:
    from tal_kit.data.annotations import VideoRecord

__all__ = ["VideoCandidates", "VideoDetections", "save_candidates", "load_candidates", "synthetic_candidates"]


@dataclass(frozen=True)
class VideoCandidates:
    """One video's pre-NMS candidates (``segments`` [M, 2] in grid units) and its grid, to convert to seconds."""

    video_id: str
    segments: np.ndarray  # float32 [M, 2], grid units
    scores: np.ndarray  # float32 [M]
    labels: np.ndarray  # int64 [M]
    fps: float
    feat_stride: float
    num_frames: float
    duration: float

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def grid(self) -> FeatureGrid:
        return FeatureGrid(self.feat_stride, self.num_frames, self.fps)


@dataclass(frozen=True)
class VideoDetections:
    """One video's detections as plain arrays: ``segments`` [N, 2] seconds, ``scores`` [N], ``labels`` [N]."""

    segments: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def take(self, index: np.ndarray) -> VideoDetections:
        return VideoDetections(self.segments[index], self.scores[index], self.labels[index])


_FIELDS = ("fps", "feat_stride", "num_frames", "duration")


def save_candidates(path: str | Path, candidates: Mapping[str, VideoCandidates]) -> Path:
    """Write candidates of many videos to one ``.npz`` (rows concatenated, per-video offsets), atomically."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"save_candidates: {path} must end in .npz")
    videos = list(candidates.values())
    counts = np.asarray([len(c) for c in videos], np.int64)
    arrays = {
        "video_ids": np.asarray([c.video_id for c in videos], dtype=str),
        "offsets": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        "segments": np.concatenate([c.segments for c in videos]).astype(np.float32) if videos else np.zeros((0, 2)),
        "scores": np.concatenate([c.scores for c in videos]).astype(np.float32) if videos else np.zeros(0),
        "labels": np.concatenate([c.labels for c in videos]).astype(np.int64) if videos else np.zeros(0, np.int64),
    }
    for field in _FIELDS:
        arrays[field] = np.asarray([getattr(c, field) for c in videos], np.float64)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)
    return path


def load_candidates(path: str | Path) -> dict[str, VideoCandidates]:
    """Read a file written by :func:`save_candidates`; errors name the file and the missing field."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"candidate file {path} does not exist")
    with np.load(path, allow_pickle=False) as data:
        missing = [k for k in ("video_ids", "offsets", "segments", "scores", "labels", *_FIELDS) if k not in data]
        if missing:
            raise ValueError(f"{path}: not a candidate file, missing field(s) {', '.join(missing)}")
        arrays = {k: data[k] for k in data.files}
    offsets = arrays["offsets"]
    if len(offsets) != len(arrays["video_ids"]) + 1 or offsets[-1] != len(arrays["scores"]):
        raise ValueError(f"{path}: field 'offsets' does not match {len(arrays['video_ids'])} videos and "
                         f"{len(arrays['scores'])} candidate rows")
    cache = {}
    for v, video_id in enumerate(arrays["video_ids"]):
        rows = slice(offsets[v], offsets[v + 1])
        cache[str(video_id)] = VideoCandidates(str(video_id), arrays["segments"][rows], arrays["scores"][rows],
                                               arrays["labels"][rows], *(float(arrays[f][v]) for f in _FIELDS))
    return cache


def synthetic_candidates(ground_truth: Sequence[VideoRecord], num_classes: int, *, seed: int = 0,
                         copies_per_action: int = 8, wrong_label_rate: float = 0.15,
                         background_per_minute: float = 6.0, miss_rate: float = 0.1) -> dict[str, VideoCandidates]:
    """Detector-like pre-NMS candidates made from ground truth (for demos and tests when no model has run).

    Per action (unless missed, with probability ``miss_rate``): ``copies_per_action`` copies whose centre and
    length are jittered by up to ~30% of the length, scores falling with the jitter; a share of them carries a
    wrong class. Plus background candidates at random places (``background_per_minute``), with low scores.
    Segments are in seconds (the grid is the identity: feat_stride 1, num_frames 0, fps 1).
    """
    rng = np.random.default_rng(seed)
    cache = {}
    for record in ground_truth:
        segs, scores, labels = [], [], []
        duration = float(record.duration)
        for (start, end), label in zip(np.asarray(record.segments, np.float64).reshape(-1, 2), record.labels):
            if rng.random() < miss_rate:
                continue
            length = max(end - start, 1e-3)
            quality = rng.uniform(0.5, 1.0)  # how confident the detector is about this action overall
            shift = rng.normal(0.0, 0.15, copies_per_action) * length
            stretch = np.exp(rng.normal(0.0, 0.2, copies_per_action))
            centre, half = (start + end) / 2 + shift, length * stretch / 2
            jitter = np.abs(shift) / length + np.abs(np.log(stretch))
            segs.append(np.stack([centre - half, centre + half], axis=1))
            scores.append(np.clip(quality * np.exp(-2.0 * jitter) * rng.uniform(0.7, 1.0, copies_per_action),
                                  0.002, 0.99))
            wrong = rng.random(copies_per_action) < wrong_label_rate
            lab = np.full(copies_per_action, int(label))
            if num_classes > 1:
                lab[wrong] = (int(label) + rng.integers(1, num_classes, wrong.sum())) % num_classes
            labels.append(lab)
        num_background = rng.poisson(background_per_minute * duration / 60.0)
        if num_background:
            centre = rng.uniform(0.0, duration, num_background)
            half = np.exp(rng.uniform(np.log(0.5), np.log(max(duration / 8, 1.0)), num_background)) / 2
            segs.append(np.stack([centre - half, centre + half], axis=1))
            scores.append(rng.uniform(0.002, 0.35, num_background))
            labels.append(rng.integers(0, num_classes, num_background))
        cat = (lambda parts, shape, dtype: np.concatenate(parts).astype(dtype) if parts else np.zeros(shape, dtype))
        cache[record.video_id] = VideoCandidates(
            record.video_id, cat(segs, (0, 2), np.float32), cat(scores, (0,), np.float32),
            cat(labels, (0,), np.int64), fps=1.0, feat_stride=1.0, num_frames=0.0, duration=duration)
    return cache
