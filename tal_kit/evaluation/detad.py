"""Why detections fail: DETAD's false-positive breakdown and sensitivity to action length (the numbers; the
figures are ``tal_kit.viz.figures``).

Follows DETAD (Alwassel, Caba Heilbron, Escorcia, Ghanem, "Diagnosing Error in Temporal Action Detectors",
ECCV 2018). Each detection is first matched exactly as the ActivityNet evaluator does (per class, greedy by
score, each ground-truth segment matched at most once per tIoU threshold ``t``). A detection left unmatched is a
false positive, and is explained by the ground-truth segment of its video with the highest tIoU, whatever its class:

=================  ===========================================================================================
double detection   tIoU >= t with a segment of the detection's class (which a higher-scored detection took)
wrong label        tIoU >= t with a segment of another class
localization       min_tiou (0.1) <= tIoU < t with a segment of the detection's class
confusion          min_tiou <= tIoU < t with a segment of another class
background         tIoU < min_tiou with every segment of the video (or the video has none)
=================  ===========================================================================================

DETAD's two dataset-level summaries are reproduced:

* the **false-positive profile**: per class the detections are ranked by score and cut into groups of G_c
  (the class's number of ground-truth segments): ranks [0, G_c) form "1G", [G_c, 2 G_c) "2G", ... up to "10G";
  the profile is the share of each outcome in each group, pooled over classes and averaged over tIoU thresholds.
  Only the top 10 G_c detections of each class are analysed (DETAD's ``limit_factor``).
* the **impact of removing each error type**: the gain in average mAP_N when the detections of that type are
  dropped, where mAP_N is DETAD's normalised AP (precision computed as if every class had the average number of
  ground-truth segments, N̄ = #segments / #classes, so classes of different sizes compare).

and the **sensitivity to action length** (or coverage = length / video duration): for each length bin, average
mAP_N over classes, counting a class's segments in that bin as the positives and ignoring detections matched to
segments of other bins (they are neither true nor false positives for this bin). Bins as in DETAD:
THUMOS-14 XS (0, 3], S (3, 6], M (6, 12], L (12, 18], XL > 18 s; ActivityNet XS (0, 30], ..., XL > 180 s.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from tal_kit.detections import Detections
from tal_kit.evaluation.ground_truth import GroundTruth
from tal_kit.segments import segment_tiou
from tal_kit.evaluation.metrics import interpolated_average_precision, match_detections

if TYPE_CHECKING:
    from tal_kit.data.annotations import VideoRecord
    from tal_kit.inference.candidates import VideoDetections

__all__ = [
    "TRUE_POSITIVE", "DOUBLE_DETECTION", "WRONG_LABEL", "LOCALIZATION", "CONFUSION", "BACKGROUND",
    "ERROR_TYPE_NAMES", "LENGTH_BINS", "COVERAGE_BINS", "BIN_NAMES", "length_bins_for",
    "pairwise_tiou", "classify_false_positives", "VideoMatch", "match_video",
    "MatchTable", "match_table", "FalsePositiveAnalysis", "false_positive_analysis",
    "SensitivityAnalysis", "sensitivity_analysis", "normalized_average_precision",
]

TRUE_POSITIVE, DOUBLE_DETECTION, WRONG_LABEL, LOCALIZATION, CONFUSION, BACKGROUND = range(6)
ERROR_TYPE_NAMES = ("true positive", "double detection", "wrong label", "localization", "confusion", "background")

# DETAD's bins (upper edges inclusive, the first bin also includes its lower edge).
LENGTH_BINS = {"thumos": (0.0, 3.0, 6.0, 12.0, 18.0, np.inf), "activitynet": (0.0, 30.0, 60.0, 120.0, 180.0, np.inf)}
COVERAGE_BINS = {"thumos": (0.0, 0.02, 0.04, 0.06, 0.08, 1.0), "activitynet": (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)}
BIN_NAMES = ("XS", "S", "M", "L", "XL")


def length_bins_for(dataset_name: str) -> str:
    """Which DETAD bin set suits a dataset: "thumos" for short actions (THUMOS-14, the demo), else "activitynet"."""
    name = dataset_name.lower()
    return "thumos" if ("thumos" in name or name == "demo") else "activitynet"


def pairwise_tiou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Temporal IoU of every segment in ``a`` [N, 2] with every segment in ``b`` [M, 2] -> [N, M].

    The evaluator's tIoU (`tal_kit.segments.segment_tiou`), except where the union is 0 (two zero-length
    segments): DETAD counts 0 there, where the evaluator's NaN would rank first.
    """
    a = np.asarray(a, np.float64).reshape(-1, 2)
    b = np.asarray(b, np.float64).reshape(-1, 2)
    return segment_tiou(a[:, None, 0], a[:, None, 1], b[None, :, 0], b[None, :, 1], zero_union=0.0)


