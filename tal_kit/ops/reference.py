"""Pure-torch 1-D NMS: the readable reference every other backend is tested against, and the fallback.

It follows SPEC §E step by step (one Python iteration per kept detection), in float32 with the same operation order
as ActionFormer's ``nms_cpu.cpp``, so the C++ and CUDA kernels can be required to keep identical indices:

* NMS IoU: every length gets +1e-6 (``IOU_EPS``), no "+1": inter / (len_i + 1e-6 + len_j + 1e-6 - inter).
* Soft-NMS is a selection sort. Each step picks the largest current score, ties going to the earliest position of
  the *current* order (which earlier swaps have perturbed), swaps it to the front, decays every later candidate and
  drops those whose decayed score is < min_score, filling each hole with the last candidate of the array. The first
  pick is never tested against min_score. The Gaussian weight exp(-IoU^2/sigma) is evaluated as exp in float64 of
  the float32 exponent, rounded to float32: all three backends then agree to the bit (float32 ``exp``
  implementations differ by an ulp between libm, SLEEF and CUDA).
* Picking stops after max_seg_num detections: later steps cannot change earlier picks, so this equals running the
  whole sort and truncating, as the fork does.
* Hard NMS orders candidates by a *stable* descending sort of the scores (ties: lower input index first; ATen's sort
  used by the fork leaves tie order unspecified), keeps scores > min_score when min_score > 0, and suppresses every
  later candidate with IoU >= iou_threshold.
* Segment voting IoU has no epsilon. Where the fork would divide 0 by 0 (two zero-length segments), the IoU is 1 if
  the two segments coincide and 0 otherwise; voting sums run in float64.
* The final merge is a stable descending sort by score over [class 0 picks, class 1 picks, ...] (classes ascending,
  each in pick order), truncated to max_seg_num.

Everything runs on the CPU (one Python step per detection would be slow anywhere else); results come back on the
input's device.
"""
from __future__ import annotations

import torch

from .params import IOU_EPS, NMSParams

Tensor = torch.Tensor


def _f32(value: float) -> Tensor:
    """A float32 scalar tensor: thresholds are compared in float32, as the C++ code's float parameters are."""
    return torch.tensor(value, dtype=torch.float32)


def nms_iou(x1p: Tensor, x2p: Tensor, areap: Tensor, x1: Tensor, x2: Tensor, area: Tensor) -> Tensor:
    """IoU of one picked segment with many, epsilon lengths included (``area = x2 - x1 + 1e-6``)."""
    inter = (torch.minimum(x2, x2p) - torch.maximum(x1, x1p)).clamp(min=0)
    return inter / (areap + area - inter)


def decay_weights(iou: Tensor, params: NMSParams) -> Tensor:
    """Soft-NMS multiplier for each overlapping candidate (float32)."""
    if params.soft_kind == "gaussian":
        weights = torch.ones_like(iou)
        overlapping = iou != 0  # exp(-0) is exactly 1; skipping those saves most of the (slow) float64 exp calls
        exponent = -(iou[overlapping] * iou[overlapping]) / _f32(params.sigma)
        weights[overlapping] = torch.exp(exponent.double()).float()
        return weights
    return torch.where(iou >= _f32(params.iou_threshold), 1 - iou, torch.ones_like(iou))


def _drop_and_fill_from_back(positions: Tensor, scores: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
    """The order the C++ loop leaves after dropping: each dropped slot, front to back, receives the last kept
    candidate still behind the shrinking end of the array (dropped ones found there are discarded on the way)."""
    num_kept = int(keep.sum())
    holes = (~keep[:num_kept]).nonzero().squeeze(1)
    movers = (keep[num_kept:].nonzero().squeeze(1) + num_kept).flip(0)
    new_positions, new_scores = positions[:num_kept].clone(), scores[:num_kept].clone()
    new_positions[holes] = positions[movers]
    new_scores[holes] = scores[movers]
    return new_positions, new_scores


def soft_nms_group(x1: Tensor, x2: Tensor, scores: Tensor, params: NMSParams) -> tuple[Tensor, Tensor]:
    """Soft-NMS of one group (float32 CPU tensors). Returns (positions in the group, decayed scores), pick order."""
    area = (x2 - x1) + IOU_EPS
    min_score = _f32(params.min_score)
    cap = params.cap if params.cap > 0 else len(scores)
    positions = torch.arange(len(scores))
    current = scores.clone()
    picked, picked_scores = [], []
    while len(positions) and len(picked) < cap:
        best = int(torch.argmax(current))  # argmax returns the first maximum: the C++ strict '<' scan
        if best:
            positions[[0, best]] = positions[[best, 0]]
            current[[0, best]] = current[[best, 0]]
        p = positions[0]
        picked.append(p)
        picked_scores.append(current[0])
        positions, current = positions[1:], current[1:]
        if not len(positions) or len(picked) == cap:
            break
        iou = nms_iou(x1[p], x2[p], area[p], x1[positions], x2[positions], area[positions])
        current = current * decay_weights(iou, params)
        positions, current = _drop_and_fill_from_back(positions, current, ~(current < min_score))
    if not picked:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.float32)
    return torch.stack(picked), torch.stack(picked_scores)


