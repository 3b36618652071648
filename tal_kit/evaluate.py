"""ActivityNet detection mAP (exact), recall, and score fusion with video-level classifiers.

The implementation lives in :mod:`tal_kit.evaluation`; this module is the stable entry point::

    from tal_kit.evaluate import evaluate_detections
    result = evaluate_detections(db.select(["Test"]), detections, [0.3, 0.4, 0.5, 0.6, 0.7],
                                 label_names=db.label_names)
    result.mAP, result.average_mAP, result.ap, result.pr_curves, result.recall_at_k
"""
from tal_kit.evaluation import (DEDUP_MODES, DetectionMatches, EvaluationError, EvaluationResult, FusionError,
                                GroundTruth, PRCurve, evaluate_detections, fuse_scores,
                                interpolated_average_precision, load_class_scores, match_detections, segment_tiou)
from tal_kit.evaluation.cli import cli_evaluate, parse_tiou_thresholds

__all__ = ["evaluate_detections", "match_detections", "EvaluationResult", "DetectionMatches", "PRCurve",
           "EvaluationError", "GroundTruth", "DEDUP_MODES", "fuse_scores", "load_class_scores", "FusionError",
           "segment_tiou", "interpolated_average_precision", "cli_evaluate", "parse_tiou_thresholds"]
