"""NMS replayed on cached pre-NMS candidates: settings by the config's names, one video, a split, a sweep.

What the model's post-processing does after decoding (SPEC §D.11 steps 2-4: NMS, grid -> seconds, clipping),
run on :class:`~tal_kit.inference.candidates.VideoCandidates` instead of a forward pass, so other NMS settings
cost milliseconds. Scoring a sweep is the caller's (``score``): this module knows nothing of the evaluation.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np
import torch

from tal_kit.config import TestConfig
from tal_kit.detections import Detections
from tal_kit.inference.candidates import VideoCandidates, VideoDetections
from tal_kit.ops import batched_nms, params_from_test_cfg

__all__ = ["nms_settings", "apply_nms", "detections_from_candidates", "nms_sweep", "default_nms_variants"]

# The config's name (canonical) of each NMS setting whose tal_kit.ops keyword differs; the others share one name.
_CONFIG_NAME_OF_OPS_KEYWORD = {"method": "nms_method", "soft_kind": "soft_nms_kind", "sigma": "nms_sigma",
                               "multiclass": "multiclass_nms"}


def nms_settings(test_cfg: TestConfig | None = None, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments of ``tal_kit.ops.batched_nms`` from a ``cfg.test_cfg`` (default: TestConfig()), with
    ``overrides`` by the config's names (``nms_method="hard", iou_threshold=0.5, nms_sigma=0.9, max_seg_num=100,
    multiclass_nms=False, voting_thresh=0.75``, ...) or by ``batched_nms``'s own (``method``, ``sigma``, ...)."""
    settings = params_from_test_cfg(test_cfg if test_cfg is not None else TestConfig())
    ops_keyword = {_CONFIG_NAME_OF_OPS_KEYWORD.get(name, name): name for name in settings}  # config name -> ops
    changes: dict[str, Any] = {}
    for name, value in overrides.items():
        config_name = _CONFIG_NAME_OF_OPS_KEYWORD.get(name, name)
        if config_name not in ops_keyword:
            raise ValueError(f"nms_settings: unknown setting {name!r}; known: {sorted(ops_keyword)}")
        if config_name in changes:
            raise ValueError(f"nms_settings: {config_name} given twice (as {name!r} and by its other name)")
        changes[config_name] = value
    settings.update({ops_keyword[name]: value for name, value in changes.items()})
    return settings


def apply_nms(candidates: VideoCandidates, settings: Mapping[str, Any], backend: str = "auto") -> VideoDetections:
    """NMS on one video's candidates, then seconds and clipping, as the model's post-processing does."""
    segments, scores, labels = batched_nms(torch.as_tensor(candidates.segments, dtype=torch.float32),
                                           torch.as_tensor(candidates.scores, dtype=torch.float32),
                                           torch.as_tensor(candidates.labels, dtype=torch.int64),
                                           backend=backend, **settings)
    seconds = candidates.grid.grid_to_seconds(segments.double().numpy())
    seconds = np.clip(seconds, 0.0, candidates.duration)
    return VideoDetections(seconds.reshape(-1, 2), scores.double().numpy(), labels.numpy().astype(np.int64))


def detections_from_candidates(candidates: Mapping[str, VideoCandidates], settings: Mapping[str, Any]) -> Detections:
    """A ``Detections`` table: :func:`apply_nms` on every video."""
    outputs = []
    for video_id, cand in candidates.items():
        det = apply_nms(cand, settings)
        outputs.append({"video_id": video_id, "segments": det.segments, "scores": det.scores, "labels": det.labels})
    return Detections.from_video_dicts(outputs)


class Scores(Protocol):
    """What a sweep reads of a score: mAP per tIoU threshold and their average (an EvaluationResult has both)."""

    mAP: Sequence[float]
    average_mAP: float


def nms_sweep(candidates: Mapping[str, VideoCandidates], variants: Mapping[str, Mapping[str, Any]],
              score: Callable[[Detections], Scores], test_cfg: TestConfig | None = None) -> list[dict[str, Any]]:
    """Re-run NMS on cached candidates with other settings and score each variant (no network needed).

    ``variants`` maps a name to :func:`nms_settings` overrides of ``test_cfg``'s settings, e.g.
    ``{"hard NMS 0.5": {"nms_method": "hard", "iou_threshold": 0.5}, "sigma 0.9": {"nms_sigma": 0.9}}``;
    ``score`` turns a split's detections into its mAP. Returns one row per variant: name, the changed settings,
    mAP per tIoU, average mAP and the number of detections.
    """
    if not candidates:
        raise ValueError("no pre-NMS candidates to sweep NMS on; evaluate with keep_candidates=True")
    rows = []
    for name, changes in variants.items():
        detections = detections_from_candidates(candidates, nms_settings(test_cfg, **dict(changes)))
        result = score(detections)
        rows.append({"name": name, **dict(changes), "mAP": [float(v) for v in result.mAP],
                     "average_mAP": float(result.average_mAP), "num_detections": len(detections)})
    return rows


def default_nms_variants(test_cfg: TestConfig) -> dict[str, dict[str, Any]]:
    """A small tour of NMS settings around the config's: softer/harder Gaussian decay, greedy hard NMS at two
    thresholds, no NMS at all, and fewer detections per video. Keys name the variant; values are the changes
    (by the config's names)."""
    kind = "per class" if test_cfg.multiclass_nms else "class-agnostic"
    fewer = max(1, test_cfg.max_seg_num // 4)
    return {
        f"config: {test_cfg.nms_method} NMS ({kind}), sigma {test_cfg.nms_sigma:g}": {},
        "Gaussian soft-NMS, sigma 0.25": {"nms_method": "soft", "soft_nms_kind": "gaussian", "nms_sigma": 0.25},
        "Gaussian soft-NMS, sigma 0.9": {"nms_method": "soft", "soft_nms_kind": "gaussian", "nms_sigma": 0.9},
        "hard NMS, IoU 0.3": {"nms_method": "hard", "iou_threshold": 0.3},
        "hard NMS, IoU 0.6": {"nms_method": "hard", "iou_threshold": 0.6},
        "no NMS": {"nms_method": "none"},
        f"config, at most {fewer} per video": {"max_seg_num": fewer},
    }