def classify_false_positives(det_segments: np.ndarray, det_labels: np.ndarray, is_tp: np.ndarray,
                             gt_segments: np.ndarray, gt_labels: np.ndarray, tiou_threshold: float,
                             min_tiou: float = 0.1) -> np.ndarray:
    """DETAD outcome code per detection of ONE video (``TRUE_POSITIVE`` where ``is_tp``; see the module doc)."""
    codes = np.full(len(det_labels), TRUE_POSITIVE, dtype=np.int64)
    fp = np.flatnonzero(~np.asarray(is_tp, bool))
    if not len(fp):
        return codes
    if len(gt_labels) == 0:
        codes[fp] = BACKGROUND
        return codes
    tiou = pairwise_tiou(det_segments[fp], gt_segments)
    nearest = tiou.argmax(axis=1)  # first of equal maxima, as DETAD's argmax
    top = tiou[np.arange(len(fp)), nearest]
    same = gt_labels[nearest] == det_labels[fp]
    codes[fp] = np.select(
        [(top >= tiou_threshold) & same, top >= tiou_threshold, (top >= min_tiou) & same, top >= min_tiou],
        [DOUBLE_DETECTION, WRONG_LABEL, LOCALIZATION, CONFUSION], default=BACKGROUND)
    return codes


# ----------------------------------------------------------------------------------------------------------------
# Matching: the evaluator's greedy assignment, per detection and tIoU threshold.
# ----------------------------------------------------------------------------------------------------------------

def _matched_rows(gt: GroundTruth, detections: Detections, tiou_thresholds: Sequence[float]) -> np.ndarray:
    """The evaluator's matching (``tal_kit.evaluation.metrics.match_detections``) as ground-truth rows of ``gt``:
    [T, N] int64, -1 for a false positive."""
    thresholds = np.asarray(tiou_thresholds, np.float64).reshape(-1)
    if len(gt) == 0 or len(detections) == 0:  # nothing can match (the evaluator refuses empty ground truth)
        return np.full((len(thresholds), len(detections)), -1, np.int64)
    matches = match_detections(gt, detections, thresholds)
    # The evaluator names a match by its position in the video's VideoRecord; turn that into a row of ``gt``
    # (rows are grouped by video, positions increasing within a video, so the combined key is sorted).
    stride = int(gt.source_index.max()) + 1
    keys = gt.video * stride + gt.source_index
    video_index = {v: i for i, v in enumerate(gt.video_ids.tolist())}
    det_video = np.asarray([video_index.get(v, -1) for v in detections.video_ids.tolist()], np.int64)
    wanted = det_video[:, None] * stride + matches.gt_index
    rows = np.searchsorted(keys, np.where(matches.is_tp, wanted, 0))
    return np.where(matches.is_tp, rows, -1).T.astype(np.int64)


