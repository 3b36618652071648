"""From candidates to detections (SPEC §D.11 steps 2-4): NMS (tal_kit.ops), feature grid -> seconds, clipping."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

import torch
from torch import Tensor

from ..data.grid import FeatureGrid
from ..ops import nms_videos, params_from_test_cfg

if TYPE_CHECKING:
    from tal_kit.config import TestConfig


@torch.no_grad()
def postprocess(candidates: Sequence[Mapping[str, Tensor]], batch: Mapping[str, Any],
                test_cfg: TestConfig) -> list[dict]:
    """NMS per video (all videos in one call), conversion to seconds and clipping to [0, duration].

    candidates: per video {"segments" [M, 2] grid units, "scores", "labels"} (`ActionFormer.candidates`);
    batch: the collated batch, for its per-video "video_ids", "fps", "duration", "feat_stride", "num_frames";
    test_cfg: ``cfg.test_cfg``. Returns per video {"video_id", "segments" [N, 2] seconds, "scores", "labels"} on
    the CPU, sorted by score (with nms_method "none" the candidates are kept as they come, as upstream).
    """
    video_ids = list(batch["video_ids"])
    for key in ("fps", "duration", "feat_stride", "num_frames"):
        if len(batch[key]) != len(video_ids):
            raise ValueError(f"batch['{key}'] has {len(batch[key])} entries for {len(video_ids)} videos")
    if len(candidates) != len(video_ids):
        raise ValueError(f"{len(candidates)} candidate sets for {len(video_ids)} videos")
    videos = [(c["segments"].detach().cpu().float(), c["scores"].detach().cpu().float(), c["labels"].detach().cpu())
              for c in candidates]
    if test_cfg.nms_method != "none":
        videos = nms_videos(videos, video_ids=video_ids, **params_from_test_cfg(test_cfg))

    results = []
    for index, (segments, scores, labels) in enumerate(videos):
        fps, duration = float(batch["fps"][index]), float(batch["duration"][index])
        if not fps > 0:
            raise ValueError(f"video {video_ids[index]}: fps must be positive to convert to seconds, got {fps}")
        grid = FeatureGrid(float(batch["feat_stride"][index]), float(batch["num_frames"][index]), fps)
        seconds = grid.grid_to_seconds(segments)
        results.append({"video_id": video_ids[index], "segments": seconds.clamp(0.0, duration),
                        "scores": scores, "labels": labels})
    return results
