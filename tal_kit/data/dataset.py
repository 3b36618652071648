"""The torch Dataset: one item per video (features on the model's grid + ground truth in grid units), training
crops, and the collate function that pads a batch and builds its mask (SPEC §D.0).

Training draws a random window with Python's ``random`` module, exactly as the InternVideo fork does, so a run is
reproducible from the seeds that :func:`seed_worker` (DataLoader workers) and the trainer's seeding set.
"""
from __future__ import annotations

import copy
import functools
import math
import os
import random
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from tal_kit.config import Config
from tal_kit.data.annotations import AnnotationDB, AnnotationError, VideoRecord, load_annotations
from tal_kit.data.features import FeatureError, FeatureSource
from tal_kit.data.grid import FeatureGrid, grid_for_video, resample_features, resizes_to_max_seq_len
from tal_kit.runtime import DistContext

__all__ = ["TALDataset", "truncate_video", "collate_videos", "padded_length", "training_collate", "build_train_loader",
           "seed_worker", "MissingFeaturesWarning"]


class MissingFeaturesWarning(UserWarning):
    """Videos skipped because their feature files are missing (``dataset.missing_features: skip``)."""


# ----------------------------------------------------------------------------------------------------------------------
# Training crops (SPEC §D.0)
# ----------------------------------------------------------------------------------------------------------------------

def truncate_video(item: dict, max_seq_len: int, trunc_thresh: float, crop_ratio: Sequence[float] | None = None, *,
                   offset: float = 0.0, max_num_trials: int = 200, rng: Any = random) -> dict:
    """Randomly crop a training item's features and keep the ground truth that stays mostly inside (SPEC §D.0).

    1. Window length: ``max_seq_len`` for a longer video; for a shorter one, with ``crop_ratio`` = [lo, hi], a random
       length in [max(round(lo*T), 1), min(round(hi*T), T)] (the item is returned unchanged when it draws T, or
       when ``crop_ratio`` is None).
    2. Start: up to ``max_num_trials`` uniform draws; a window is accepted as soon as one segment has at least
       ``trunc_thresh`` of its length inside it. If none is accepted, the last draw is used anyway.
    3. Kept segments (those over the threshold) are clipped to the window and shifted to start at 0.

    ``offset`` widens the window by that many grid steps on both sides when measuring overlap and clipping: 0 is the
    InternVideo fork; ``feat_offset`` is upstream HEAD's variant (``dataset.crop_window_offset``), which lets
    segments reach half a clip beyond the cropped features. ``rng`` is anything with ``randint`` (default: the
    ``random`` module, like the fork).

    Returns a new dict (the input is not modified); ``feats`` [C, T'] and ``segments`` [N', 2] float32.
    """
    feats, segments = item["feats"], item["segments"]
    feat_len = feats.shape[1]
    window_len = max_seq_len
    if feat_len <= max_seq_len:
        if crop_ratio is None:
            return item
        window_len = rng.randint(max(round(crop_ratio[0] * feat_len), 1), min(round(crop_ratio[1] * feat_len), feat_len))
        if window_len == feat_len:
            return item

    seg_lengths = (segments[:, 1] - segments[:, 0]).abs()
    for _ in range(max_num_trials):
        start = rng.randint(0, feat_len - window_len)
        left = torch.clamp(segments[:, 0], min=start - offset)
        right = torch.clamp(segments[:, 1], max=start + window_len + offset)
        inside = (right - left).clamp(min=0) / seg_lengths  # 0/0 (zero-length segment) is NaN: never kept
        keep = inside >= trunc_thresh
        if keep.any():
            break

    out = copy.copy(item)
    out["feats"] = feats[:, start:start + window_len].clone()
    out["segments"] = torch.stack([left[keep], right[keep]], dim=1) - start
    out["labels"] = item["labels"][keep].clone()
    return out


# ----------------------------------------------------------------------------------------------------------------------
# Dataset
# ----------------------------------------------------------------------------------------------------------------------

