"""``tal-kit check-data``: validate a real data folder before a long run, and say exactly what is wrong.

Checks, for every video of the preset's training and evaluation splits: the annotation file parses; each feature
file (and reference-grid file) exists, reads, has ``input_dim`` channels and only finite values; its length agrees
with the video's duration on the preset's grid; an fps is known; the external score file (if configured) covers
the evaluation videos. ``--headers-only`` skips the value scan but still refuses files without time steps; integer
feature files (cast to float32 when loaded) are a warning. Prints a report and returns 1 when anything would break
a run.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tal_kit.config import Config, load_config, resolve_path

if TYPE_CHECKING:
    from tal_kit.data.annotations import AnnotationDB

# A variable-length feature file may differ from the length its duration implies by this much before we warn
# (extractors drop or pad a clip at the end; ANet's FAQ filters videos whose lengths disagree).
LENGTH_TOLERANCE_STEPS = 3
LENGTH_TOLERANCE_RATIO = 0.05
EXAMPLES = 5


@dataclass
class DataReport:
    """Problems found, grouped by kind; ``errors`` break a run, ``warnings`` deserve a look."""

    config: str
    data_root: Path
    num_videos: int = 0
    checked_files: int = 0
    errors: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    warnings: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    facts: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def render(self) -> str:
        lines = [f"check-data {self.config} in {self.data_root}"]
        lines += [f"  {fact}" for fact in self.facts]
        for title, groups in (("ERROR", self.errors), ("warning", self.warnings)):
            for kind, items in groups.items():
                lines.append(f"{title}: {kind}: {len(items)}")
                lines += [f"    {item}" for item in items[:EXAMPLES]]
                if len(items) > EXAMPLES:
                    lines.append(f"    ... and {len(items) - EXAMPLES} more")
        lines.append("OK: ready to train" if self.ok else "NOT READY: fix the errors above")
        return "\n".join(lines)


def expected_length(cfg: Config, duration: float, fps: float) -> int | None:
    """Clips a sliding-window extractor yields for a video on this preset's grid (None for fixed-length features)."""
    from tal_kit.data.grid import FeatureGrid

    d = cfg.dataset
    if d.feat_stride <= 0:
        return None
    return FeatureGrid(d.feat_stride, d.num_frames, fps).num_clips(duration)


