"""Pure-torch NMS vectorised across groups: the fallback when the extension cannot be built (any device).

Same semantics and float32 arithmetic as tal_kit/ops/reference.py (which it is tested against), but every
(video, class) group advances one pick per step together: groups are padded into [groups, length] tensors, so a
whole dataset costs max_seg_num steps of a few tensor operations instead of one Python step per detection.
"""
from __future__ import annotations

import torch

from .params import IOU_EPS, NMSParams
from .reference import decay_weights, nms_iou

Tensor = torch.Tensor
# Padded elements per chunk of groups (bounds memory: ~10 float tensors of this size live at once).
CHUNK_ELEMENTS = 1 << 22


def _stable_order(order: Tensor, key: Tensor, descending: bool = False) -> Tensor:
    """Stable re-sort of the row list `order` by key[order]."""
    return order[torch.sort(key[order], descending=descending, stable=True).indices]


def _soft_nms_chunk(x1: Tensor, x2: Tensor, area: Tensor, score: Tensor, row: Tensor, size: Tensor,
                    params: NMSParams, cap: int) -> tuple[Tensor, Tensor]:
    """Selection-sort soft-NMS of G padded groups at once. Returns picked rows and scores [G, C] (row -1: none)."""
    groups, length = score.shape
    picks = min(length, cap)
    pos = torch.arange(length, device=score.device).expand(groups, length)
    every = torch.arange(groups, device=score.device)
    min_score = torch.tensor(params.min_score, dtype=torch.float32, device=score.device)
    live = size.clone()
    picked_row = torch.full((groups, picks), -1, dtype=torch.long, device=score.device)
    picked_score = torch.zeros((groups, picks), dtype=torch.float32, device=score.device)
    for i in range(picks):
        active = live > i
        if not bool(active.any()):
            break
        candidates = (pos >= i) & (pos < live[:, None])
        best = torch.where(candidates, score, torch.full_like(score, -torch.inf)).argmax(dim=1)  # first maximum
        for values in (x1, x2, area, score, row):  # swap the pick into column i
            at_best = values[every, best].clone()
            values[every, best] = values[:, i].clone()
            values[:, i] = at_best
        picked_row[:, i] = torch.where(active, row[:, i], -1)
        picked_score[:, i] = score[:, i]
        if i + 1 == picks:
            break
        rest = (pos > i) & (pos < live[:, None]) & active[:, None]
        iou = nms_iou(x1[:, i:i + 1], x2[:, i:i + 1], area[:, i:i + 1], x1, x2, area)
        decayed = score * decay_weights(torch.where(rest, iou, torch.zeros_like(iou)), params)
        score = torch.where(rest, decayed, score)
        keep = rest & ~(score < min_score)
        if not bool((rest & ~keep).any()):
            continue
        # Dropped slots, front to back, take the surviving candidates from the back of the array, last first.
        kept_before = torch.cumsum(keep, dim=1) - keep.long()
        num_kept = keep.sum(dim=1)
        front_end = (i + 1 + num_kept)[:, None]
        holes = rest & ~keep & (pos < front_end)
        movers = keep & (pos >= front_end)
        group_of = every[:, None].expand_as(pos)
        mover_at_rank = torch.zeros_like(pos)
        mover_at_rank[group_of[movers], (num_kept[:, None] - 1 - kept_before)[movers]] = pos[movers]
        source = pos.clone()
        source[holes] = mover_at_rank[group_of[holes], (pos - (i + 1) - kept_before)[holes]]
        x1, x2, area, score, row = (values.gather(1, source) for values in (x1, x2, area, score, row))
        live = torch.where(active, front_end.squeeze(1), live)
    return picked_row, picked_score


def _hard_nms_chunk(x1: Tensor, x2: Tensor, area: Tensor, score: Tensor, row: Tensor, size: Tensor,
                    params: NMSParams, cap: int) -> tuple[Tensor, Tensor]:
    """Greedy NMS of G padded groups at once (each group sorted by score, stable)."""
    groups, length = score.shape
    picks = min(length, cap)
    pos = torch.arange(length, device=score.device).expand(groups, length)
    every = torch.arange(groups, device=score.device)
    alive = pos < size[:, None]
    if params.min_score > 0:
        alive &= score > torch.tensor(params.min_score, dtype=torch.float32, device=score.device)
    threshold = torch.tensor(params.iou_threshold, dtype=torch.float32, device=score.device)
    picked_row = torch.full((groups, picks), -1, dtype=torch.long, device=score.device)
    picked_score = torch.zeros((groups, picks), dtype=torch.float32, device=score.device)
    for i in range(picks):
        current = torch.where(alive, pos, length).min(dim=1).values
        found = current < length
        if not bool(found.any()):
            break
        current = current.clamp(max=length - 1)
        picked_row[:, i] = torch.where(found, row[every, current], -1)
        picked_score[:, i] = score[every, current]
        c = current[:, None]
        iou = nms_iou(x1.gather(1, c), x2.gather(1, c), area.gather(1, c), x1, x2, area)
        alive &= (pos > c) & ~(iou >= threshold)
    return picked_row, picked_score