@dataclass(frozen=True)
class VideoMatch:
    """Matching outcome of one video's detections at one tIoU threshold (arrays indexed by detection / GT)."""

    matched_gt: np.ndarray  # [N] GT row matched to each detection, -1 for a false positive
    best_tiou: np.ndarray  # [N] highest tIoU with a GT segment of the same class (nan when the class has none)
    error_type: np.ndarray  # [N] DETAD outcome code (TRUE_POSITIVE ... BACKGROUND)
    detection_of_gt: np.ndarray  # [G] detection matched to each GT segment, -1 when missed
    tiou_of_gt: np.ndarray  # [G] tIoU of that match (nan when missed)

    @property
    def is_tp(self) -> np.ndarray:
        return self.matched_gt >= 0

    def take(self, index: np.ndarray) -> VideoMatch:
        """Restrict the detection-indexed arrays to ``index`` (GT-indexed arrays are unchanged)."""
        return VideoMatch(self.matched_gt[index], self.best_tiou[index], self.error_type[index],
                          self.detection_of_gt, self.tiou_of_gt)


def match_video(gt_segments: np.ndarray, gt_labels: np.ndarray, detections: VideoDetections, tiou_threshold: float,
                min_tiou: float = 0.1) -> VideoMatch:
    """Match one video's detections (``segments``/``scores``/``labels`` arrays, seconds) against its ground truth.

    Within one video the evaluator's dataset-wide matching reduces to this video's detections in score order, so
    the outcome is what ``evaluate_detections`` counts.
    """
    segments = np.asarray(detections.segments, np.float64).reshape(-1, 2)
    scores = np.asarray(detections.scores, np.float64).reshape(-1)
    labels = np.asarray(detections.labels, np.int64).reshape(-1)
    gt_segments = np.asarray(gt_segments, np.float64).reshape(-1, 2)
    gt_labels = np.asarray(gt_labels, np.int64).reshape(-1)

    n, g = len(labels), len(gt_labels)
    gt = GroundTruth(np.array(["video"]), np.zeros(g, np.int64), gt_segments[:, 0], gt_segments[:, 1], gt_labels,
                     np.arange(g, dtype=np.int64))
    table = Detections(np.full(n, "video"), segments[:, 0], segments[:, 1], labels, scores)
    matched = _matched_rows(gt, table, [tiou_threshold])[0]
    tiou = pairwise_tiou(segments, gt_segments)
    same_class = labels[:, None] == gt_labels[None, :]
    best = np.where(same_class.any(axis=1), np.where(same_class, tiou, -np.inf).max(axis=1, initial=-np.inf), np.nan)
    codes = classify_false_positives(segments, labels, matched >= 0, gt_segments, gt_labels, tiou_threshold, min_tiou)
    detection_of_gt = np.full(g, -1, np.int64)
    tiou_of_gt = np.full(g, np.nan)
    hits = np.flatnonzero(matched >= 0)
    detection_of_gt[matched[hits]] = hits
    tiou_of_gt[matched[hits]] = tiou[hits, matched[hits]]
    return VideoMatch(matched, best, codes, detection_of_gt, tiou_of_gt)


@dataclass(frozen=True)
class MatchTable:
    """Ground truth and detections of a whole split as flat arrays, with the matching at each tIoU threshold."""

    tiou_thresholds: np.ndarray  # [T]
    gt_video: np.ndarray  # [G] video index
    gt_segments: np.ndarray  # [G, 2] seconds
    gt_labels: np.ndarray  # [G]
    gt_duration: np.ndarray  # [G] duration of the segment's video
    det_video: np.ndarray  # [N] video index (-1: a video without ground truth)
    det_segments: np.ndarray  # [N, 2]
    det_scores: np.ndarray  # [N]
    det_labels: np.ndarray  # [N]
    det_rows: np.ndarray  # [N] row of each detection in the original table
    matched_gt: np.ndarray  # [T, N] matched GT row, -1 for a false positive
    error_type: np.ndarray  # [T, N] DETAD outcome code
    classes: np.ndarray  # class ids present in the ground truth (the classes mAP averages over)
    video_ids: list[str]

    @property
    def average_num_instances(self) -> float:
        """N̄: ground-truth segments per class, DETAD's normaliser."""
        return len(self.gt_labels) / max(len(self.classes), 1)


