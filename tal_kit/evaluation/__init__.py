"""Evaluation: exact ActivityNet detection mAP (matching, AP, recall), ground-truth filtering and score fusion.

``tal_kit.evaluate`` re-exports the public API; the modules:

* :mod:`~tal_kit.evaluation.ground_truth` — evaluated videos' segments as arrays; the ``dedup_gt`` variants.
* :mod:`~tal_kit.evaluation.matching` — tIoU, the tie rule, the vectorised greedy matching.
* :mod:`~tal_kit.evaluation.metrics` — AP, mAP, PR curves, recall at k x #GT, :func:`evaluate_detections`.
* :mod:`~tal_kit.evaluation.fusion` — external video-level class scores (SPEC §B.3).
* :mod:`~tal_kit.evaluation.protocol` — a run's protocol: which ground truth, the filters, fusion from the config,
  the metrics.json schema.
* :mod:`~tal_kit.evaluation.detad` — DETAD's error analysis (false-positive classes, sensitivity, mAP_N).
* :mod:`~tal_kit.evaluation.cli` — ``python -m tal_kit evaluate``.
"""
from tal_kit.evaluation.fusion import FusionError, fuse_scores, load_class_scores
from tal_kit.evaluation.ground_truth import DEDUP_MODES, GroundTruth
from tal_kit.segments import segment_tiou
from tal_kit.evaluation.metrics import (DetectionMatches, EvaluationError, EvaluationResult, PRCurve,
                                        evaluate_detections, interpolated_average_precision, match_detections)

__all__ = ["evaluate_detections", "match_detections", "EvaluationResult", "DetectionMatches", "PRCurve",
           "EvaluationError", "GroundTruth", "DEDUP_MODES", "fuse_scores", "load_class_scores", "FusionError",
           "segment_tiou", "interpolated_average_precision"]
