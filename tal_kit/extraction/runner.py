"""Many videos -> a feature folder: sharding, resume, the manifest, the bad-video report, progress.

Output folder layout::

    <out>/<prefix><video_id><ext>     float32 [T, C], written atomically (.npy unless a preset reads another format)
    <out>/manifest.d/<video_id>.json  the video's manifest entry, written after its features (so "done" = both)
    <out>/manifest.json               every entry plus the failures, rebuilt at the end of each run
    <annotations JSON>                ActionFormer format, fps + duration, no segments (for unannotated videos)

Re-running skips every video whose entry exists with the same grid, recipe and backbone, so a killed run resumes
losing at most the videos in flight and never leaves a half-written file. Several processes may share a folder:
``shard=(i, n)`` (or torchrun's RANK/WORLD_SIZE) gives each the videos i, i+n, ... of the sorted list.
"""
from __future__ import annotations

import json
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

import tal_kit
from tal_kit.extraction.checkpoints import LoadedBackbone
from tal_kit.extraction.features import DTYPES, BadVideo, ClipSettings, extract_video
from tal_kit.extraction.recipes import Recipe
from tal_kit.atomic import write_json_atomic
from tal_kit.feature_files import FEATURE_FORMATS, write_features

__all__ = ["ExtractionError", "VIDEO_EXTENSIONS", "find_videos", "video_id_of", "resolve_shard", "RunReport",
           "save_features", "run_extraction", "write_unannotated_json", "read_manifest_entries", "MANIFEST_DIR"]

# what counts as a video file; browser-playable containers first (the explorer takes the first that exists)
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v", ".ogv", ".mpg", ".mpeg", ".wmv", ".flv", ".ts")
MANIFEST_DIR = "manifest.d"
# fields that must agree for an existing entry to count as done (else the run refuses to mix grids in one folder)
_SAME = ("stride", "clip_len", "resample_fps", "recipe", "checkpoint_sha256", "feature_dim")


class ExtractionError(ValueError):
    """Bad input to a run (no videos, duplicate ids, a folder holding another grid); names the file and field."""


def video_id_of(path: Path) -> str:
    """The file name without its extension (the reference cuts at the first dot; THUMOS/FineAction names agree)."""
    return path.stem


def find_videos(inputs: Sequence[str | Path]) -> list[Path]:
    """Video files named directly, or found (recursively, by extension) in the folders named; sorted by id."""
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found += [p for p in sorted(item.rglob("*")) if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS]
        elif item.exists():
            found.append(item)
        else:
            raise ExtractionError(f"{item}: no such file or folder")
    if not found:
        raise ExtractionError(f"no video files ({', '.join(VIDEO_EXTENSIONS)}) in {', '.join(map(str, inputs))}")
    by_id: dict[str, Path] = {}
    for p in found:
        vid = video_id_of(p)
        if vid in by_id and by_id[vid] != p:
            raise ExtractionError(f"two videos share the id {vid!r}: {by_id[vid]} and {p}")
        by_id[vid] = p
    return [by_id[k] for k in sorted(by_id)]


