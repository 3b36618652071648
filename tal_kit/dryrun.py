"""Dry-run data for the real presets: the real annotation format, synthetic features of the preset's real shape.

A full reproduction needs tens of GB of InternVideo features. Before committing to that, a dry run exercises the
exact path a user takes with real data — the preset's file layout and format (.npy / .pkl / .csv, reference grids),
its real input dimension, model and post-processing — on a few videos::

    python -m tal_kit dry-run-data --config thumos14 --annotations ../shared/data/thumos14/thumos14.json \
        --out data/dryrun/thumos14
    python -m tal_kit reproduce --config thumos14 --data-root data/dryrun/thumos14 --quick \
        --set dataset.missing_features=skip

The annotation file is copied whole (so label ids and subsets are the real ones); features are written only for a
few short videos of each split, which is why the run needs ``dataset.missing_features=skip``. For HACS and FineAction,
whose annotation files are not in the test data, a small file in the same ActionFormer layout is generated.
The features carry a class-specific pattern inside each action, so the one-epoch smoke run has something to learn;
the numbers it reports mean nothing.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from tal_kit.atomic import atomic_path, write_text_atomic
from tal_kit.cli import UsageError, add_common_options
from tal_kit.config import Config, load_config, resolve_path
from tal_kit.data.features import feature_path, write_feature_file
from tal_kit.data.grid import FeatureGrid
from tal_kit.evaluation.metric_kind import SYNTHETIC_MARKER

# What a dry run passes to every notebook (besides reproduce's --quick overrides).
DRY_RUN_OVERRIDES = ["dataset.missing_features=skip", "loader.batch_size=2"]  # a few videos: small batches
REFERENCE_DIM = 8  # reference-grid files are read for their length only


def _subset_matches(entry: dict, splits: list[str]) -> bool:
    return str(entry.get("subset", "")).lower() in {s.lower() for s in splits}


def pick_videos(database: dict[str, dict], splits: list[str], count: int, max_duration: float) -> list[str]:
    """The ``count`` shortest annotated videos of ``splits`` no longer than ``max_duration`` (ties by id)."""
    candidates = [(float(e["duration"]), vid) for vid, e in database.items()
                  if _subset_matches(e, splits) and e.get("annotations") and float(e["duration"]) <= max_duration]
    return [vid for _, vid in sorted(candidates)[:count]]


def synthetic_annotations(cfg: Config, num_videos: int, rng: np.random.Generator, num_labels: int = 5) -> dict:
    """A small ActionFormer-layout annotation file for presets whose real annotations are not at hand."""
    database = {}
    fps = cfg.dataset.default_fps or 30.0
    for index in range(num_videos):
        subset = cfg.train_split[0] if index < num_videos - 2 else cfg.val_split[0]
        duration = float(rng.uniform(40, 90))
        annotations = []
        for _ in range(int(rng.integers(1, 4))):
            length = float(rng.uniform(3, 15))
            start = float(rng.uniform(0, duration - length))
            label_id = int(rng.integers(num_labels))
            annotations.append({"label": f"action_{label_id}", "label_id": label_id,
                                "segment": [round(start, 2), round(start + length, 2)]})
        for label_id in range(num_labels):  # every label id appears somewhere, so the label map is complete
            if index == label_id:
                annotations.append({"label": f"action_{label_id}", "label_id": label_id,
                                    "segment": [1.0, min(6.0, duration - 1)]})
        database[f"dry{index:03d}"] = {"subset": subset, "duration": round(duration, 2), "fps": fps,
                                       "annotations": annotations}
    return {"version": f"tal_kit dry run for {cfg.name}", "database": database}


def _grid_length(cfg: Config, duration: float, fps: float) -> int:
    """Number of clips a real extractor produces for a video (variable-length) or the fixed length."""
    d = cfg.dataset
    if d.feat_stride <= 0:
        return 100  # FineAction's fineaction_i3d_100 features: 100 steps per video
    return max(FeatureGrid(d.feat_stride, d.num_frames, fps).num_clips(duration), 4)


def synthetic_features(length: int, dim: int, segments_steps: list[tuple[float, float, int]],
                       rng: np.random.Generator) -> np.ndarray:
    """[length, dim] float32 noise with a label-specific direction added inside each action."""
    feats = rng.standard_normal((length, dim)).astype(np.float32) * 0.5
    for start, end, label in segments_steps:
        direction = np.random.default_rng(1000 + label).standard_normal(dim).astype(np.float32)
        lo, hi = max(int(start), 0), min(int(np.ceil(end)) + 1, length)
        feats[lo:hi] += direction
    return feats


def make_dryrun_data(config: str, out_dir: str | Path, annotation_file: str | Path | None = None,
                     videos_per_split: int = 3, max_duration: float = 90.0, seed: int = 0) -> dict[str, Any]:
    """Write a dry-run data folder for ``config`` into ``out_dir``; return what was written."""
    cfg = load_config(config)
    d = cfg.dataset
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    json_path = resolve_path(cfg, out_dir, d.json_file)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    if annotation_file is not None:
        data = json.loads(Path(annotation_file).read_text())
        with atomic_path(json_path) as tmp:
            shutil.copyfile(annotation_file, tmp)  # the real file, byte for byte
    else:
        data = synthetic_annotations(cfg, 2 * videos_per_split + 2, rng)
        write_text_atomic(json_path, json.dumps(data, indent=1))

    database = data["database"]
    chosen = (pick_videos(database, cfg.train_split, videos_per_split, max_duration)
              + pick_videos(database, cfg.val_split, videos_per_split, max_duration))
    if not chosen:
        raise UsageError(f"{json_path}: no annotated video of {cfg.train_split + cfg.val_split} lasts at most "
                         f"{max_duration} s")
    feat_dir = resolve_path(cfg, out_dir, d.feat_folder)
    ref_dir = resolve_path(cfg, out_dir, d.reference_feat_folder)
    for folder in (feat_dir, ref_dir):
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
    label_ids = {}
    for vid in chosen:
        entry = database[vid]
        duration = float(entry["duration"])
        fps = float(d.default_fps or entry.get("fps") or 30.0)
        length = _grid_length(cfg, duration, fps)
        steps = []
        for ann in entry["annotations"]:
            label = ann.get("label_id", label_ids.setdefault(ann["label"], len(label_ids)))
            if d.feat_stride > 0:
                to_grid = FeatureGrid(d.feat_stride, d.num_frames, fps).seconds_to_grid  # SPEC §C.3
            else:
                to_grid = lambda t: t * length / duration
            steps.append((to_grid(ann["segment"][0]), to_grid(ann["segment"][1]), int(label)))
        if ref_dir is not None:
            # InternVideo's MAE features have a slightly different length than the grid they are resampled onto
            mae_length = max(length + int(rng.integers(-3, 4)), 2)
            write_feature_file(feature_path(ref_dir, vid, d.file_prefix, d.file_ext),
                               np.zeros((length, REFERENCE_DIM), dtype=np.float32))
            steps = [(s * mae_length / length, e * mae_length / length, c) for s, e, c in steps]
            length = mae_length
        write_feature_file(feature_path(feat_dir, vid, d.file_prefix, d.file_ext),
                           synthetic_features(length, d.input_dim, steps, rng))
    info = {"config": cfg.name, "annotations": str(json_path), "videos": chosen, "features": str(feat_dir),
            "reference_features": str(ref_dir) if ref_dir else None}
    # marks the folder's features as synthetic: results computed on it are labelled so (metric_kind.py)
    marker = out_dir / SYNTHETIC_MARKER
    write_text_atomic(marker, json.dumps({"written_by": "python -m tal_kit dry-run-data", **info}, indent=1))
    return info


def cli_dry_run_data(argv: list[str]) -> int:
    """``python -m tal_kit dry-run-data --config PRESET --out DIR [--annotations JSON]``"""
    parser = argparse.ArgumentParser(prog="tal-kit dry-run-data", description=__doc__.split("\n\n")[0])
    add_common_options(parser, "config", required=("config",),
                       help_texts={"config": "a real preset: thumos14, anet, hacs, fineaction, ..."})
    parser.add_argument("--out", required=True, help="folder to write (use it as --data-root)")
    parser.add_argument("--annotations", help="a real annotation JSON to copy (default: generate a small one)")
    parser.add_argument("--videos-per-split", type=int, default=3)
    parser.add_argument("--max-duration", type=float, default=90.0, help="pick videos no longer than this (s)")
    args = parser.parse_args(argv)
    info = make_dryrun_data(args.config, args.out, args.annotations, args.videos_per_split, args.max_duration)
    print(json.dumps(info, indent=2))
    return 0