def match_table(ground_truth: Sequence[VideoRecord], detections: Detections,
                tiou_thresholds: Sequence[float] = (0.5,), *, min_tiou: float = 0.1,
                limit_factor: float | None = None, dedup_gt: bool | str = False) -> MatchTable:
    """Match a ``Detections`` table against a split's ground truth (``VideoRecord`` list) at each threshold.

    Detections of videos absent from ``ground_truth`` are background false positives (the evaluator counts them
    as false positives). ``limit_factor`` keeps, per class, only the best ``limit_factor * G_c`` detections
    (DETAD analyses the top 10 G_c); detections of classes without ground truth are then dropped. ``dedup_gt``
    selects the ground-truth filter as in ``evaluate_detections``.
    """

    records = list(ground_truth)
    gt = GroundTruth.from_records(records, dedup_gt)
    video_ids = gt.video_ids.tolist()
    gt_video, gt_labels = gt.video, gt.labels
    gt_segments = np.stack([gt.starts, gt.ends], axis=1)
    gt_duration = np.asarray([float(r.duration) for r in records], np.float64)[gt_video]
    index = {v: i for i, v in enumerate(video_ids)}
    det_video = np.asarray([index.get(str(v), -1) for v in np.asarray(detections.video_ids)], np.int64)
    det_segments = np.stack([np.asarray(detections.starts, np.float64), np.asarray(detections.ends, np.float64)], 1)
    det_scores = np.asarray(detections.scores, np.float64)
    det_labels = np.asarray(detections.labels, np.int64)
    rows = np.arange(len(det_scores))
    classes = np.unique(gt_labels)
    if limit_factor is not None:
        keep = []
        for c in classes:
            members = rows[det_labels == c]
            members = members[np.argsort(-det_scores[members], kind="stable")]
            keep.append(members[: int(np.sum(gt_labels == c) * limit_factor)])
        rows = np.sort(np.concatenate(keep)) if keep else rows[:0]
    kept = detections.select(rows) if len(rows) != len(det_scores) else detections
    det_video, det_segments, det_scores, det_labels = det_video[rows], det_segments[rows], det_scores[rows], \
        det_labels[rows]
    thresholds = np.asarray(tiou_thresholds, np.float64).reshape(-1)
    matched = _matched_rows(gt, kept, thresholds)
    error_type = np.full(matched.shape, BACKGROUND, np.int64)
    order = np.argsort(det_video, kind="stable")
    bounds = np.searchsorted(det_video[order], np.arange(len(video_ids) + 1))
    gt_bounds = np.searchsorted(gt_video, np.arange(len(video_ids) + 1))
    for v in range(len(video_ids)):
        dets = order[bounds[v]:bounds[v + 1]]
        if not len(dets):
            continue
        gts = slice(gt_bounds[v], gt_bounds[v + 1])
        for t, threshold in enumerate(thresholds):
            error_type[t, dets] = classify_false_positives(det_segments[dets], det_labels[dets], matched[t, dets] >= 0,
                                                           gt_segments[gts], gt_labels[gts], threshold, min_tiou)
    return MatchTable(thresholds, gt_video, gt_segments, gt_labels, gt_duration, det_video, det_segments, det_scores,
                      det_labels, rows, matched, error_type, classes, video_ids)


# ----------------------------------------------------------------------------------------------------------------
# Normalised average precision (DETAD's AP_N)
# ----------------------------------------------------------------------------------------------------------------

def normalized_average_precision(is_tp_in_score_order: np.ndarray, num_positives: int,
                                 average_num_instances: float | None = None) -> float:
    """AP of one class from its detections' true/false-positive flags in descending score order.

    With ``average_num_instances`` (N̄) this is DETAD's AP_N: precision = R·N̄ / (R·N̄ + FP), R the recall;
    without it, R·G / (R·G + FP) = TP / (TP + FP), the ordinary AP.
    """
    if num_positives <= 0:
        return float("nan")
    tp = np.cumsum(np.asarray(is_tp_in_score_order, bool), dtype=np.float64)
    if not len(tp):
        return 0.0
    fp = np.arange(1, len(tp) + 1, dtype=np.float64) - tp
    recall = tp / num_positives
    scale = num_positives if average_num_instances is None else average_num_instances
    precision = recall * scale / (recall * scale + fp)

    return float(interpolated_average_precision(precision[None, :], recall[None, :])[0])


