"""Training losses (SPEC §D.6): sigmoid focal loss for the dense classification, 1-D DIoU for the offsets, and the
running normalizer that divides both by a smoothed count of positive points."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def sigmoid_focal_loss(logits: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Element-wise focal loss (RetinaNet) with soft targets, in float32:
    alpha_t * (1 - p_t)^gamma * BCE(logits, targets), p_t = p*y + (1-p)(1-y), alpha_t = alpha*y + (1-alpha)(1-y);
    alpha < 0 disables the alpha weighting."""
    logits, targets = logits.float(), targets.float()
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss


def diou_loss_1d(pred: Tensor, target: Tensor, eps: float = 1e-8) -> Tensor:
    """Element-wise 1-D distance-IoU loss for segments given as (left, right) distances from a shared point:
    1 - IoU + (centre distance / enclosing length)^2. pred, target: [..., 2], non-negative."""
    pred, target = pred.float(), target.float()
    lp, rp = pred[..., 0], pred[..., 1]
    lg, rg = target[..., 0], target[..., 1]
    intersection = torch.minimum(lp, lg) + torch.minimum(rp, rg)
    union = lp + rp + lg + rg - intersection
    iou = intersection / union.clamp(min=eps)
    enclosing = torch.maximum(lp, lg) + torch.maximum(rp, rg)
    centre_gap = 0.5 * ((rp - lp) - (rg - lg))
    return 1.0 - iou + torch.square(centre_gap / enclosing.clamp(min=eps))


def smooth_labels(targets: Tensor, label_smoothing: float, num_classes: int) -> Tensor:
    """y' = y (1 - eps) + eps / (K + 1), upstream's smoothing of one-hot (or multi-hot) targets."""
    if label_smoothing == 0:
        return targets
    return targets * (1 - label_smoothing) + label_smoothing / (num_classes + 1)


def updated_loss_normalizer(normalizer: Tensor, num_pos: Tensor, momentum: float = 0.9) -> Tensor:
    """N <- momentum * N + (1 - momentum) * max(num_pos, 1): an EMA of the positives per batch, which keeps the
    loss scale steady when small batches have few positives."""
    return momentum * normalizer + (1 - momentum) * num_pos.clamp(min=1).to(normalizer.dtype)