class TALDataset(Dataset):
    """Videos of some subsets of an annotation file with their features, as model-ready items.

    ``dataset[i]`` is ``{"video_id", "feats" float32 [C, T], "segments" float32 [N, 2] (grid units),
    "labels" int64 [N], "fps", "duration", "feat_stride", "num_frames"}``. In training the item is cropped
    (:func:`truncate_video`); in evaluation it is the whole video.

    Args:
        cfg: a tal_kit Config.
        data_root: the folder the config's dataset paths are relative to (default ``data/<preset>``).
        split: subset names (case-insensitive); default ``cfg.train_split`` or ``cfg.val_split``.
        is_training: crop items, and apply the training-only annotation fixes.
        annotations: an already loaded AnnotationDB to use instead of reading ``dataset.json_file`` again.

    Raises:
        FeatureError listing every missing feature file (unless ``dataset.missing_features`` is "skip", which skips
        those videos with one warning giving the count); AnnotationError when the file's classes disagree with
        ``dataset.num_classes``.
    """

    def __init__(self, cfg: Config, data_root: str | Path | None = None, split: Sequence[str] | None = None,
                 is_training: bool = False, annotations: AnnotationDB | None = None):
        from tal_kit.config import resolve_path

        self.cfg = cfg
        self.is_training = is_training
        self.split = list(split if split is not None else (cfg.train_split if is_training else cfg.val_split))
        d = cfg.dataset
        self.single_class = d.num_classes == 1
        if annotations is None:
            json_file = resolve_path(cfg, data_root, d.json_file)
            annotations = load_annotations(json_file, remove_duplicates=d.remove_duplicates,
                                           single_class=self.single_class)
        elif self.single_class:
            annotations = _as_single_class(annotations)
        if not self.single_class and annotations.num_classes != d.num_classes:
            raise AnnotationError(f"{annotations.path}: defines {annotations.num_classes} classes, but "
                                  f"dataset.num_classes is {d.num_classes}")
        self.annotations = annotations
        self.label_names = annotations.label_names
        self.features = FeatureSource.from_config(cfg, data_root)

        videos = annotations.select(self.split)
        missing = self.features.missing(v.video_id for v in videos)
        if missing:
            missing_set = set(missing)
            if d.missing_features == "skip":
                videos = [v for v in videos if self.features.path(v.video_id) not in missing_set
                          and self.features.reference_path(v.video_id) not in missing_set]
                warnings.warn(f"skipping {len(missing)} video(s) of {self.split} whose feature files are missing "
                              f"(e.g. {missing[0]}); {len(videos)} remain", MissingFeaturesWarning, stacklevel=2)
            else:
                listing = "\n  ".join(map(str, missing))
                reference = self.features.reference_folder
                hint = ""
                if reference is not None and not reference.exists():
                    hint = (f"; the reference-grid folder {reference} does not exist: set "
                            "dataset.reference_feat_folder: null to keep the features on their own grid (data/README.md)")
                raise FeatureError(f"{len(missing)} feature file(s) missing for {self.split} of "
                                   f"{annotations.path} (set dataset.missing_features: skip to skip those "
                                   f"videos{hint}):\n  {listing}")
        if not videos:
            raise FeatureError(f"no video of {self.split} in {annotations.path} has features in "
                               f"{self.features.folder}")
        for v in videos:
            if d.default_fps is None and v.fps is None:
                raise AnnotationError(f"{annotations.path}: video {v.video_id!r} has no field 'fps' and "
                                      f"dataset.default_fps is not set")
        self.videos: list[VideoRecord] = videos

    def __len__(self) -> int:
        return len(self.videos)

    @property
    def video_ids(self) -> list[str]:
        return [v.video_id for v in self.videos]

    def fps(self, video: VideoRecord) -> float:
        d = self.cfg.dataset
        return float(d.default_fps if d.default_fps is not None else video.fps)

    def grid(self, video: VideoRecord, num_features: int) -> FeatureGrid:
        """The grid of one video, given its feature count before downsampling."""
        return grid_for_video(self.cfg.dataset, fps=self.fps(video), duration=video.duration,
                              num_features=num_features)

    def __getitem__(self, index: int) -> dict:
        video = self.videos[index]
        d = self.cfg.dataset
        feats = self.features.load(video.video_id)  # [C, T], on the reference grid when there is one
        grid = self.grid(video, feats.shape[1])
        resized = resizes_to_max_seq_len(d)
        if d.feat_stride > 0 and not resized and d.downsample_rate > 1:
            feats = feats[:, ::d.downsample_rate].contiguous()
        if resized and feats.shape[1] != d.max_seq_len:
            feats = resample_features(feats, d.max_seq_len)
        if d.feat_stride <= 0 and not resized and feats.shape[1] > d.max_seq_len:
            raise FeatureError(f"{self.features.path(video.video_id)} (video {video.video_id!r}): "
                               f"{feats.shape[1]} fixed-length features exceed dataset.max_seq_len {d.max_seq_len}")

        segments = torch.from_numpy(grid.seconds_to_grid(video.segments)).float()
        labels = torch.from_numpy(np.array(video.labels, dtype=np.int64))
        if self.is_training and d.clip_segments_to_features:
            segments, labels = _clip_to_features(segments, labels, feats.shape[1])

        item = {"video_id": video.video_id, "feats": feats, "segments": segments, "labels": labels,
                "fps": grid.fps, "duration": float(video.duration), "feat_stride": float(grid.feat_stride),
                "num_frames": float(grid.num_frames)}
        # The fork crops only variable-length features, and only videos with ground truth; a video longer than
        # max_seq_len is always cropped here (the fork would fail on it at batching).
        if self.is_training and d.feat_stride > 0 and (len(labels) > 0 or feats.shape[1] > d.max_seq_len):
            offset = grid.feat_offset if d.crop_window_offset else 0.0
            item = truncate_video(item, d.max_seq_len, d.trunc_thresh, d.crop_ratio, offset=offset)
        return item


def _as_single_class(db: AnnotationDB) -> AnnotationDB:
    videos = {k: VideoRecord(v.video_id, v.subset, v.duration, v.fps, v.segments, np.zeros_like(v.labels))
              for k, v in db.videos.items()}
    return AnnotationDB(path=db.path, videos=videos, label_names=["action"], subsets=list(db.subsets))


