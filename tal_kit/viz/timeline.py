"""One video on an interactive plotly timeline: ground truth against detections, true and false positives.

Layout, top to bottom, one block per class: a ground-truth lane, then detection lanes. Detections of a class are
packed greedily into lanes by descending score (the best detection sits directly under the ground truth, and
overlapping detections never hide each other). Bars are coloured by score; false positives at the chosen tIoU are
hatched and outlined red, true positives outlined green. Hovering shows score, class, the best tIoU with a
ground-truth segment of that class, the matched ground truth and, for a false positive, its DETAD error type.
An optional track below shows a per-step signal (class scores, feature energy) on the same time axis.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from tal_kit.data.annotations import VideoRecord
from tal_kit.detections import Detections
from tal_kit.evaluation.detad import ERROR_TYPE_NAMES, match_video
from tal_kit.inference.candidates import VideoDetections

__all__ = ["Track", "timeline", "video_detections", "feature_energy_track", "class_score_track",
           "pack_lanes"]

GT_COLOUR = "#4a4a4a"
TP_OUTLINE = "#1a9850"
FP_OUTLINE = "#d73027"
SCORE_COLOURSCALE = "Viridis"


@dataclass(frozen=True)
class Track:
    """A per-step signal drawn under the timeline: ``times`` [T] seconds, ``values`` [T, S], one name per series."""

    times: np.ndarray
    values: np.ndarray
    names: list[str]
    title: str = ""

    def __post_init__(self) -> None:
        values = np.asarray(self.values, dtype=np.float64)
        if values.ndim == 1:
            values = values[:, None]
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "times", np.asarray(self.times, dtype=np.float64))
        if values.shape[0] != self.times.shape[0]:
            raise ValueError(f"Track {self.title!r}: {self.times.shape[0]} times but {values.shape[0]} value rows")
        if values.shape[1] != len(self.names):
            raise ValueError(f"Track {self.title!r}: {values.shape[1]} series but {len(self.names)} names")


# What video_detections reads: a Detections table, a per-video dict {"segments", "scores", "labels"} of arrays or
# tensors, or VideoDetections
DetectionsLike = Detections | Mapping[str, Any] | VideoDetections


def _numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # torch tensor
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def video_detections(detections: DetectionsLike, video_id: str | None = None) -> VideoDetections:
    """Normalise one video's detections to arrays.

    Accepts a :class:`tal_kit.detections.Detections` table (with ``video_id``), a model output dict
    ``{"segments", "scores", "labels"}`` (tensors or arrays), or a :class:`VideoDetections`.
    """
    if isinstance(detections, VideoDetections):
        return detections
    if hasattr(detections, "for_video") and hasattr(detections, "starts"):
        if video_id is None:
            raise ValueError("video_detections: a Detections table needs the video_id to show")
        table = detections.for_video(video_id)
        segments = np.stack([np.asarray(table.starts, np.float64), np.asarray(table.ends, np.float64)], axis=1)
        return VideoDetections(segments.reshape(-1, 2), np.asarray(table.scores, np.float64),
                               np.asarray(table.labels, np.int64))
    if isinstance(detections, Mapping):
        missing = [k for k in ("segments", "scores", "labels") if k not in detections]
        if missing:
            raise ValueError(f"video_detections: detections dict lacks {', '.join(missing)}")
        segments = _numpy(detections["segments"]).astype(np.float64).reshape(-1, 2)
        scores = _numpy(detections["scores"]).astype(np.float64).reshape(-1)
        labels = _numpy(detections["labels"]).astype(np.int64).reshape(-1)
        if not len(segments) == len(scores) == len(labels):
            raise ValueError(f"video_detections: {len(segments)} segments, {len(scores)} scores, {len(labels)} labels")
        return VideoDetections(segments, scores, labels)
    raise TypeError(f"video_detections: cannot read detections from a {type(detections).__name__}")


def feature_energy_track(feats: Any, times: np.ndarray, title: str = "feature energy") -> Track:
    """The L2 norm of each feature vector (``feats`` [C, T]), a quick look at where the video 'changes'."""
    feats = _numpy(feats).astype(np.float64)
    if feats.ndim != 2:
        raise ValueError(f"feature_energy_track: feats must be [C, T], got shape {feats.shape}")
    return Track(times, np.linalg.norm(feats, axis=0), ["‖feature‖₂"], title)


def class_score_track(scores: Any, times: np.ndarray, label_names: Sequence[str], *,
                      classes: Sequence[int] | None = None, top: int = 3, title: str = "class scores") -> Track:
    """Per-step class probabilities ``scores`` [T, K]; shows ``classes`` or else the ``top`` classes by peak score."""
    scores = _numpy(scores).astype(np.float64)
    if scores.ndim != 2 or scores.shape[1] != len(label_names):
        raise ValueError(f"class_score_track: scores must be [T, {len(label_names)}], got shape {scores.shape}")
    if classes is None:
        classes = list(np.argsort(-scores.max(axis=0), kind="stable")[:top])
    classes = [int(c) for c in classes]
    return Track(times, scores[:, classes], [label_names[c] for c in classes], title)


def pack_lanes(segments: np.ndarray, order: np.ndarray, max_lanes: int) -> np.ndarray:
    """Lane index per segment: visiting segments in ``order``, each goes to the first lane where it overlaps nothing.

    Segments that fit nowhere go to the last lane (drawn on top of others there) so that at most ``max_lanes``
    lanes are used.
    """
    lane_of = np.zeros(len(segments), dtype=np.int64)
    lanes: list[list[tuple[float, float]]] = []
    for i in order:
        start, end = float(segments[i, 0]), float(segments[i, 1])
        for index, occupied in enumerate(lanes):
            if all(end <= s or start >= e for s, e in occupied):
                occupied.append((start, end))
                lane_of[i] = index
                break
        else:
            if len(lanes) < max_lanes:
                lanes.append([(start, end)])
                lane_of[i] = len(lanes) - 1
            else:
                lanes[-1].append((start, end))
                lane_of[i] = len(lanes) - 1
    return lane_of


def _resolve_classes(classes: Sequence[int | str] | None, label_names: Sequence[str]) -> set[int] | None:
    if classes is None:
        return None
    ids = set()
    index = {name: i for i, name in enumerate(label_names)}
    for c in classes:
        if isinstance(c, str):
            if c not in index:
                raise ValueError(f"timeline: unknown class {c!r}")
            ids.add(index[c])
        else:
            ids.add(int(c))
    return ids


def _class_name(label_names: Sequence[str], label: int) -> str:
    return label_names[label] if 0 <= label < len(label_names) else f"class {label}"


@dataclass
class _Lanes:
    """Vertical positions: per class, one ground-truth lane and some detection lanes."""

    tickvals: list[float] = field(default_factory=list)
    ticktext: list[str] = field(default_factory=list)
    separators: list[float] = field(default_factory=list)
    gt_lane: dict[int, float] = field(default_factory=dict)
    first_det_lane: dict[int, float] = field(default_factory=dict)
    count: int = 0


def _layout_lanes(classes: list[int], det: VideoDetections, has_gt: bool, label_names: Sequence[str],
                  max_lanes_per_class: int) -> tuple[_Lanes, np.ndarray]:
    lanes = _Lanes()
    det_y = np.zeros(len(det), dtype=np.float64)
    y = 0.0
    for c in classes:
        name = _class_name(label_names, c)
        if lanes.count:
            lanes.separators.append(y - 0.5)
        if has_gt:
            lanes.gt_lane[c] = y
            lanes.tickvals.append(y)
            lanes.ticktext.append(f"{name} · GT")
            y += 1
            lanes.count += 1
        members = np.flatnonzero(det.labels == c)
        lanes.first_det_lane[c] = y
        lanes.tickvals.append(y)
        lanes.ticktext.append(f"{name} · det" if has_gt else name)
        if len(members):
            order = members[np.argsort(-det.scores[members], kind="stable")]
            lane_of = pack_lanes(det.segments, order, max_lanes_per_class)
            det_y[members] = y + lane_of[members]
            used = int(lane_of[members].max()) + 1
        else:
            used = 1
        y += used
        lanes.count += used
    return lanes, det_y


def _fmt(value: float) -> str:
    return "–" if not np.isfinite(value) else f"{value:.2f}"


def timeline(ground_truth: VideoRecord | None = None, detections: DetectionsLike | None = None, *,
             video_id: str | None = None, label_names: Sequence[str] | None = None, tiou_threshold: float = 0.5,
             score_threshold: float = 0.0, classes: Sequence[int | str] | None = None,
             max_detections: int | None = None,
             track: Track | None = None, max_lanes_per_class: int = 4, duration: float | None = None,
             title: str | None = None) -> go.Figure:
    """An interactive timeline of one video (a plotly Figure; zoom by dragging or the wheel, pan from the mode bar).

    Args:
        ground_truth: the video's :class:`VideoRecord` (``segments`` seconds, ``labels``, ``duration``), or None
            for a video without annotations (detections are then drawn without true/false-positive marks).
        detections: a ``Detections`` table, a per-video dict ``{"segments", "scores", "labels"}`` or
            :class:`VideoDetections`; segments in seconds.
        video_id: the video to show (default: ``ground_truth.video_id``).
        label_names: class names indexed by label id.
        tiou_threshold: a detection is a true positive when the evaluator's greedy matching (by score, one
            detection per ground-truth segment, same class) pairs it with a segment at tIoU >= this.
        score_threshold: hide detections scoring below this (matching is computed on all detections first, so
            the marks agree with the evaluation).
        classes: show only these classes (ids or names).
        max_detections: show at most this many detections, the best-scoring ones.
        track: an optional :class:`Track` drawn in a second row sharing the time axis.
        max_lanes_per_class: detection lanes per class before overlapping detections share the last lane.
        duration: the x-axis end in seconds (default: the ground truth's duration, else the last detection end).
    """
    if ground_truth is None and detections is None:
        raise ValueError("timeline: give ground_truth, detections or both")
    video_id = video_id if video_id is not None else getattr(ground_truth, "video_id", None)
    det = video_detections(detections, video_id) if detections is not None else \
        VideoDetections(np.zeros((0, 2)), np.zeros(0), np.zeros(0, np.int64))
    has_gt = ground_truth is not None
    gt_segments = np.asarray(ground_truth.segments, np.float64).reshape(-1, 2) if has_gt else np.zeros((0, 2))
    gt_labels = np.asarray(ground_truth.labels, np.int64).reshape(-1) if has_gt else np.zeros(0, np.int64)
    if label_names is None:
        top = int(max(gt_labels.max(initial=-1), det.labels.max(initial=-1)))
        label_names = [f"class {i}" for i in range(top + 1)]

    # Match on every detection, then filter what is shown: hiding low scores never changes higher-scored matches.
    match = match_video(gt_segments, gt_labels, det, tiou_threshold) if has_gt else None
    shown = det.scores >= score_threshold
    wanted = _resolve_classes(classes, label_names)
    if wanted is not None:
        shown &= np.isin(det.labels, sorted(wanted))
    shown_index = np.flatnonzero(shown)
    shown_index = shown_index[np.argsort(-det.scores[shown_index], kind="stable")]
    if max_detections is not None:
        shown_index = shown_index[:max_detections]
    view = det.take(shown_index)

    gt_keep = np.ones(len(gt_labels), bool) if wanted is None else np.isin(gt_labels, sorted(wanted))
    class_ids = sorted(set(gt_labels[gt_keep].tolist()) | set(view.labels.tolist()))
    lanes, det_y = _layout_lanes(class_ids, view, has_gt, label_names, max_lanes_per_class)

    if duration is None:
        duration = float(ground_truth.duration) if has_gt else float(det.segments[:, 1].max(initial=1.0))
    rows = 2 if track is not None else 1
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        row_heights=[0.75, 0.25] if rows == 2 else None)

    # Ground truth.
    if has_gt:
        gt_index = np.flatnonzero(gt_keep)
        status = []
        for j in gt_index:
            hit = match.detection_of_gt[j]
            status.append(f"detected: score {det.scores[hit]:.3f}, tIoU {match.tiou_of_gt[j]:.2f}" if hit >= 0
                          else f"missed at tIoU {tiou_threshold:g}")
        custom = [[_class_name(label_names, gt_labels[j]), gt_segments[j, 0], gt_segments[j, 1], int(j), s]
                  for j, s in zip(gt_index, status)]
        fig.add_trace(go.Bar(
            name="ground truth", orientation="h", base=gt_segments[gt_index, 0],
            x=gt_segments[gt_index, 1] - gt_segments[gt_index, 0],
            y=[lanes.gt_lane[c] for c in gt_labels[gt_index]], width=0.8,
            marker=dict(color=GT_COLOUR, line=dict(width=0)), customdata=custom,
            hovertemplate=("<b>%{customdata[0]}</b> (ground truth #%{customdata[3]})<br>"
                           "%{customdata[1]:.2f}–%{customdata[2]:.2f} s<br>%{customdata[4]}<extra></extra>"),
        ), row=1, col=1)

    # Detections: one trace per outcome so the legend explains the marks.
    cmax = max(1.0, float(view.scores.max(initial=0.0)))
    if has_gt:
        view_match = match.take(shown_index)
        groups = [("true positive", view_match.is_tp, dict(color=TP_OUTLINE, width=1.5), None),
                  ("false positive", ~view_match.is_tp, dict(color=FP_OUTLINE, width=1.5),
                   dict(shape="x", fgcolor="rgba(255,255,255,0.75)", size=6))]
    else:
        view_match = None
        groups = [("detections", np.ones(len(view), bool), dict(color="#222222", width=0.5), None)]
    for name, member, outline, pattern in groups:
        idx = np.flatnonzero(member)
        custom = []
        for i in idx:
            label = int(view.labels[i])
            if view_match is not None:
                matched = view_match.matched_gt[i]
                matched_text = (f"GT #{matched} {gt_segments[matched, 0]:.2f}–{gt_segments[matched, 1]:.2f} s"
                                if matched >= 0 else "none")
                best = _fmt(view_match.best_tiou[i])
                error = ERROR_TYPE_NAMES[view_match.error_type[i]]
            else:
                matched_text, best, error = "–", "–", "–"
            custom.append([_class_name(label_names, label), view.scores[i], view.segments[i, 0], view.segments[i, 1],
                           best, matched_text, error])
        marker = dict(color=view.scores[idx], coloraxis="coloraxis", line=outline)
        if pattern is not None:
            marker["pattern"] = pattern
        fig.add_trace(go.Bar(
            name=f"{name} (tIoU ≥ {tiou_threshold:g})" if view_match is not None else name,
            orientation="h", base=view.segments[idx, 0], x=view.segments[idx, 1] - view.segments[idx, 0],
            y=det_y[idx], width=0.8, marker=marker, customdata=custom,
            hovertemplate=("<b>%{customdata[0]}</b>  score %{customdata[1]:.3f}<br>"
                           "%{customdata[2]:.2f}–%{customdata[3]:.2f} s<br>"
                           "best tIoU with a %{customdata[0]} GT: %{customdata[4]}<br>"
                           "matched GT: %{customdata[5]}<br>outcome: %{customdata[6]}<extra></extra>"),
        ), row=1, col=1)

    if track is not None:
        for s, series in enumerate(track.names):
            fig.add_trace(go.Scatter(x=track.times, y=track.values[:, s], mode="lines", name=series,
                                     legendgroup="track", hovertemplate=f"{series}: %{{y:.3f}} at %{{x:.2f}} s"
                                                                        "<extra></extra>"), row=2, col=1)
        fig.update_yaxes(title_text=track.title, fixedrange=True, row=2, col=1)

    # Class separators, set in one go (add_hline per line is slow: plotly validates the whole layout each time).
    separators = [dict(type="line", xref="x domain", x0=0, x1=1, yref="y", y0=y, y1=y,
                       line=dict(color="#cccccc", width=1)) for y in lanes.separators]

    counts = ""
    if view_match is not None:
        counts = (f" · TP {int(view_match.is_tp.sum())} / FP {int((~view_match.is_tp).sum())}"
                  f" at tIoU {tiou_threshold:g} · GT {int(gt_keep.sum())}")
    heading = title if title is not None else f"{video_id or 'video'}: {len(view)} detections shown{counts}"
    fig.update_layout(
        title=dict(text=heading, x=0.01), shapes=separators, template="plotly_white", barmode="overlay", bargap=0, hovermode="closest", dragmode="zoom",
        height=min(1400, 170 + 22 * max(lanes.count, 1) + (160 if track is not None else 0)),
        margin=dict(l=10, r=10, t=60, b=40),
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0),
        coloraxis=dict(colorscale=SCORE_COLOURSCALE, cmin=0.0, cmax=cmax,
                       colorbar=dict(title=dict(text="score"), thickness=12, len=0.6, y=1.0, yanchor="top")),
    )
    # Fixed range, top lane first: empty lanes (a class with detections but no ground truth here) stay visible.
    fig.update_yaxes(tickvals=lanes.tickvals, ticktext=lanes.ticktext, range=[max(lanes.count, 1) - 0.5, -0.5],
                     fixedrange=True, showgrid=False, zeroline=False, row=1, col=1)
    fig.update_xaxes(range=[0.0, duration], showgrid=True, row=1, col=1)
    fig.update_xaxes(title_text="time (s)", row=rows, col=1)
    # What was drawn, for callers (the explorer's status line, tests) without re-deriving it.
    fig.layout.meta = {"video_id": video_id, "tiou_threshold": tiou_threshold, "num_shown": len(view)}
    return fig
