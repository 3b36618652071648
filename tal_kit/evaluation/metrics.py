"""ActivityNet detection metrics: interpolated AP per class and tIoU, mAP, PR curves and recall at k x #GT.

The numbers are those of the official ``eval_detection.py`` (activitynet/ActivityNet, Evaluation/; SPEC §F) on any
input, with ties resolved by the documented rule of :mod:`tal_kit.evaluation.matching`:

* mAP at a tIoU = mean AP over the classes that have ground truth in the evaluated videos; a class without
  detections has AP 0 and still counts.
* AP = area under the VOC2011-interpolated precision envelope (precision padded with 0 at both ends, recall with 0
  and 1, the envelope made non-increasing from the right, summed where recall changes).
* Detections on videos that are not in the ground truth are false positives (officially they are too).
* Recall at k x #GT (ActionFormer HEAD's ``Recall@kx``): per video and class, the top k x #GT detections by score;
  a segment counts as found if any of them reaches the tIoU (one-to-one matching is not required).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from tal_kit.data.annotations import VideoRecord
from tal_kit.detections import Detections
from tal_kit.evaluation.ground_truth import GroundTruth, dedup_mode
from tal_kit.evaluation.matching import CandidatePairs, candidate_pairs, greedy_match, rank_order

__all__ = ["EvaluationResult", "PRCurve", "DetectionMatches", "evaluate_detections", "match_detections",
           "interpolated_average_precision", "EvaluationError"]


class EvaluationError(ValueError):
    """Inputs the evaluator cannot use; the message names the video and field."""


@dataclass(frozen=True)
class PRCurve:
    """One class's precision/recall after each detection in rank order, per tIoU threshold."""

    precision: np.ndarray  # float64 [T, n]
    recall: np.ndarray  # float64 [T, n]
    scores: np.ndarray  # float64 [n], the detections' scores in rank order


@dataclass
class EvaluationResult:
    """Everything one evaluation computes. ``mAP`` and ``ap`` are fractions (multiply by 100 for percent)."""

    tiou_thresholds: np.ndarray  # float64 [T]
    mAP: np.ndarray  # float64 [T]
    average_mAP: float
    ap: np.ndarray  # float64 [num_classes, T]; NaN for classes without ground truth (not in the mean)
    class_ids: np.ndarray  # int64, the classes with ground truth (the ones averaged)
    num_gt: np.ndarray  # int64 [num_classes], counted ground-truth segments
    num_detections: np.ndarray  # int64 [num_classes], evaluated detections
    top_k: tuple[int, ...]
    recall: np.ndarray  # float64 [num_classes, T, len(top_k)]; NaN for classes without ground truth
    recall_at_k: dict[int, np.ndarray]  # k -> float64 [T], mean over class_ids
    pr_curves: dict[int, PRCurve] = field(repr=False)
    label_names: list[str] | None = None
    dedup_gt: str = "none"
    num_ignored_detections: int = 0  # dropped with unknown_labels="ignore"
    num_detections_outside_gt: int = 0  # on videos without ground truth: false positives

    def class_name(self, label_id: int) -> str:
        if self.label_names is not None and 0 <= label_id < len(self.label_names):
            return self.label_names[label_id]
        return str(label_id)

    def to_dict(self, per_class: bool = True) -> dict[str, Any]:
        """A JSON-ready summary (fractions, not percents)."""
        out: dict[str, Any] = {
            "tiou_thresholds": self.tiou_thresholds.tolist(),
            "mAP": self.mAP.tolist(),
            "average_mAP": float(self.average_mAP),
            "recall_at_k": {str(k): v.tolist() for k, v in self.recall_at_k.items()},
            "num_classes_evaluated": int(len(self.class_ids)),
            "num_gt": int(self.num_gt.sum()),
            "num_detections": int(self.num_detections.sum()),
            "num_ignored_detections": int(self.num_ignored_detections),
            "num_detections_outside_gt": int(self.num_detections_outside_gt),
            "dedup_gt": self.dedup_gt,
        }
        if per_class:
            out["per_class_ap"] = {self.class_name(int(c)): self.ap[c].tolist() for c in self.class_ids}
        return out

    def table(self, per_class: bool = False) -> str:
        """A readable table in percent: mAP (and recall) per tIoU, the average, optionally AP per class."""
        head = f"{'tIoU':>6} {'mAP (%)':>8}" + "".join(f" {f'R@{k}x (%)':>10}" for k in self.top_k)
        lines = [head, "-" * len(head)]
        for t, thr in enumerate(self.tiou_thresholds):
            lines.append(f"{thr:>6.2f} {100 * self.mAP[t]:>8.2f}"
                         + "".join(f" {100 * self.recall_at_k[k][t]:>10.2f}" for k in self.top_k))
        lines.append(f"{'avg':>6} {100 * self.average_mAP:>8.2f}")
        lines.append(f"{len(self.class_ids)} classes, {int(self.num_gt.sum())} ground-truth segments, "
                     f"{int(self.num_detections.sum())} detections (ground truth filter: {self.dedup_gt})")
        if self.num_detections_outside_gt:
            lines.append(f"{self.num_detections_outside_gt} detections are on videos without ground truth "
                         f"(counted as false positives)")
        if self.num_ignored_detections:
            lines.append(f"{self.num_ignored_detections} detections ignored: their label has no ground truth")
        if per_class:
            width = max(len(self.class_name(int(c))) for c in self.class_ids)
            lines.append("")
            lines.append(f"{'class':<{width}} " + " ".join(f"{thr:>6.2f}" for thr in self.tiou_thresholds)
                         + "  (AP %)")
            for c in self.class_ids:
                lines.append(f"{self.class_name(int(c)):<{width}} "
                             + " ".join(f"{100 * v:>6.2f}" for v in self.ap[c]))
        return "\n".join(lines)


