"""Test oracle: a literal, deliberately slow transcription of the official ActivityNet detection evaluation.

It follows activitynet/ActivityNet ``Evaluation/eval_detection.py`` (HEAD 82304fa) step by step, as SPEC §F
describes it, in plain Python (lists and floats, one loop iteration per prediction), so that the vectorised
evaluator in tal_kit can be checked against it. Also transcribed: ActionFormer's ground-truth filtering
(``remove_duplicate_annotations`` of the fork and of HEAD) and HEAD's top-k x #GT recall.

The one deliberate change: where the official code orders with ``numpy.argsort(values)[::-1]`` (unstable, so the
order of ties is implementation-defined) this file uses the tal_kit tie rule — equal scores keep input order, equal
tIoUs keep annotation order — so that both implementations answer the same question.

Rows are plain tuples: ground truth ``(video, start, end, label)``, predictions ``(video, start, end, label, score)``.
"""
from __future__ import annotations

import math

TOLERANCE = 1e-3


def filter_ground_truth(rows: list[tuple], mode: str) -> list[tuple]:
    """``"none"``: official (keep all). ``"duplicates"``: the fork's remove_duplicate_annotations. ``"actionformer"``:
    HEAD's, which also refuses segments shorter than the tolerance. Applied per video, in annotation order."""
    if mode == "none":
        return list(rows)
    kept_per_video: dict[str, list[tuple]] = {}
    out = []
    for row in rows:
        video, start, end, label = row[:4]
        valid = True
        if mode == "actionformer" and not (end - start) >= TOLERANCE:
            valid = False
        for other in kept_per_video.get(video, []):
            if abs(start - other[1]) <= TOLERANCE and abs(end - other[2]) <= TOLERANCE and label == other[3]:
                valid = False
                break
        if valid:
            kept_per_video.setdefault(video, []).append(row)
            out.append(row)
    return out


def tiou(pred_start: float, pred_end: float, gt_start: float, gt_end: float) -> float:
    """The official segment_iou for one pair: NaN when the union is zero (0/0 in NumPy)."""
    intersection = max(min(pred_end, gt_end) - max(pred_start, gt_start), 0.0)
    union = (gt_end - gt_start) + (pred_end - pred_start) - intersection
    if union == 0:
        return math.nan
    return intersection / union


def descending(values: list[float]) -> list[int]:
    """Indices by value, highest first; NaN counts as highest (NumPy sorts NaN last, and the official code reverses
    the ascending order); ties keep index order (the tal_kit rule)."""
    return sorted(range(len(values)), key=lambda i: (0 if math.isnan(values[i]) else 1,
                                                     0.0 if math.isnan(values[i]) else -values[i], i))


def interpolated_prec_rec(precision: list[float], recall: list[float]) -> float:
    """VOC2011 interpolated AP, as the official interpolated_prec_rec."""
    mprec = [0.0] + list(precision) + [0.0]
    mrec = [0.0] + list(recall) + [1.0]
    for i in range(len(mprec) - 2, -1, -1):
        mprec[i] = max(mprec[i], mprec[i + 1])
    ap = 0.0
    for i in range(1, len(mrec)):
        if mrec[i] != mrec[i - 1]:
            ap += (mrec[i] - mrec[i - 1]) * mprec[i]
    return ap


