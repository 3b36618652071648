"""Pre-NMS candidates, cached per video, so that post-processing can be replayed with other NMS settings.

The model's inference is: decode every feature step into candidate segments (grid units), then NMS, then
seconds = (grid · feat_stride + 0.5 · num_frames) / fps, clipped to [0, duration] (SPEC §D.11). Only the first
step needs the network; caching its output lets the explorer show what NMS does in milliseconds.

Candidates come from a trained model (:func:`collect_candidates`), from a file written earlier
(:func:`save_candidates` / :func:`load_candidates`, one ``.npz``), or — for demos and tests without a run — from
ground truth (:func:`synthetic_candidates`): clusters of jittered copies around each action, some with the wrong
class, plus background, roughly what a detector emits before NMS.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import numpy as np

from tal_kit.atomic import atomic_path
from tal_kit.data.grid import FeatureGrid
from tal_kit.viz.timeline import VideoDetections

__all__ = ["VideoCandidates", "collect_candidates", "save_candidates", "load_candidates", "synthetic_candidates",
           "apply_nms", "detections_from_candidates", "nms_settings"]


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


def nms_settings(test_cfg: Any = None, **overrides: Any) -> dict:
    """Keyword arguments of ``tal_kit.ops.batched_nms`` from a ``cfg.test_cfg`` (or defaults), with overrides."""
    from tal_kit.ops import params_from_test_cfg

    if test_cfg is None:
        from tal_kit.config import TestConfig

        test_cfg = TestConfig()
    settings = params_from_test_cfg(test_cfg)
    unknown = set(overrides) - set(settings)
    if unknown:
        raise ValueError(f"nms_settings: unknown setting(s) {sorted(unknown)}; known: {sorted(settings)}")
    settings.update(overrides)
    return settings


def apply_nms(candidates: VideoCandidates, settings: Mapping[str, Any], backend: str = "auto") -> VideoDetections:
    """NMS on one video's candidates, then seconds and clipping, as the model's post-processing does."""
    import torch

    from tal_kit.ops import batched_nms

    segments, scores, labels = batched_nms(torch.as_tensor(candidates.segments, dtype=torch.float32),
                                           torch.as_tensor(candidates.scores, dtype=torch.float32),
                                           torch.as_tensor(candidates.labels, dtype=torch.int64),
                                           backend=backend, **settings)
    seconds = candidates.grid.grid_to_seconds(segments.double().numpy())
    seconds = np.clip(seconds, 0.0, candidates.duration)
    return VideoDetections(seconds.reshape(-1, 2), scores.double().numpy(), labels.numpy().astype(np.int64))


def detections_from_candidates(candidates: Mapping[str, VideoCandidates], settings: Mapping[str, Any]) -> Any:
    """A ``Detections`` table: :func:`apply_nms` on every video."""
    from tal_kit.detections import Detections

    outputs = []
    for video_id, cand in candidates.items():
        det = apply_nms(cand, settings)
        outputs.append({"video_id": video_id, "segments": det.segments, "scores": det.scores, "labels": det.labels})
    return Detections.from_video_dicts(outputs)


def collect_candidates(model: Any, dataset: Any, *, device: Any = "cpu",
                       video_ids: Optional[Iterable[str]] = None) -> dict[str, VideoCandidates]:
    """Run ``model`` (eval mode, no grad) over ``dataset`` (a ``TALDataset``) and keep each video's candidates.

    Uses ``model(feats, mask)`` and ``model.candidates(output, 0)`` (pre-NMS decoding, SPEC §D.11 step 1).
    """
    import torch

    from tal_kit.data.dataset import collate_videos

    wanted = None if video_ids is None else set(video_ids)
    cfg = dataset.cfg
    cache: dict[str, VideoCandidates] = {}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for index in range(len(dataset)):
                if wanted is not None and dataset.videos[index].video_id not in wanted:
                    continue
                item = dataset[index]
                batch = collate_videos([item], cfg.dataset.max_seq_len, cfg.max_div_factor, is_training=False)
                output = model(batch["feats"].to(device), batch["mask"].to(device))
                cand = model.candidates(output, 0)
                cache[item["video_id"]] = VideoCandidates(
                    item["video_id"], cand["segments"].float().cpu().numpy().reshape(-1, 2),
                    cand["scores"].float().cpu().numpy(), cand["labels"].long().cpu().numpy(), float(item["fps"]),
                    float(item["feat_stride"]), float(item["num_frames"]), float(item["duration"]))
    finally:
        model.train(was_training)
    return cache


_FIELDS = ("fps", "feat_stride", "num_frames", "duration")


def save_candidates(path: Union[str, Path], candidates: Mapping[str, VideoCandidates]) -> Path:
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


def load_candidates(path: Union[str, Path]) -> dict[str, VideoCandidates]:
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


def synthetic_candidates(ground_truth: Sequence[Any], num_classes: int, *, seed: int = 0,
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