@dataclass(frozen=True)
class DetectionMatches:
    """Per detection (table order) and tIoU: true positive or not, and the matched ground-truth segment as its
    position in the video's :class:`VideoRecord` (-1 when unmatched)."""

    tiou_thresholds: np.ndarray  # float64 [T]
    is_tp: np.ndarray  # bool [N, T]
    gt_index: np.ndarray  # int64 [N, T]


def interpolated_average_precision(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    """VOC2011 interpolated AP per row of ``precision``/``recall`` [T, n] (the official ``interpolated_prec_rec``)."""
    rows = precision.shape[0]
    padded_precision = np.hstack([np.zeros((rows, 1)), precision, np.zeros((rows, 1))])
    padded_recall = np.hstack([np.zeros((rows, 1)), recall, np.ones((rows, 1))])
    envelope = np.maximum.accumulate(padded_precision[:, ::-1], axis=1)[:, ::-1]
    changes = padded_recall[:, 1:] != padded_recall[:, :-1]
    areas = (padded_recall[:, 1:] - padded_recall[:, :-1]) * envelope[:, 1:]
    # Summing exactly the official's terms, in its order, keeps the result bit-identical.
    return np.array([np.sum(areas[t][changes[t]]) for t in range(rows)])


@dataclass(frozen=True)
class _Prepared:
    gt: GroundTruth
    dets: Detections  # the evaluated detections (unknown labels removed), in table order
    kept_rows: np.ndarray  # their rows in the caller's table
    order: np.ndarray  # rank order: dets rows sorted by label, then score descending (ties in table order)
    pairs: CandidatePairs
    det_group: np.ndarray  # per ranked detection: (label, video) group id
    num_classes: int
    num_ignored: int
    num_outside: int


def _check_thresholds(tiou_thresholds: Sequence[float]) -> np.ndarray:
    thresholds = np.asarray(tiou_thresholds, dtype=np.float64).reshape(-1)
    if thresholds.size == 0 or not np.isfinite(thresholds).all():
        raise EvaluationError(f"tiou_thresholds must be a non-empty list of finite numbers, got {tiou_thresholds!r}")
    return thresholds


def _check_detections(dets: Detections) -> None:
    bad = ~(np.isfinite(dets.starts) & np.isfinite(dets.ends) & np.isfinite(dets.scores)) | (dets.ends < dets.starts)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise EvaluationError(f"detection {i} of video {str(dets.video_ids[i])!r}: segment [{dets.starts[i]}, "
                              f"{dets.ends[i]}] with score {dets.scores[i]} is not a finite segment with "
                              f"start <= end and a finite score ({int(bad.sum())} such detections)")


def _prepare(ground_truth: Sequence[VideoRecord] | GroundTruth, detections: Detections, *, dedup_gt: bool | str,
             num_classes: int | None, label_names: Sequence[str] | None, unknown_labels: str) -> _Prepared:
    if unknown_labels not in ("error", "ignore"):
        raise ValueError(f"unknown_labels must be 'error' or 'ignore', got {unknown_labels!r}")
    gt = ground_truth if isinstance(ground_truth, GroundTruth) else GroundTruth.from_records(ground_truth, dedup_gt)
    if len(gt) == 0:
        raise EvaluationError("the ground truth has no segments in the evaluated videos; nothing to evaluate")
    if label_names is not None:
        if num_classes is not None and num_classes != len(label_names):
            raise ValueError(f"num_classes={num_classes} but {len(label_names)} label_names were given")
        num_classes = len(label_names)
    max_gt_label = int(gt.labels.max())
    if gt.labels.min() < 0 or (num_classes is not None and max_gt_label >= num_classes):
        raise EvaluationError(f"ground-truth label ids must lie in [0, {num_classes}), found "
                              f"{int(gt.labels.min())}..{max_gt_label}")
    num_classes = max_gt_label + 1 if num_classes is None else num_classes
    _check_detections(detections)

    # A detection whose label has no ground truth here: the official evaluation raises, ActionFormer ignores it.
    known = np.isin(detections.labels, gt.class_ids)
    num_ignored = int((~known).sum())
    if num_ignored and unknown_labels == "error":
        labels, counts = np.unique(detections.labels[~known], return_counts=True)
        name = (lambda c: f"{c} ({label_names[c]!r})" if label_names is not None and 0 <= c < len(label_names)
                else str(c))
        listed = ", ".join(f"label {name(int(c))}: {n} detection(s)" for c, n in zip(labels[:5], counts[:5]))
        first = int(np.flatnonzero(~known)[0])
        raise EvaluationError(f"{num_ignored} detection(s) have a label with no ground-truth segment in the evaluated "
                              f"videos ({listed}{', ...' if len(labels) > 5 else ''}; first on video "
                              f"{str(detections.video_ids[first])!r}); pass unknown_labels='ignore' to drop them")
    kept_rows = np.flatnonzero(known)
    dets = detections.select(kept_rows) if num_ignored else detections

    # Groups are (label, video). Video codes: 1 + index among the evaluated videos, 0 for any other video (whose
    # detections pair with nothing, so they need not be told apart).
    video_code = {video_id: i + 1 for i, video_id in enumerate(gt.video_ids.tolist())}
    det_video_code = np.array([video_code.get(v, 0) for v in dets.video_ids.tolist()], dtype=np.int64)
    num_outside = int((det_video_code == 0).sum())
    num_codes = len(gt.video_ids) + 1

    order = rank_order(dets.labels, dets.scores)
    det_group = dets.labels[order] * num_codes + det_video_code[order]
    gt_group = gt.labels * num_codes + gt.video + 1
    pairs = candidate_pairs(det_group, dets.starts[order], dets.ends[order], gt_group, gt.starts, gt.ends)
    return _Prepared(gt, dets, kept_rows, order, pairs, det_group, num_classes, num_ignored, num_outside)


def _recall_at_k(prep: _Prepared, thresholds: np.ndarray, top_k: Sequence[int], num_gt: np.ndarray) -> np.ndarray:
    """[num_classes, T, K] fraction of segments hit by one of the top k x #GT detections of their video and class."""
    num_dets = len(prep.order)
    # Rank of each detection inside its (video, class) group, and the group's ground-truth count.
    by_group = np.lexsort((np.arange(num_dets), prep.det_group))
    groups = prep.det_group[by_group]
    group_start = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    group_sizes = np.diff(np.r_[group_start, num_dets])
    rank_in_group = np.empty(num_dets, dtype=np.int64)
    rank_in_group[by_group] = np.arange(num_dets) - np.repeat(group_start, group_sizes)
    gt_per_det = np.bincount(prep.pairs.det, minlength=num_dets)  # pairs of a detection = its group's segments
    recall = np.full((prep.num_classes, len(thresholds), len(top_k)), np.nan)
    has_gt = num_gt > 0
    pair_rank = rank_in_group[prep.pairs.det]
    pair_limit = gt_per_det[prep.pairs.det]
    for t, threshold in enumerate(thresholds):
        reaches = prep.pairs.tiou >= threshold  # NaN never reaches, as in ActionFormer's comparison
        for j, k in enumerate(top_k):
            hit = np.zeros(len(prep.gt), dtype=bool)
            hit[prep.pairs.gt[reaches & (pair_rank < k * pair_limit)]] = True
            found = np.bincount(prep.gt.labels[hit], minlength=prep.num_classes)
            recall[has_gt, t, j] = found[has_gt] / num_gt[has_gt]
    return recall


def evaluate_detections(ground_truth: Sequence[VideoRecord] | GroundTruth, detections: Detections,
                        tiou_thresholds: Sequence[float], *, num_classes: int | None = None,
                        label_names: Sequence[str] | None = None, dedup_gt: bool | str = False,
                        unknown_labels: str = "error", top_k: Sequence[int] = (1, 5)) -> EvaluationResult:
    """ActivityNet detection mAP of ``detections`` against the ground truth of the evaluated videos.

    Args:
        ground_truth: the evaluated videos, e.g. ``load_annotations(path).select(["Test"])`` (videos without
            segments are fine; detections on them are false positives), or a prepared :class:`GroundTruth`.
        detections: the detection table (labels are label ids).
        tiou_thresholds: e.g. ``[0.3, 0.4, 0.5, 0.6, 0.7]`` (THUMOS-14) or ``np.linspace(0.5, 0.95, 10)`` (ANet).
        num_classes / label_names: the label space (names make tables and errors readable); the mean is taken
            over the classes that have ground truth, as officially.
        dedup_gt: ``False`` (official: all segments count), ``"duplicates"`` (InternVideo's ActionFormer fork) or
            ``True``/``"actionformer"`` (ActionFormer HEAD: duplicates and segments < 1e-3 s dropped).
        unknown_labels: a detection whose label has no ground truth is an ``"error"`` (the official behaviour), or
            ``"ignore"``: dropped and counted in ``num_ignored_detections`` (ActionFormer's behaviour).
        top_k: the k of the recall at k x #GT.

    Ties between equal scores are broken by table order (see :mod:`tal_kit.evaluation.matching`).
    """
    thresholds = _check_thresholds(tiou_thresholds)
    prep = _prepare(ground_truth, detections, dedup_gt=dedup_gt, num_classes=num_classes, label_names=label_names,
                    unknown_labels=unknown_labels)
    gt, num_dets = prep.gt, len(prep.order)
    matched = greedy_match(prep.pairs, thresholds, num_dets, len(gt))
    ranked_labels = prep.dets.labels[prep.order]
    ranked_scores = prep.dets.scores[prep.order]

    num_gt = np.bincount(gt.labels, minlength=prep.num_classes)
    num_detections = np.bincount(ranked_labels, minlength=prep.num_classes)
    class_ids = gt.class_ids
    ap = np.full((prep.num_classes, len(thresholds)), np.nan)
    pr_curves: dict[int, PRCurve] = {}
    bounds = np.searchsorted(ranked_labels, np.stack([class_ids, class_ids + 1]))
    for c, lo, hi in zip(class_ids.tolist(), bounds[0].tolist(), bounds[1].tolist()):
        if hi == lo:  # no detections of this class: AP 0, still part of the mean
            ap[c] = 0.0
            pr_curves[c] = PRCurve(np.zeros((len(thresholds), 0)), np.zeros((len(thresholds), 0)), np.zeros(0))
            continue
        tp = (matched[:, lo:hi] >= 0).astype(np.float64)
        tp_cumsum = np.cumsum(tp, axis=1)
        fp_cumsum = np.cumsum(1.0 - tp, axis=1)
        recall = tp_cumsum / float(num_gt[c])
        precision = tp_cumsum / (tp_cumsum + fp_cumsum)
        ap[c] = interpolated_average_precision(precision, recall)
        pr_curves[c] = PRCurve(precision, recall, ranked_scores[lo:hi])
    mAP = ap[class_ids].mean(axis=0)

    top_k = tuple(int(k) for k in top_k)
    recall = _recall_at_k(prep, thresholds, top_k, num_gt)
    recall_at_k = {k: recall[class_ids, :, j].mean(axis=0) for j, k in enumerate(top_k)}
    return EvaluationResult(
        tiou_thresholds=thresholds, mAP=mAP, average_mAP=float(mAP.mean()), ap=ap, class_ids=class_ids,
        num_gt=num_gt, num_detections=num_detections, top_k=top_k, recall=recall, recall_at_k=recall_at_k,
        pr_curves=pr_curves, label_names=list(label_names) if label_names is not None else None,
        dedup_gt=dedup_mode(dedup_gt), num_ignored_detections=prep.num_ignored,
        num_detections_outside_gt=prep.num_outside)


def match_detections(ground_truth: Sequence[VideoRecord] | GroundTruth, detections: Detections,
                     tiou_thresholds: Sequence[float], *, dedup_gt: bool | str = False,
                     unknown_labels: str = "ignore") -> DetectionMatches:
    """Which detections are true positives at each tIoU, and which ground-truth segment each one matched — the
    same greedy matching as :func:`evaluate_detections` (for timelines and error analysis).

    ``gt_index`` is the segment's position in its video's ``VideoRecord.segments`` (-1: false positive). Detections
    whose label has no ground truth are false positives here unless ``unknown_labels="error"``.
    """
    thresholds = _check_thresholds(tiou_thresholds)
    prep = _prepare(ground_truth, detections, dedup_gt=dedup_gt, num_classes=None, label_names=None,
                    unknown_labels=unknown_labels)
    matched = greedy_match(prep.pairs, thresholds, len(prep.order), len(prep.gt))  # [T, ranked detections]
    gt_index = np.full((len(detections), len(thresholds)), -1, dtype=np.int64)
    rows = prep.kept_rows[prep.order]
    hit = matched >= 0
    gt_index[rows] = np.where(hit, prep.gt.source_index[np.where(hit, matched, 0)], -1).T
    return DetectionMatches(thresholds, gt_index >= 0, gt_index)