def hard_nms_group(x1: Tensor, x2: Tensor, scores: Tensor, params: NMSParams) -> tuple[Tensor, Tensor]:
    """Greedy NMS of one group. Returns (positions in the group, scores), descending score order."""
    order = torch.sort(scores, descending=True, stable=True).indices
    if params.min_score > 0:
        order = order[scores[order] > _f32(params.min_score)]
    area = (x2 - x1) + IOU_EPS
    cap = params.cap if params.cap > 0 else len(scores)
    threshold = _f32(params.iou_threshold)
    alive = torch.ones(len(order), dtype=torch.bool)
    picked = []
    for rank in range(len(order)):
        if len(picked) == cap:
            break
        if not alive[rank]:
            continue
        p = order[rank]
        picked.append(p)
        later = order[rank + 1:]
        iou = nms_iou(x1[p], x2[p], area[p], x1[later], x2[later], area[later])
        alive[rank + 1:] &= ~(iou >= threshold)
    positions = torch.stack(picked) if picked else torch.zeros(0, dtype=torch.long)
    return positions, scores[positions]


def vote_segments(kept: Tensor, candidates: Tensor, candidate_scores: Tensor, params: NMSParams) -> Tensor:
    """Segment voting: each kept segment becomes the weighted mean of the candidates with IoU >= voting_thresh.

    kept [K, 2], candidates [N, 2], candidate_scores [N] (float32, undecayed). Weight: score (or score x IoU).
    """
    s_k, e_k = kept[:, :1], kept[:, 1:]
    s_c, e_c = candidates[None, :, 0], candidates[None, :, 1]
    inter = (torch.minimum(e_k, e_c) - torch.maximum(s_k, s_c)).clamp(min=0)
    union = (e_k - s_k) + (e_c - s_c) - inter
    coincide = ((s_k == s_c) & (e_k == e_c)).float()
    iou = torch.where(union > 0, inter / torch.where(union > 0, union, torch.ones_like(union)), coincide)
    weights = (iou >= _f32(params.voting_thresh)).double() * candidate_scores.double()[None, :]
    if params.voting_weight == "score_iou":
        weights = weights * iou.double()
    total = weights.sum(dim=1, keepdim=True)
    refined = (weights @ candidates.double()) / torch.where(total > 0, total, torch.ones_like(total))
    return torch.where(total > 0, refined, kept.double()).float()


def nms_one_video(segments: Tensor, scores: Tensor, labels: Tensor, params: NMSParams) -> tuple[Tensor, Tensor, Tensor]:
    """NMS of one video's candidates (float32 / int64 CPU tensors).

    Returns (indices into the inputs, scores, segments) of the kept detections, sorted by score (stable).
    """
    if len(scores) == 0:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0), torch.zeros(0, 2)
    if params.method == "none":
        order = torch.sort(scores, descending=True, stable=True).indices
        return order, scores[order], segments[order]
    if params.multiclass:
        groups = [(labels == label).nonzero().squeeze(1) for label in torch.unique(labels)]
    else:
        groups = [torch.arange(len(scores))]
    group_nms = soft_nms_group if params.method == "soft" else hard_nms_group
    kept_parts, score_parts = [], []
    for members in groups:
        positions, kept_scores = group_nms(segments[members, 0], segments[members, 1], scores[members], params)
        kept_parts.append(members[positions])
        score_parts.append(kept_scores)
    kept, kept_scores = torch.cat(kept_parts), torch.cat(score_parts)
    kept_segments = segments[kept]
    if params.uses_voting and len(kept):
        kept_segments = vote_segments(kept_segments, segments, scores, params)
    order = torch.sort(kept_scores, descending=True, stable=True).indices
    if params.cap > 0:
        order = order[:params.cap]
    return kept[order], kept_scores[order], kept_segments[order]


def nms_packed(segments: Tensor, scores: Tensor, labels: Tensor, video_offsets: Tensor,
               params: NMSParams) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Many videos packed end to end (video v owns rows video_offsets[v]:video_offsets[v+1]).

    Returns (global indices [M], scores [M], segments [M, 2], counts [V]); video v's detections are the next
    counts[v] rows, in order. Inputs: float32 segments/scores and int64 labels on the CPU.
    """
    offsets = video_offsets.tolist()
    parts = []
    for start, end in zip(offsets[:-1], offsets[1:]):
        kept, kept_scores, kept_segments = nms_one_video(segments[start:end], scores[start:end], labels[start:end],
                                                         params)
        parts.append((kept + start, kept_scores, kept_segments))
    counts = torch.tensor([len(p[0]) for p in parts], dtype=torch.long)
    if not parts:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0), torch.zeros(0, 2), counts
    return (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]),
            torch.cat([p[2] for p in parts]).reshape(-1, 2), counts)
