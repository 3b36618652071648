"""Decoding the dense outputs of one video into candidate segments, before NMS (SPEC §D.11 step 1)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


@torch.no_grad()
def decode_candidates(cls_logits: Sequence[Tensor], offsets: Sequence[Tensor], masks: Sequence[Tensor],
                      points: Sequence[Tensor], *, pre_nms_thresh: float, pre_nms_topk: int,
                      duration_thresh: float) -> dict[str, Tensor]:
    """Candidates of one video, level by level, concatenated.

    Per level l, with logits [T_l, K], offsets [T_l, 2], mask [T_l] and points [T_l, 4] (t, lo, hi, stride):
      score = sigmoid(logit) on real steps (0 on padding); keep (point, class) pairs with score > pre_nms_thresh;
      keep the pre_nms_topk best of those *per level*; segment = (t - left * stride, t + right * stride);
      drop segments not longer than duration_thresh (grid units).
    Returns {"segments" [M, 2] input-grid units, "scores" [M], "labels" [M] int64}.
    """
    segments, scores, labels = [], [], []
    for logits_l, offsets_l, mask_l, points_l in zip(cls_logits, offsets, masks, points):
        num_classes = logits_l.shape[-1]
        prob = (torch.sigmoid(logits_l) * mask_l[:, None]).flatten()
        candidate = torch.nonzero(prob > pre_nms_thresh).squeeze(1)
        prob = prob[candidate]
        prob, order = prob.sort(descending=True)
        prob, candidate = prob[:pre_nms_topk], candidate[order[:pre_nms_topk]]
        step = torch.div(candidate, num_classes, rounding_mode="floor")
        label = candidate % num_classes
        t, stride = points_l[step, 0], points_l[step, 3]
        left = t - offsets_l[step, 0] * stride
        right = t + offsets_l[step, 1] * stride
        long_enough = (right - left) > duration_thresh
        segments.append(torch.stack([left, right], dim=-1)[long_enough])
        scores.append(prob[long_enough])
        labels.append(label[long_enough])
    return {"segments": torch.cat(segments), "scores": torch.cat(scores), "labels": torch.cat(labels)}