def _clip_to_features(segments: torch.Tensor, labels: torch.Tensor, feat_len: int):
    """The fork's ActivityNet fix: drop segments starting at/after the last feature, clamp the rest to end there."""
    keep = segments[:, 0] < feat_len
    return segments[keep].clamp(max=float(feat_len)), labels[keep]


# ----------------------------------------------------------------------------------------------------------------------
# Batching
# ----------------------------------------------------------------------------------------------------------------------

def padded_length(max_len: int, max_seq_len: int, max_div_factor: int, is_training: bool,
                  length_stride: int | None = None) -> int:
    """Length a batch is padded to (SPEC §D.0).

    Training: exactly max_seq_len (the reference), or with ``length_stride`` (the model's coarsest stride) only as
    far as the batch's longest item needs: the next multiple of the stride plus one more stride, capped at
    max_seq_len. The extra stride keeps at least one padded step after every real one on every pyramid level,
    which is all a real step can see of the padding (padded steps carry a LayerNorm bias, the array's end is zero
    padding), so the outputs at real steps, the losses and the gradients are those of the max_seq_len batch.

    Evaluation: max_seq_len, or the next multiple of max_div_factor for a longer video.
    """
    if is_training:
        if max_len > max_seq_len:
            raise ValueError(f"a training item has {max_len} time steps, more than max_seq_len {max_seq_len}")
        if length_stride is None:
            return max_seq_len
        return min(max_seq_len, (math.ceil(max_len / length_stride) + 1) * length_stride)
    if max_len <= max_seq_len:
        return max_seq_len
    return int(math.ceil(max_len / max_div_factor) * max_div_factor)


def collate_videos(items: Sequence[dict], max_seq_len: int, max_div_factor: int, is_training: bool,
                   length_stride: int | None = None) -> dict:
    """Stack items into ``{"feats" [B, C, T_pad], "mask" [B, T_pad] bool, "segments", "labels", "video_ids",
    "fps", "duration", "feat_stride", "num_frames"}`` (lists for the per-video fields); padding is zeros.
    ``T_pad`` is :func:`padded_length` of the longest item."""
    if not items:
        raise ValueError("collate_videos needs at least one item")
    lengths = [it["feats"].shape[1] for it in items]
    length = padded_length(max(lengths), max_seq_len, max_div_factor, is_training, length_stride)
    channels = items[0]["feats"].shape[0]
    feats = items[0]["feats"].new_zeros((len(items), channels, length))
    for b, it in enumerate(items):
        feats[b, :, :lengths[b]] = it["feats"]
    mask = torch.arange(length)[None, :] < torch.tensor(lengths)[:, None]
    return {"feats": feats, "mask": mask, "segments": [it["segments"] for it in items],
            "labels": [it["labels"] for it in items], "video_ids": [it["video_id"] for it in items],
            "fps": [it["fps"] for it in items], "duration": [it["duration"] for it in items],
            "feat_stride": [it["feat_stride"] for it in items], "num_frames": [it["num_frames"] for it in items]}


def training_collate(cfg: Config) -> functools.partial:
    """The collate function of training batches for ``cfg``: length-aware (padded to what the batch needs), or
    padded to max_seq_len as the reference does when ``trainer.pad_to_max_seq_len`` is set. Both give the same
    losses and gradients; the second computes every padded step."""
    stride = None if cfg.trainer.pad_to_max_seq_len else cfg.model.level_strides[-1]
    return functools.partial(collate_videos, max_seq_len=cfg.dataset.max_seq_len,
                             max_div_factor=cfg.model.max_div_factor, is_training=True, length_stride=stride)


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed numpy, ``random`` and PYTHONHASHSEED from the worker's torch seed,
    as the fork's ``worker_init_reset_seed`` does (the torch seed itself derives from the loader's generator)."""
    seed = torch.initial_seed() % 2 ** 31
    np.random.seed(seed)
    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)


def build_train_loader(dataset: TALDataset, cfg: Config, ctx: DistContext,
                       generator: torch.Generator) -> tuple[DataLoader, DistributedSampler | None]:
    """Shuffled batches of training crops (the one training loader); with several processes a DistributedSampler
    splits each epoch. ``loader.batch_size`` is the global batch: each process gets its share.

    Workers are started afresh every epoch (no persistent workers): their seeds then derive from the loader's
    generator, whose state is checkpointed, so a resumed run draws exactly the same crops.
    """
    if cfg.loader.batch_size % ctx.world_size:
        raise ValueError(f"loader.batch_size ({cfg.loader.batch_size}) is the global batch and must be divisible "
                         f"by the {ctx.world_size} training processes")
    sampler = None
    if ctx.is_distributed:
        sampler = DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                     seed=cfg.init_rand_seed, drop_last=True)
    loader = DataLoader(dataset, batch_size=cfg.loader.batch_size // ctx.world_size, shuffle=sampler is None,
                        sampler=sampler, drop_last=True, num_workers=cfg.loader.num_workers,
                        collate_fn=training_collate(cfg), worker_init_fn=seed_worker, generator=generator,
                        pin_memory=ctx.device.type == "cuda")
    return loader, sampler