def _class_ap(table: MatchTable, members: np.ndarray, t: int, num_positives: int, normalized: bool) -> float:
    members = members[np.argsort(-table.det_scores[members], kind="stable")]
    return normalized_average_precision(table.matched_gt[t, members] >= 0, num_positives,
                                        table.average_num_instances if normalized else None)


def _average_map(table: MatchTable, keep: np.ndarray, normalized: bool = True) -> float:
    """Average over tIoU thresholds of the mean over classes of AP(_N), using detections where ``keep`` [T, N]."""
    values = np.zeros((len(table.tiou_thresholds), len(table.classes)))
    for k, c in enumerate(table.classes):
        in_class = table.det_labels == c
        npos = int(np.sum(table.gt_labels == c))
        for t in range(len(table.tiou_thresholds)):
            values[t, k] = _class_ap(table, np.flatnonzero(in_class & keep[t]), t, npos, normalized)
    return float(values.mean()) if values.size else float("nan")


# ----------------------------------------------------------------------------------------------------------------
# False-positive profile
# ----------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FalsePositiveAnalysis:
    """DETAD's false-positive analysis of one split."""

    tiou_thresholds: np.ndarray
    group_names: list[str]  # "1G" ... "10G"
    profile: np.ndarray  # [num_groups, 6] share of each outcome per rank group (rows sum to 1 where non-empty)
    group_sizes: np.ndarray  # [num_groups] detections per group
    counts: np.ndarray  # [6] outcomes over all analysed detections, averaged over tIoU thresholds
    average_map_n: float  # baseline average mAP_N of the analysed detections
    map_n_gain: dict[str, float]  # error type -> average mAP_N gain when its detections are removed
    table: MatchTable

    @property
    def error_names(self) -> tuple[str, ...]:
        return ERROR_TYPE_NAMES


def false_positive_analysis(ground_truth: Sequence[VideoRecord], detections: Detections,
                            tiou_thresholds: Sequence[float] = (0.5,), *, min_tiou: float = 0.1,
                            num_groups: int = 10, dedup_gt: bool | str = False
                            ) -> FalsePositiveAnalysis:
    """DETAD's false-positive profile and error-removal impact (see the module docstring).

    ``dedup_gt``: the ground-truth filter of ``evaluate_detections`` (use the run's,
    ``tal_kit.evaluation.protocol.DEDUP_GT``).
    """
    table = match_table(ground_truth, detections, tiou_thresholds, min_tiou=min_tiou, limit_factor=num_groups,
                        dedup_gt=dedup_gt)
    num_t = len(table.tiou_thresholds)
    counts = np.zeros((num_groups, len(ERROR_TYPE_NAMES)))
    sizes = np.zeros(num_groups, np.int64)
    for c in table.classes:
        members = np.flatnonzero(table.det_labels == c)
        members = members[np.argsort(-table.det_scores[members], kind="stable")]
        group_size = int(np.sum(table.gt_labels == c))
        for g in range(num_groups):
            part = members[g * group_size:(g + 1) * group_size]
            sizes[g] += len(part)
            for t in range(num_t):
                counts[g] += np.bincount(table.error_type[t, part], minlength=len(ERROR_TYPE_NAMES)) / num_t
    with np.errstate(invalid="ignore", divide="ignore"):
        profile = np.where(sizes[:, None] > 0, counts / np.maximum(sizes[:, None], 1), 0.0)
    everything = np.ones(table.matched_gt.shape, bool)
    baseline = _average_map(table, everything)
    gain = {}
    for code in range(1, len(ERROR_TYPE_NAMES)):
        gain[ERROR_TYPE_NAMES[code]] = _average_map(table, table.error_type != code) - baseline
    return FalsePositiveAnalysis(table.tiou_thresholds, [f"{g + 1}G" for g in range(num_groups)], profile, sizes,
                                 counts.sum(axis=0), baseline, gain, table)


