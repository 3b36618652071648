"""The evaluation protocol of a run: which ground truth, the evaluator's filters, score fusion from the config,
and the metrics.json schema.

Every place that scores a model's detections for a config goes through here (``tal_kit.infer``, evaluation during
training, NMS sweeps, ``python -m tal_kit viz``, notebooks), so that they all count the same way.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from tal_kit.config import resolve_path
from tal_kit.data.annotations import load_annotations
from tal_kit.detections import Detections
from tal_kit.evaluation.fusion import fuse_scores, load_class_scores
from tal_kit.evaluation.metrics import evaluate_detections

if TYPE_CHECKING:
    from tal_kit.config import Config
    from tal_kit.data.annotations import VideoRecord
    from tal_kit.evaluation.metric_kind import MetricKind
    from tal_kit.evaluation.metrics import EvaluationResult

__all__ = ["DEDUP_GT", "UNKNOWN_LABELS", "ground_truth_for", "fuse_for_config", "to_detections", "score",
           "metrics_summary", "format_metrics_line"]

# The evaluator's ground-truth filter and unknown-label policy, as in InternVideo's ActionFormer fork (SPEC §F.1):
# duplicate ground-truth segments are dropped, a predicted class without ground truth adds no false positives.
DEDUP_GT = "duplicates"
UNKNOWN_LABELS = "ignore"


def ground_truth_for(cfg: Config, data_root: str | Path | None, split: Sequence[str]
                     ) -> tuple[list[VideoRecord], list[str]]:
    """The evaluated videos' ground truth and the class names detections are scored against.

    Single-class presets (ANet, HACS, FineAction) evaluate class-agnostically, unless video-level scores give the
    detections real classes (``test_cfg.ext_score_file``): then the ground truth keeps its classes.
    """
    fused = cfg.test_cfg.ext_score_file is not None
    single_class = cfg.dataset.num_classes == 1 and not fused
    db = load_annotations(resolve_path(cfg, data_root, cfg.dataset.json_file), single_class=single_class)
    return db.select(split), list(db.label_names)


def fuse_for_config(detections: Detections, cfg: Config, data_root: str | Path | None) -> Detections:
    """``detections`` with classes from video-level scores when ``test_cfg.ext_score_file`` is set (SPEC §B.3),
    by the config's fusion rule (``fusion_topk``, ``fusion_num_pred``, ``fusion_softmax``); else unchanged."""
    test_cfg = cfg.test_cfg
    if test_cfg.ext_score_file is None:
        return detections
    path = resolve_path(cfg, data_root, test_cfg.ext_score_file)
    return fuse_scores(detections, load_class_scores(path), topk=test_cfg.fusion_topk,
                       num_pred=test_cfg.fusion_num_pred, softmax_out_of_range=test_cfg.fusion_softmax, source=path)


def to_detections(video_outputs: Sequence[Mapping[str, Any]], cfg: Config,
                  data_root: str | Path | None) -> Detections:
    """The detection table of per-video outputs (seconds), fused as the config says (:func:`fuse_for_config`)."""
    return fuse_for_config(Detections.from_video_dicts(video_outputs), cfg, data_root)


def score(detections: Detections, ground_truth: Sequence[VideoRecord], label_names: Sequence[str],
          cfg: Config) -> EvaluationResult:
    """ActivityNet mAP at ``dataset.tiou_thresholds`` with the run's filters (:data:`DEDUP_GT`,
    :data:`UNKNOWN_LABELS`)."""
    return evaluate_detections(ground_truth, detections, cfg.dataset.tiou_thresholds, label_names=label_names,
                               dedup_gt=DEDUP_GT, unknown_labels=UNKNOWN_LABELS)


def metrics_summary(result: EvaluationResult, *, epoch: int | None, which: str | None,
                    metric: MetricKind | None = None) -> dict[str, Any]:
    """The content of metrics.json: fractions (not percent), per-class AP by class name, and (with ``metric``)
    what the mAP measures."""
    summary = result.to_dict(per_class=True)
    ordered = {key: summary.pop(key) for key in ("tiou_thresholds", "mAP", "average_mAP", "per_class_ap")}
    described = {"metric": metric.to_dict()} if metric is not None else {}
    return {**described, **ordered, "epoch": epoch, "which": which, **summary}


def format_metrics_line(summary: Mapping[str, Any]) -> str:
    """One line for a console from a metrics.json summary: the mAP per tIoU and the average, named by what they
    measure."""
    metric = summary.get("metric") or {}
    thresholds = " ".join(f"{t:g}" for t in summary["tiou_thresholds"])
    values = " ".join(f"{100 * v:.2f}" for v in summary["mAP"])
    line = (f"{metric.get('name', 'mAP')} (%) at tIoU {thresholds}: {values}; "
            f"average {100 * summary['average_mAP']:.2f}")
    return line + (f"\n  ({metric['note']})" if metric.get("note") else "")