def resolve_shard(shard: str | None) -> tuple[int, int]:
    """``"i/n"`` -> (i, n); without one, torchrun's RANK/WORLD_SIZE; else (0, 1)."""
    if shard is None:
        return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    try:
        i, n = (int(x) for x in shard.split("/"))
    except ValueError:
        raise ExtractionError(f"--shard: expected i/n (e.g. 0/4), got {shard!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise ExtractionError(f"--shard: need 0 <= i < n, got {shard!r}")
    return i, n


@dataclass
class RunReport:
    """What a run did: ids extracted now, ids already done, and {id: reason} for the bad videos."""

    out_dir: Path
    extracted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    clips: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def render(self) -> str:
        rate = self.clips / self.seconds if self.seconds > 0 else 0.0
        lines = [f"extract: {len(self.extracted)} video(s) extracted ({self.clips} clips, {rate:.1f} clips/s), "
                 f"{len(self.skipped)} already done, {len(self.failed)} failed -> {self.out_dir}"]
        lines += [f"  FAILED {vid}: {reason}" for vid, reason in sorted(self.failed.items())]
        return "\n".join(lines)


def _entry_path(out_dir: Path, video_id: str) -> Path:
    return out_dir / MANIFEST_DIR / f"{video_id}.json"


def _read_entry(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _entries_written(out_dir: Path) -> dict[str, dict]:
    """The per-video entries of manifest.d/ (one file per finished video; a half-written one is skipped)."""
    entries = {}
    for p in sorted((out_dir / MANIFEST_DIR).glob("*.json")):
        entry = _read_entry(p)
        if entry is not None:
            entries[entry["video_id"]] = entry
    return entries


def read_manifest_entries(out_dir: str | Path) -> dict[str, dict]:
    """Every video's manifest entry in a feature folder: manifest.d/ (written per video) over manifest.json
    (rebuilt at the end of a run)."""
    out_dir = Path(out_dir)
    entries = dict((_read_entry(out_dir / "manifest.json") or {}).get("videos", {}))
    entries.update(_entries_written(out_dir))
    return entries


def _rebuild_manifest(out_dir: Path, failed: dict[str, str]) -> Path:
    entries = _entries_written(out_dir)
    previous = _read_entry(out_dir / "manifest.json") or {}
    failures = {k: v for k, v in previous.get("failed", {}).items() if k not in entries}
    failures.update(failed)
    return write_json_atomic(out_dir / "manifest.json", {"kit_version": tal_kit.__version__, "videos": entries,
                                                         "failed": failures})


def write_unannotated_json(path: Path, entries: dict[str, dict], subset: str,
                           num_classes: int | None = None) -> Path:
    """ActionFormer-format annotations for videos without ground truth: fps and duration, no segments, so that
    inference can run on them. With ``num_classes`` a taxonomy of placeholder class names (``class_00`` ...) makes
    the file define the class count a preset expects. A file this function did not write is never overwritten."""
    existing = _read_entry(path) if path.exists() else None
    if path.exists() and not (existing and existing.get("written_by") == "tal_kit extract"):
        raise ExtractionError(f"{path}: exists and was not written by 'tal_kit extract'; not overwriting it")
    database = dict((existing or {}).get("database", {}))
    for vid, e in entries.items():
        database[vid] = {"subset": subset, "duration": round(e["duration"], 6), "fps": e["fps"], "annotations": []}
    payload: dict[str, Any] = {"version": "tal_kit-unannotated", "written_by": "tal_kit extract"}
    if num_classes and num_classes > 1:
        width = len(str(num_classes - 1))
        payload["taxonomy"] = [{"nodeName": "placeholder classes (no annotations)", "parentName": None}] + [
            {"nodeName": f"class_{i:0{width}d}", "parentName": "placeholder classes (no annotations)"}
            for i in range(num_classes)]
    payload["database"] = dict(sorted(database.items()))
    return write_json_atomic(path, payload)


def save_features(path: Path, features: np.ndarray) -> Path:
    """Write [T, C] float32 features atomically in the format the extension names (the formats the kit reads)."""
    if path.suffix.lower() not in FEATURE_FORMATS:
        raise ExtractionError(f"{path}: cannot write features as {path.suffix.lower()!r} "
                              f"(formats: {', '.join(FEATURE_FORMATS)})")
    return write_features(path, features)


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="extract", unit="video", file=sys.stderr, disable=not enabled, dynamic_ncols=True)


def run_extraction(videos: Sequence[Path], out_dir: str | Path, backbone: LoadedBackbone, recipe: Recipe,
                   grid: ClipSettings, *, batch_size: int = 16, device: str | torch.device = "cpu",
                   dtype: str = "fp32", shard: tuple[int, int] = (0, 1), file_prefix: str = "", file_ext: str = ".npy",
                   annotations: Path | None = None, subset: str = "test", num_classes: int | None = None,
                   progress: bool = True) -> RunReport:
    """Extract this shard's videos into ``out_dir``; see the module docstring for layout and resume.

    Returns the report; bad videos are listed in it (and in manifest.json) and skipped, never raised.
    """
    out_dir = Path(out_dir)
    (out_dir / MANIFEST_DIR).mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    torch_dtype = DTYPES[dtype]
    model = backbone.model.to(device=device, dtype=torch_dtype).eval()
    settings = {"stride": grid.stride, "clip_len": grid.clip_len, "resample_fps": grid.resample_fps,
                "recipe": recipe.name, "checkpoint_sha256": backbone.checkpoint_sha256 or backbone.checkpoint,
                "feature_dim": model.feature_dim}
    index, count = shard
    mine = list(videos)[index::count]
    report = RunReport(out_dir)
    done_entries: dict[str, dict] = {}
    bar = _progress(len(mine), progress)
    started = time.perf_counter()
    try:
        for path in mine:
            vid = video_id_of(path)
            feature_file = out_dir / f"{file_prefix}{vid}{file_ext}"
            entry = _read_entry(_entry_path(out_dir, vid))
            if entry is not None and feature_file.exists():
                differs = [k for k in _SAME if entry.get(k) != settings[k]]
                if differs:
                    raise ExtractionError(f"{feature_file}: already extracted with other settings "
                                          f"({', '.join(f'{k}={entry.get(k)!r}' for k in differs)}); use another --out")
                report.skipped.append(vid)
                done_entries[vid] = entry
                bar.update(1)
                continue

            def tick(n: int) -> None:
                report.clips += n
                elapsed = time.perf_counter() - started
                bar.set_postfix_str(f"{vid} {report.clips / max(elapsed, 1e-9):.1f} clips/s", refresh=True)

            try:
                result = extract_video(path, model, recipe, grid, batch_size=batch_size, device=device,
                                       dtype=torch_dtype, on_clips=tick)
            except BadVideo as bad:
                report.failed[vid] = bad.reason
                print(f"extract: skipping {path}: {bad.reason}", file=sys.stderr)
                bar.update(1)
                continue
            save_features(feature_file, result.features)
            entry = {"video_id": vid, "source": str(path), "feature_file": feature_file.name,
                     "fps": result.fps, "num_frames": result.num_frames, "header_frames": result.header_frames,
                     "duration": result.duration, "num_clips": int(result.features.shape[0]),
                     **settings, "clip_centres": result.clip_centres, "start_time": result.start_time,
                     "variable_frame_rate": result.variable_frame_rate, "frame_rate_note": result.frame_rate_note,
                     "width": result.width, "height": result.height, "recipe_detail": recipe.describe(),
                     "backbone": backbone.describe(), "dtype": dtype, "device": str(device),
                     "kit_version": tal_kit.__version__}
            if result.variable_frame_rate and not grid.resample_fps:
                print(f"extract: warning: {path} has a variable frame rate ({result.frame_rate_note}); clip times "
                      "in the manifest are presentation times, but frame-index grids assume a constant rate: "
                      "consider --resample-fps", file=sys.stderr)
            write_json_atomic(_entry_path(out_dir, vid), entry)
            report.extracted.append(vid)
            done_entries[vid] = entry
            bar.update(1)
    finally:
        bar.close()
        report.seconds = time.perf_counter() - started
        with _folder_lock(out_dir):  # shards sharing the folder: one read-merge-write at a time
            _rebuild_manifest(out_dir, report.failed)
            if annotations is not None and done_entries:
                write_unannotated_json(annotations, done_entries, subset, num_classes)
    return report


@contextmanager
def _folder_lock(out_dir: Path) -> Iterator[None]:
    """An advisory lock (fcntl) on ``<out>/manifest.d/.lock``; a no-op where fcntl does not exist."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(out_dir / MANIFEST_DIR / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
