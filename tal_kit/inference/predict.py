"""THE inference loop: a model over a dataset, to per-video detections and (optionally) pre-NMS candidates.

Per video (SPEC §D.11): forward pass on the whole video (several videos of similar length share a pass, with the
same result) -> per-level decoding into candidate segments (grid units) -> NMS -> seconds, clipped to the video.
Every caller that runs a model over videos comes here: ``tal_kit.infer`` (the CLI, evaluation during training,
notebooks), the explorer's candidate cache, the benchmarks. The per-batch step is the model's
(`ActionFormer.predict_candidates`), NMS and seconds `tal_kit.model.postprocess`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import torch
from tqdm.auto import tqdm

from tal_kit.inference.candidates import VideoCandidates
from tal_kit.model.batching import plan_batches
from tal_kit.model.postprocess import postprocess
from tal_kit.runtime import DistContext, gather_objects

if TYPE_CHECKING:
    from tal_kit.config import Config
    from tal_kit.data.dataset import TALDataset
    from tal_kit.model.actionformer import ActionFormer

__all__ = ["Predictions", "predict"]

_META = ("fps", "duration", "feat_stride", "num_frames")


@dataclass
class Predictions:
    """What a pass over a split produces (on rank 0; other ranks get empty containers), in dataset order."""

    video_outputs: list[dict[str, Any]] = field(default_factory=list)  # {"video_id", "segments" s, "scores", "labels"}
    candidates: dict[str, VideoCandidates] = field(default_factory=dict)  # video_id -> pre-NMS, grid units


def _shard(dataset: TALDataset, ctx: DistContext) -> TALDataset | torch.utils.data.Subset:
    """Every rank takes every world_size-th video (no padding, so no video is counted twice)."""
    if not ctx.is_distributed:
        return dataset
    return torch.utils.data.Subset(dataset, list(range(ctx.rank, len(dataset), ctx.world_size)))


@torch.no_grad()
def predict(model: ActionFormer, dataset: TALDataset, cfg: Config, *, device: torch.device | str = "cpu",
            ctx: DistContext | None = None, keep_candidates: bool = False, progress: bool = True,
            batch_size: int | None = None) -> Predictions:
    """Detections for every video of ``dataset`` (a TALDataset in evaluation mode), in dataset order.

    Videos go through the model several at a time (``batch_size``, default ``cfg.loader.eval_batch_size``; 1 is one
    video per forward pass): a window of upcoming videos is sorted by length and cut into batches that pad each
    video exactly as far as one video at a time would in effect (`tal_kit.model.batching.plan_batches`), so the
    detections are upstream's; NMS then runs on all videos in one batched call. With several processes each rank
    predicts its share and rank 0 receives all of it. ``keep_candidates`` also returns each video's pre-NMS
    candidates (grid units, :class:`VideoCandidates`), for replaying NMS (`tal_kit.inference.nms`).
    """
    ctx = ctx or DistContext(device=torch.device(device))
    device = torch.device(device)
    batch_size = int(batch_size or cfg.loader.eval_batch_size)
    max_steps = batch_size * cfg.dataset.max_seq_len
    window = 8 * batch_size  # videos read ahead and sorted by length: bounds the features held in memory
    shard = _shard(dataset, ctx)
    candidates: list[dict[str, torch.Tensor]] = [{} for _ in range(len(shard))]
    meta: dict[str, list] = {key: [] for key in ("video_ids", *_META)}
    bar = tqdm(total=len(shard), desc="inference", leave=False, dynamic_ncols=True,
               disable=not (progress and ctx.is_main))
    try:
        for first in range(0, len(shard), window):
            items = [shard[index] for index in range(first, min(first + window, len(shard)))]
            for item in items:
                meta["video_ids"].append(item["video_id"])
                for key in _META:
                    meta[key].append(float(item[key]))
            lengths = [item["feats"].shape[1] for item in items]
            for group in plan_batches(lengths, model, batch_size, max_steps):
                feats, mask = _pad_group([items[i]["feats"] for i in group],
                                         model.inference_length(lengths[group[0]]), device)
                for position, video in zip(group, model.predict_candidates(feats, mask)):
                    candidates[first + position] = video
                bar.update(len(group))
    finally:
        bar.close()
    outputs = [_to_numpy(out) for out in postprocess(candidates, meta, cfg.test_cfg)] if candidates else []
    kept = _as_video_candidates(candidates, meta) if keep_candidates else {}
    gathered = gather_objects(ctx, (outputs, kept))
    if gathered is None:
        return Predictions()
    by_video = {out["video_id"]: out for part, _ in gathered for out in part}
    all_kept = {vid: c for _, part in gathered for vid, c in part.items()}
    return Predictions([by_video[vid] for vid in dataset.video_ids if vid in by_video],
                       {vid: all_kept[vid] for vid in dataset.video_ids if vid in all_kept})


def _pad_group(feats: Sequence[torch.Tensor], length: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """[C, T_i] features zero-padded into one [B, C, length] batch with its [B, length] mask, on ``device``."""
    batch = feats[0].new_zeros((len(feats), feats[0].shape[0], length))
    for row, f in enumerate(feats):
        batch[row, :, :f.shape[1]] = f
    lengths = torch.tensor([f.shape[1] for f in feats])
    mask = torch.arange(length)[None, :] < lengths[:, None]
    return batch.to(device), mask.to(device)


def _as_video_candidates(candidates: Sequence[Mapping[str, torch.Tensor]], meta: Mapping[str, list]
                         ) -> dict[str, VideoCandidates]:
    return {video_id: VideoCandidates(video_id, cand["segments"].float().numpy().reshape(-1, 2),
                                      cand["scores"].float().numpy(), cand["labels"].long().numpy(),
                                      meta["fps"][i], meta["feat_stride"][i], meta["num_frames"][i],
                                      meta["duration"][i])
            for i, (video_id, cand) in enumerate(zip(meta["video_ids"], candidates))}


def _to_numpy(video_output: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v.detach().cpu().numpy() if torch.is_tensor(v) else v for k, v in video_output.items()}
