"""Dataset statistics for inspection (notebook 02): classes, instance counts and durations, instances per video,
how much of each video is action (coverage), and how often ground-truth segments overlap.

Everything works on lists of :class:`~tal_kit.data.annotations.VideoRecord`, so it applies equally to the demo
data and to real annotation files.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from tal_kit.data.annotations import VideoRecord
from tal_kit.segments import segment_tiou

if TYPE_CHECKING:
    from tal_kit.config import DatasetConfig

__all__ = ["segment_union_length", "coverage", "instance_lengths_in_steps", "OverlapStats", "overlap_stats",
           "SubsetSummary", "summarize", "class_statistics", "instance_durations", "pyramid_level_shares"]


def segment_union_length(segments: np.ndarray) -> float:
    """Total length covered by the union of [start, end] segments (overlaps counted once)."""
    if len(segments) == 0:
        return 0.0
    order = np.argsort(segments[:, 0], kind="stable")
    total, cur_start, cur_end = 0.0, segments[order[0], 0], segments[order[0], 1]
    for s, e in segments[order[1:]]:
        if s > cur_end:
            total += cur_end - cur_start
            cur_start, cur_end = s, e
        else:
            cur_end = max(cur_end, e)
    return float(total + cur_end - cur_start)


def coverage(video: VideoRecord) -> float:
    """Fraction of the video's duration inside at least one action (segments clipped to [0, duration])."""
    clipped = np.clip(video.segments, 0.0, video.duration)
    return segment_union_length(clipped) / video.duration


@dataclass(frozen=True)
class OverlapStats:
    """Pairs of ground-truth segments of the same video that overlap (temporal IoU > 0)."""

    pairs: int  # overlapping pairs
    same_label: int  # ... of which share the label
    different_label: int  # ... of which have different labels (co-occurring actions)
    identical_different_label: int  # same segment, different labels (e.g. THUMOS CliffDiving + Diving)
    videos_with_overlap: int
    max_tiou: float  # largest IoU between two distinct segments


def overlap_stats(videos: Sequence[VideoRecord]) -> OverlapStats:
    pairs = same = different = identical = with_overlap = 0
    max_tiou = 0.0
    for video in videos:
        seg, lab = video.segments, video.labels
        if len(seg) < 2:
            continue
        tiou = segment_tiou(seg[:, None, 0], seg[:, None, 1], seg[None, :, 0], seg[None, :, 1], zero_union=0.0)
        i, j = np.triu_indices(len(seg), k=1)
        hit = tiou[i, j] > 0  # the same as a positive intersection (a positive intersection has a positive union)
        if not hit.any():
            continue
        with_overlap += 1
        pairs += int(hit.sum())
        same_pair = lab[i] == lab[j]
        same += int((hit & same_pair).sum())
        different += int((hit & ~same_pair).sum())
        identical += int((hit & ~same_pair & np.isclose(tiou[i, j], 1.0)).sum())
        max_tiou = max(max_tiou, float(tiou[i, j][hit].max()))
    return OverlapStats(pairs, same, different, identical, with_overlap, max_tiou)


def instance_durations(videos: Sequence[VideoRecord]) -> np.ndarray:
    """All instance durations (seconds) of these videos."""
    if not videos:
        return np.zeros(0)
    return np.concatenate([v.segments[:, 1] - v.segments[:, 0] for v in videos])


@dataclass(frozen=True)
class SubsetSummary:
    subset: str
    videos: int
    hours: float
    segments: int
    classes: int  # classes with at least one instance
    segments_per_video: tuple[float, float, int]  # mean, median, max
    duration_s: tuple[float, float, float, float]  # instance duration: mean, median, min, max
    video_duration_s: tuple[float, float, float]  # mean, min, max
    mean_coverage: float
    overlaps: OverlapStats

    def as_row(self) -> dict[str, str]:
        return {"subset": self.subset, "videos": str(self.videos), "hours": f"{self.hours:.1f}",
                "segments": str(self.segments), "classes": str(self.classes),
                "per video (mean/median/max)": "{:.1f} / {:.0f} / {}".format(*self.segments_per_video),
                "instance s (mean/median/min/max)": "{:.2f} / {:.2f} / {:.2f} / {:.1f}".format(*self.duration_s),
                "video s (mean/min/max)": "{:.0f} / {:.1f} / {:.0f}".format(*self.video_duration_s),
                "coverage": f"{100 * self.mean_coverage:.0f} %",
                "overlapping pairs (same/diff. label)": f"{self.overlaps.same_label} / "
                                                        f"{self.overlaps.different_label}"}