# ----------------------------------------------------------------------------------------------------------------
# Sensitivity to action length / coverage
# ----------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SensitivityAnalysis:
    """Average mAP_N and recall per bin of a ground-truth characteristic (length in seconds or coverage)."""

    characteristic: str
    bin_edges: np.ndarray  # [B + 1]
    bin_names: list[str]
    average_map_n: np.ndarray  # [B] (nan for an empty bin)
    recall: np.ndarray  # [B] share of the bin's segments matched, averaged over tIoU thresholds
    num_segments: np.ndarray  # [B]
    overall_average_map_n: float
    tiou_thresholds: np.ndarray


def _bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin per value with (e_i, e_{i+1}] intervals, the first closed on the left; -1 outside all bins."""
    index = np.searchsorted(edges, values, side="left") - 1
    index[values == edges[0]] = 0
    index[(values < edges[0]) | (values > edges[-1])] = -1
    return index


def sensitivity_analysis(ground_truth: Sequence[VideoRecord], detections: Detections,
                         tiou_thresholds: Sequence[float] = (0.5,), *, characteristic: str = "length",
                         bins: str | Sequence[float] = "thumos",
                         bin_names: Sequence[str] = BIN_NAMES, dedup_gt: bool | str = False) -> SensitivityAnalysis:
    """DETAD's sensitivity of average mAP_N to a ground-truth characteristic ("length" or "coverage").

    ``bins`` is a DETAD bin set name ("thumos", "activitynet") or explicit edges; ``dedup_gt`` as in
    :func:`false_positive_analysis`.
    """
    if characteristic not in ("length", "coverage"):
        raise ValueError(f"sensitivity_analysis: characteristic must be 'length' or 'coverage', not {characteristic!r}")
    if isinstance(bins, str):
        table_of_bins = LENGTH_BINS if characteristic == "length" else COVERAGE_BINS
        if bins not in table_of_bins:
            raise ValueError(f"sensitivity_analysis: unknown bin set {bins!r}; choose from {sorted(table_of_bins)}")
        bins = table_of_bins[bins]
    edges = np.asarray(bins, np.float64)
    if len(bin_names) != len(edges) - 1:
        raise ValueError(f"sensitivity_analysis: {len(edges) - 1} bins but {len(bin_names)} names")
    table = match_table(ground_truth, detections, tiou_thresholds, dedup_gt=dedup_gt)
    lengths = table.gt_segments[:, 1] - table.gt_segments[:, 0]
    values = lengths if characteristic == "length" else lengths / np.maximum(table.gt_duration, 1e-12)
    gt_bin = _bin_index(values, edges)
    num_t = len(table.tiou_thresholds)
    maps = np.full(len(bin_names), np.nan)
    recall = np.full(len(bin_names), np.nan)
    sizes = np.zeros(len(bin_names), np.int64)
    # A detection matched (at some threshold) to a segment outside the bin takes no part in that bin's AP.
    det_bin = np.where(table.matched_gt >= 0, gt_bin[np.maximum(table.matched_gt, 0)], -2)  # [T, N]; -2 = unmatched
    for b in range(len(bin_names)):
        in_bin = gt_bin == b
        sizes[b] = int(in_bin.sum())
        if not sizes[b]:
            continue
        eligible = np.all((det_bin == b) | (det_bin == -2), axis=0)
        per_class = []
        for c in table.classes:
            npos = int(np.sum(in_bin & (table.gt_labels == c)))
            if not npos:
                continue
            members = np.flatnonzero(eligible & (table.det_labels == c))
            per_class.append(np.mean([_class_ap(table, members, t, npos, True) for t in range(num_t)]))
        maps[b] = float(np.mean(per_class))
        recall[b] = float(np.mean([np.isin(np.flatnonzero(in_bin), table.matched_gt[t]).mean() for t in range(num_t)]))
    overall = _average_map(table, np.ones(table.matched_gt.shape, bool))
    return SensitivityAnalysis(characteristic, edges, list(bin_names), maps, recall, sizes, overall,
                               table.tiou_thresholds)