def average_precision_one_class(gt: list[tuple], preds: list[tuple], thresholds: list[float]) -> tuple[list, list]:
    """The official compute_average_precision_detection for one class.

    Returns (AP per threshold, per threshold a list over the ranked predictions of the matched gt position or -1).
    """
    if not preds:
        return [0.0] * len(thresholds), [[] for _ in thresholds]
    npos = float(len(gt))
    lock_gt = [[-1] * len(gt) for _ in thresholds]
    order = descending([p[4] for p in preds])
    ranked = [preds[i] for i in order]
    tp = [[0] * len(ranked) for _ in thresholds]
    fp = [[0] * len(ranked) for _ in thresholds]
    matched = [[-1] * len(ranked) for _ in thresholds]
    gt_by_video: dict[str, list[int]] = {}
    for j, row in enumerate(gt):
        gt_by_video.setdefault(row[0], []).append(j)

    for idx, pred in enumerate(ranked):
        if pred[0] not in gt_by_video:  # no ground truth of this class in the video
            for t in range(len(thresholds)):
                fp[t][idx] = 1
            continue
        candidates = gt_by_video[pred[0]]
        tiou_arr = [tiou(pred[1], pred[2], gt[j][1], gt[j][2]) for j in candidates]
        walk = descending(tiou_arr)
        for t, threshold in enumerate(thresholds):
            for jdx in walk:
                if tiou_arr[jdx] < threshold:
                    fp[t][idx] = 1
                    break
                if lock_gt[t][candidates[jdx]] >= 0:
                    continue
                tp[t][idx] = 1
                lock_gt[t][candidates[jdx]] = idx
                matched[t][idx] = candidates[jdx]
                break
            if fp[t][idx] == 0 and tp[t][idx] == 0:
                fp[t][idx] = 1

    ap = []
    for t in range(len(thresholds)):
        tp_sum = fp_sum = 0
        precision, recall = [], []
        for idx in range(len(ranked)):
            tp_sum += tp[t][idx]
            fp_sum += fp[t][idx]
            recall.append(tp_sum / npos)
            precision.append(tp_sum / (tp_sum + fp_sum))
        ap.append(interpolated_prec_rec(precision, recall))
    return ap, matched


def topkx_recall_one_class(gt: list[tuple], preds: list[tuple], thresholds: list[float],
                           top_k: tuple[int, ...]) -> list[list[float]]:
    """ActionFormer HEAD's compute_topkx_recall_detection for one class: [threshold][k]."""
    if not preds:
        return [[0.0] * len(top_k) for _ in thresholds]
    found = [[0] * len(top_k) for _ in thresholds]
    n_gts = 0
    videos = []
    for row in gt:
        if row[0] not in videos:
            videos.append(row[0])
    for video in videos:
        this_gt = [row for row in gt if row[0] == video]
        n_gts += len(this_gt)
        this_pred = [p for p in preds if p[0] == video]
        if not this_pred:
            continue
        order = descending([p[4] for p in this_pred])[: max(top_k) * len(this_gt)]
        for t, threshold in enumerate(thresholds):
            for kidx, k in enumerate(top_k):
                top = [this_pred[i] for i in order[: k * len(this_gt)]]
                for g in this_gt:
                    if any(tiou(p[1], p[2], g[1], g[2]) >= threshold for p in top):
                        found[t][kidx] += 1
    return [[found[t][kidx] / n_gts for kidx in range(len(top_k))] for t in range(len(thresholds))]


def evaluate(gt_rows: list[tuple], pred_rows: list[tuple], thresholds: list[float], *, dedup: str = "none",
             top_k: tuple[int, ...] = (1, 5)) -> dict:
    """Per-class AP, mAP, average mAP and recall over the classes present in the (filtered) ground truth.

    Every predicted label must be a ground-truth class (the official code raises KeyError otherwise)."""
    gt_rows = filter_ground_truth(gt_rows, dedup)
    classes = []
    for row in gt_rows:  # order of first appearance, as the official activity_index
        if row[3] not in classes:
            classes.append(row[3])
    for pred in pred_rows:
        if pred[3] not in classes:
            raise KeyError(pred[3])
    ap, recall, matched = {}, {}, {}
    for label in classes:
        gt = [row for row in gt_rows if row[3] == label]
        preds = [row for row in pred_rows if row[3] == label]
        ap[label], matched[label] = average_precision_one_class(gt, preds, thresholds)
        recall[label] = topkx_recall_one_class(gt, preds, thresholds, top_k)
    mean_ap = [sum(ap[c][t] for c in classes) / len(classes) for t in range(len(thresholds))]
    return {"ap": ap, "mAP": mean_ap, "average_mAP": sum(mean_ap) / len(mean_ap), "recall": recall,
            "classes": classes, "gt_rows": gt_rows}