def _vote(rows: Tensor, segments: Tensor, scores: Tensor, video_of_pick: Tensor, video_offsets: Tensor,
          params: NMSParams) -> Tensor:
    """Segment voting for the kept picks (reference.vote_segments, per video, chunked over picks)."""
    from .reference import vote_segments

    refined = segments[rows].clone()
    starts, ends = video_offsets[:-1].tolist(), video_offsets[1:].tolist()
    order = torch.argsort(video_of_pick, stable=True)
    counts = torch.bincount(video_of_pick, minlength=len(starts)).tolist()
    for video, chunk in zip(range(len(starts)), order.split(counts)):
        if len(chunk):
            lo, hi = starts[video], ends[video]
            refined[chunk] = vote_segments(segments[rows[chunk]], segments[lo:hi], scores[lo:hi], params)
    return refined


def nms_packed(segments: Tensor, scores: Tensor, labels: Tensor, video_offsets: Tensor,
               params: NMSParams) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """As reference.nms_packed (same arguments and results), on the inputs' device."""
    device = segments.device
    num, num_videos = len(scores), len(video_offsets) - 1
    offsets = video_offsets.to(device)
    video_of_row = torch.repeat_interleave(torch.arange(num_videos, device=device), offsets.diff(), output_size=num)
    cap = params.cap if params.cap > 0 else max(num, 1)
    if num == 0:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return empty, torch.zeros(0, device=device), torch.zeros(0, 2, device=device), torch.zeros(num_videos,
                                                                                                     dtype=torch.long)

    order = torch.arange(num, device=device)
    if params.method != "soft":
        order = _stable_order(order, scores, descending=True)
    if params.multiclass and params.method != "none":
        order = _stable_order(order, labels)
    order = _stable_order(order, video_of_row)

    if params.method == "none":
        rows, kept_scores = order, scores[order]
    else:
        key_video = video_of_row[order]
        change = torch.ones(num, dtype=torch.bool, device=device)
        change[1:] = key_video[1:] != key_video[:-1]
        if params.multiclass:
            key_label = labels[order]
            change[1:] |= key_label[1:] != key_label[:-1]
        starts = change.nonzero().squeeze(1)
        sizes = torch.diff(torch.cat([starts, torch.tensor([num], device=device)]))
        # Chunks of groups of similar size, so that padding stays small.
        by_size = torch.argsort(sizes, descending=True, stable=True)
        group_rows, group_scores, group_ids = [], [], []
        first = 0
        sizes_sorted = sizes[by_size].tolist()
        while first < len(sizes_sorted):
            length = sizes_sorted[first]
            last = min(len(sizes_sorted), first + max(1, CHUNK_ELEMENTS // max(length, 1)))
            chunk = by_size[first:last]
            within = torch.arange(length, device=device)[None, :]
            size = sizes[chunk]
            valid = within < size[:, None]
            index = torch.where(valid, starts[chunk][:, None] + within, 0)
            row = torch.where(valid, order[index], -1)
            safe = row.clamp(min=0)
            x1, x2 = segments[safe, 0], segments[safe, 1]
            area = (x2 - x1) + IOU_EPS
            score = torch.where(valid, scores[safe], torch.full_like(x1, -torch.inf))
            run = _soft_nms_chunk if params.method == "soft" else _hard_nms_chunk
            picked_row, picked_score = run(x1, x2, area, score, row, size, params, cap)
            group_rows.append(picked_row)
            group_scores.append(picked_score)
            group_ids.append(chunk)
            first = last
        # Back to group order (video, class), picks in pick order.
        width = max(p.shape[1] for p in group_rows)
        all_rows = torch.full((len(sizes), width), -1, dtype=torch.long, device=device)
        all_scores = torch.zeros((len(sizes), width), dtype=torch.float32, device=device)
        for ids, picked_row, picked_score in zip(group_ids, group_rows, group_scores):
            all_rows[ids, :picked_row.shape[1]] = picked_row
            all_scores[ids, :picked_score.shape[1]] = picked_score
        taken = all_rows >= 0
        rows, kept_scores = all_rows[taken], all_scores[taken]

    pick_video = video_of_row[rows]
    final = _stable_order(torch.arange(len(rows), device=device), kept_scores, descending=True)
    final = _stable_order(final, pick_video)
    rows, kept_scores, pick_video = rows[final], kept_scores[final], pick_video[final]
    if params.method != "none" and params.cap > 0:
        per_video = torch.bincount(pick_video, minlength=num_videos)
        rank = torch.arange(len(rows), device=device) - (per_video.cumsum(0) - per_video)[pick_video]
        keep = rank < params.cap
        rows, kept_scores, pick_video = rows[keep], kept_scores[keep], pick_video[keep]
    counts = torch.bincount(pick_video, minlength=num_videos).cpu()
    if params.uses_voting and len(rows):
        kept_segments = _vote(rows, segments, scores, pick_video, offsets, params)
    else:
        kept_segments = segments[rows]
    return rows, kept_scores, kept_segments.reshape(-1, 2), counts
