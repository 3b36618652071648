"""The settings of one NMS call, validated once and shared by every backend."""
from __future__ import annotations

import math
from dataclasses import dataclass

from tal_kit.config import TestConfig

METHODS = ("soft", "hard", "none")
SOFT_KINDS = ("gaussian", "linear")
VOTING_WEIGHTS = ("score", "score_iou")

# Added to every segment length in the NMS IoU (SPEC §E.2), so that zero-length segments do not divide by zero.
IOU_EPS = 1e-6


@dataclass(frozen=True)
class NMSParams:
    """What `batched_nms` does to each video's candidates (names as in ``cfg.test_cfg``, SPEC §E).

    method:         "soft" (selection-sort soft-NMS), "hard" (greedy NMS) or "none" (keep all, sorted by score)
    soft_kind:      soft-NMS decay: "gaussian" w = exp(-IoU^2 / sigma), "linear" w = 1 - IoU where IoU >= iou_threshold
    iou_threshold:  suppression threshold of hard NMS and linear soft-NMS (Gaussian soft-NMS ignores it)
    sigma:          Gaussian soft-NMS divisor (not 2 sigma^2: the published formula)
    min_score:      soft-NMS drops a candidate whose decayed score falls below it; hard NMS keeps scores > min_score
    max_seg_num:    detections kept per video (and per class before the final merge); None keeps all
    multiclass:     run NMS per label and merge; otherwise one class-agnostic run per video
    voting_thresh:  class-agnostic mode only: > 0 refines each kept segment by its IoU >= voting_thresh neighbours
    voting_weight:  neighbour weight in voting: "score" (InternVideo's fork) or "score_iou" (ActionFormer HEAD)
    """

    iou_threshold: float
    min_score: float
    max_seg_num: int | None
    method: str = "soft"
    soft_kind: str = "gaussian"
    sigma: float = 0.5
    multiclass: bool = True
    voting_thresh: float = 0.0
    voting_weight: str = "score"

    def __post_init__(self) -> None:
        def bad(field: str, value: object, why: str) -> ValueError:
            return ValueError(f"NMS setting {field}={value!r}: {why}")

        if self.method not in METHODS:
            raise bad("method", self.method, f"expected one of {METHODS}")
        if self.soft_kind not in SOFT_KINDS:
            raise bad("soft_kind", self.soft_kind, f"expected one of {SOFT_KINDS}")
        if self.voting_weight not in VOTING_WEIGHTS:
            raise bad("voting_weight", self.voting_weight, f"expected one of {VOTING_WEIGHTS}")
        for field in ("iou_threshold", "min_score", "sigma", "voting_thresh"):
            value = getattr(self, field)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise bad(field, value, "expected a finite number")
        if self.sigma <= 0:
            raise bad("sigma", self.sigma, "must be positive (Gaussian weight exp(-IoU^2 / sigma))")
        if self.max_seg_num is not None and (isinstance(self.max_seg_num, bool) or not isinstance(self.max_seg_num, int)
                                             or self.max_seg_num <= 0):
            raise bad("max_seg_num", self.max_seg_num, "expected a positive int or None (keep all)")

    @property
    def cap(self) -> int:
        """max_seg_num as a number the kernels understand (-1: no cap)."""
        return -1 if self.max_seg_num is None else int(self.max_seg_num)

    @property
    def uses_voting(self) -> bool:
        return (not self.multiclass) and self.voting_thresh > 0 and self.method != "none"


def params_from_test_cfg(test_cfg: TestConfig) -> dict:
    """Keyword arguments for `batched_nms` / `nms_videos` from a ``cfg.test_cfg`` (tal_kit.config.TestConfig)."""
    return dict(
        iou_threshold=float(test_cfg.iou_threshold),
        min_score=float(test_cfg.min_score),
        max_seg_num=int(test_cfg.max_seg_num),
        method=test_cfg.nms_method,
        soft_kind=test_cfg.soft_nms_kind,
        sigma=float(test_cfg.nms_sigma),
        multiclass=bool(test_cfg.multiclass_nms),
        voting_thresh=float(test_cfg.voting_thresh),
        voting_weight=test_cfg.voting_weight,
    )