def check_data(config: str, data_root: str | Path, overrides: list[str] | None = None,
               scan_values: bool = True, progress: bool = True) -> DataReport:
    """Check a data folder against a preset; see the module docstring for what is checked."""
    from tal_kit.data.annotations import AnnotationError, load_annotations
    from tal_kit.data.grid import resizes_to_max_seq_len
    from tal_kit.data.features import (FeatureError, FeatureSource, feature_length, load_feature_file,
                                       read_feature_array)

    cfg = load_config(config, overrides)
    d = cfg.dataset
    report = DataReport(cfg.name, Path(data_root))
    json_file = resolve_path(cfg, data_root, d.json_file)
    if not json_file.exists():
        report.errors["annotation file missing"].append(str(json_file))
        return report
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            db = load_annotations(json_file, remove_duplicates=d.remove_duplicates, single_class=d.num_classes == 1)
        for w in caught:
            report.warnings["annotation oddities"].append(str(w.message))
    except AnnotationError as err:
        report.errors["annotation file unusable"].append(str(err))
        return report
    report.facts.append(f"annotations: {json_file} ({len(db)} videos, {db.num_classes} classes, "
                        f"{db.num_segments} segments)")
    if d.num_classes != 1 and db.num_classes != d.num_classes:
        report.errors["class count"].append(f"{json_file} defines {db.num_classes} classes, "
                                            f"dataset.num_classes is {d.num_classes}")

    source = FeatureSource.from_config(cfg, data_root)
    videos = []
    for split in (cfg.train_split, cfg.val_split):
        try:
            videos += db.select(split)
        except AnnotationError as err:
            report.errors["split"].append(str(err))
    report.num_videos = len(videos)
    report.facts.append(f"features: {source.folder} ({d.file_prefix}<video>{d.file_ext}, input_dim {d.input_dim})"
                        + (f", grid from {source.reference_folder}" if source.reference_folder else ""))

    iterator = videos
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(videos, desc="checking features", unit="video", file=sys.stderr)
    for video in iterator:
        vid = video.video_id
        fps = d.default_fps if d.default_fps is not None else video.fps
        if fps is None:
            report.errors["no fps (set dataset.default_fps)"].append(vid)
            continue
        path, ref = source.path(vid), source.reference_path(vid)
        missing = [p for p in (path, ref) if p is not None and not p.exists()]
        if missing:
            if d.missing_features == "skip":  # the run will skip these videos: worth knowing, not fatal
                report.warnings["feature file missing (video skipped: dataset.missing_features=skip)"].extend(
                    str(p) for p in missing)
            else:
                report.errors["feature file missing"].extend(str(p) for p in missing)
            continue
        try:
            stored = read_feature_array(path, mmap=True)  # as stored: a header read for .npy/.pt
            if scan_values:
                length = load_feature_file(path, d.input_dim, video_id=vid).shape[0]
            else:  # header only: shape from a memory map, no value scan
                shape = stored.shape
                if not shape or shape[-1] != d.input_dim:
                    raise FeatureError(f"{path} (video {vid!r}): feature dimension is "
                                       f"{shape[-1] if shape else None} (shape {shape}), but dataset.input_dim is "
                                       f"{d.input_dim}")
                length = feature_length(path)
                if length == 0:
                    raise FeatureError(f"{path} (video {vid!r}): holds no time steps (shape {shape})")
            if not np.issubdtype(stored.dtype, np.floating):
                report.warnings["integer feature values (cast to float32 when loaded: quantised, or not features?)"] \
                    .append(f"{path}: {stored.dtype}")
            report.checked_files += 1
            if ref is not None:
                length = feature_length(ref)
                report.checked_files += 1
        except FeatureError as err:
            report.errors["feature file unusable"].append(str(err))
            continue
        expected = expected_length(cfg, video.duration, fps)
        if expected is not None:
            off = abs(length - expected)
            if off > max(LENGTH_TOLERANCE_STEPS, LENGTH_TOLERANCE_RATIO * expected):
                report.warnings["length disagrees with duration"].append(
                    f"{ref or path}: {length} steps, but {video.duration:.1f} s at {fps:g} fps and stride "
                    f"{d.feat_stride:g} give {expected}")
        elif length > d.max_seq_len and not resizes_to_max_seq_len(d):
            report.errors["fixed-length features longer than max_seq_len"].append(f"{path}: {length} steps")

    report.facts.append(f"{report.checked_files} feature file(s) read for {report.num_videos} video(s)")
    if report.checked_files == 0:
        report.errors["no usable features"].append(f"none of the {report.num_videos} videos has usable features")
    if cfg.test_cfg.ext_score_file:
        _check_scores(cfg, data_root, db, report)
    return report


def _check_scores(cfg: Config, data_root: str | Path, db: AnnotationDB, report: DataReport) -> None:
    score_file = resolve_path(cfg, data_root, cfg.test_cfg.ext_score_file)
    if not score_file.exists():
        report.errors["external score file missing"].append(str(score_file))
        return
    from tal_kit.evaluate import load_class_scores

    scores = load_class_scores(score_file)
    eval_ids = [v.video_id for v in db.select(cfg.val_split)]
    absent = [vid for vid in eval_ids if vid not in scores]
    if absent:
        report.errors[f"videos missing from {score_file.name}"].extend(absent)
    report.facts.append(f"external scores: {score_file} ({len(scores)} videos)")


def cli_check_data(argv: list[str]) -> int:
    """``python -m tal_kit check-data --config PRESET --data-root DIR``: exit 0 when ready, 1 when not."""
    from tal_kit.cli import add_common_options

    parser = argparse.ArgumentParser(prog="tal-kit check-data", description=__doc__.split("\n\n")[0])
    add_common_options(parser, "config", "data-root", "set", required=("config", "data-root"), help_texts={
        "data-root": "the data folder the preset's paths are relative to"})
    parser.add_argument("--headers-only", action="store_true",
                        help="check lengths and dimensions from file headers; skip the NaN/inf scan")
    args = parser.parse_args(argv)
    report = check_data(args.config, args.data_root, args.overrides, scan_values=not args.headers_only)
    print(report.render())
    return 0 if report.ok else 1