def summarize(videos: Sequence[VideoRecord], subset: str = "all") -> SubsetSummary:
    """One line of statistics for a set of videos."""
    if not videos:
        raise ValueError(f"no videos to summarise for subset {subset!r}")
    counts = np.array([v.num_segments for v in videos])
    durations = instance_durations(videos)
    video_durations = np.array([v.duration for v in videos])
    labels = np.concatenate([v.labels for v in videos])
    dur = (float(durations.mean()), float(np.median(durations)), float(durations.min()), float(durations.max())) \
        if len(durations) else (0.0, 0.0, 0.0, 0.0)
    return SubsetSummary(
        subset=subset, videos=len(videos), hours=float(video_durations.sum() / 3600), segments=int(counts.sum()),
        classes=len(np.unique(labels)),
        segments_per_video=(float(counts.mean()), float(np.median(counts)), int(counts.max())),
        duration_s=dur,
        video_duration_s=(float(video_durations.mean()), float(video_durations.min()), float(video_durations.max())),
        mean_coverage=float(np.mean([coverage(v) for v in videos])),
        overlaps=overlap_stats(videos))


def class_statistics(videos: Sequence[VideoRecord], label_names: Sequence[str]) -> list[dict]:
    """Per class: instances, videos containing it, mean and median instance duration (s).

    Computed from all segments at once (a loop over classes x videos took most of notebook 02's time on
    ActivityNet's 200 classes and 15,000 videos)."""
    num_classes = len(label_names)
    labels = np.concatenate([np.asarray(v.labels, np.int64).reshape(-1) for v in videos] + [np.zeros(0, np.int64)])
    lengths = np.concatenate([np.diff(np.asarray(v.segments, np.float64).reshape(-1, 2), axis=1)[:, 0]
                              for v in videos] + [np.zeros(0)])
    per_video = np.concatenate([np.unique(np.asarray(v.labels, np.int64)) for v in videos] + [np.zeros(0, np.int64)])
    known = (labels >= 0) & (labels < num_classes)
    labels, lengths = labels[known], lengths[known]
    per_video = per_video[(per_video >= 0) & (per_video < num_classes)]
    instances = np.bincount(labels, minlength=num_classes)
    containing = np.bincount(per_video, minlength=num_classes)
    order = np.argsort(labels, kind="stable")
    by_class = np.split(lengths[order], np.cumsum(instances)[:-1])
    return [{"label_id": label, "label": name, "instances": int(instances[label]), "videos": int(containing[label]),
             "mean_s": float(np.mean(by_class[label])) if instances[label] else float("nan"),
             "median_s": float(np.median(by_class[label])) if instances[label] else float("nan")}
            for label, name in enumerate(label_names)]


def pyramid_level_shares(lengths_in_steps: np.ndarray, regression_range: Sequence[Sequence[float]]) -> np.ndarray:
    """Share of instances whose centre point falls in each pyramid level's regression range.

    At an instance's centre the larger of the two distances to its boundaries is half its length (in grid steps);
    a level l accepts the point when regression_range[l] = [lo, hi] has lo <= that <= hi (SPEC §D.5), so this
    shows which levels of the feature pyramid will learn which actions. Instances matching no level count nowhere.
    """
    half = np.asarray(lengths_in_steps, dtype=np.float64) / 2
    if len(half) == 0:
        return np.zeros(len(regression_range))
    return np.array([np.mean((half >= lo) & (half <= hi)) for lo, hi in regression_range])


def instance_lengths_in_steps(videos: Sequence[VideoRecord], dataset_cfg: DatasetConfig) -> np.ndarray:
    """Instance durations in feature-grid steps, on each video's grid for this dataset config (fps from
    ``default_fps`` or the video; fixed-length grids assume ``max_seq_len`` features)."""
    from tal_kit.data.grid import grid_for_video

    lengths = []
    for video in videos:
        fps = dataset_cfg.default_fps if dataset_cfg.default_fps is not None else video.fps
        if fps is None:
            raise ValueError(f"video {video.video_id!r} has no fps and dataset.default_fps is not set")
        grid = grid_for_video(dataset_cfg, fps=fps, duration=video.duration, num_features=dataset_cfg.max_seq_len)
        lengths.append((video.segments[:, 1] - video.segments[:, 0]) * fps / grid.feat_stride)
    return np.concatenate(lengths) if lengths else np.zeros(0)
