"""``python -m tal_kit detect VIDEO_OR_FOLDER... --checkpoint CKPT --out DIR``: videos -> detections you can watch.

Steps: features for each video on the grid the checkpoint's config expects (extracted into ``DIR/features`` with the
same backbone options as ``extract``, resumable; or read from an existing ``--features`` folder with its
manifest), the trained detector on them, the checkpoint's post-processing (NMS, and score fusion when the config
sets ``test_cfg.ext_score_file``), then::

    DIR/detections.json   ActivityNet results format, seconds (``python -m tal_kit evaluate --pred`` reads it)
    DIR/report.html       one standalone page: each video beside its timeline of detections (and ground truth)
    DIR/features/         the extracted features and their manifest (reused by a second run)

Class names and ground truth come from the training annotations when they are where the config says (``--data-root``,
default data/<preset>) or from ``--annotations``; otherwise the classes are named class_0, class_1, ...
A video whose features do not sit on the checkpoint's grid (stride, clip length, feature width, a fixed fps) is
refused with one ``error:`` line naming the video and the field (exit 2).
"""
from __future__ import annotations

import argparse
import copy
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    import torch

    from tal_kit.config import Config
    from tal_kit.data.dataset import TALDataset
    from tal_kit.detections import Detections
    from tal_kit.extraction.checkpoints import LoadedBackbone
    from tal_kit.model import ActionFormer

__all__ = ["DetectError", "DetectVideo", "DetectResult", "grid_mismatch", "detect", "cli_detect", "build_parser"]


GroundTruth = dict[str, list[tuple[float, float, str]]]  # video id -> (start s, end s, class name) per action


class DetectError(ValueError):
    """Input ``detect`` cannot use (features on another grid, a video without features); names video and field."""


@dataclass
class DetectVideo:
    """One video as detect sees it: where it is, its features, and the facts of its manifest entry."""

    video_id: str
    video_path: Path | None
    feature_file: Path
    fps: float
    duration: float
    entry: dict[str, Any]


@dataclass
class DetectResult:
    """What a run wrote and found."""

    detections_path: Path
    report_path: Path | None
    detections: Detections  # seconds
    label_names: list[str]
    videos: list[DetectVideo]
    ground_truth: GroundTruth = field(default_factory=dict)


def grid_mismatch(entry: dict[str, Any], cfg: Config) -> str | None:
    """Why a manifest entry's features do not fit ``cfg`` (the first differing field, with both values), or None."""
    from tal_kit.extraction.features import preset_clip_settings

    want, d = preset_clip_settings(cfg), cfg.dataset
    if d.feat_stride > 0 and entry.get("stride") != want.stride:  # a fixed-length grid is resized: any stride fits
        return (f"field 'stride' is {entry.get('stride')} frames, the checkpoint's dataset.feat_stride is "
                f"{d.feat_stride:g}")
    if entry.get("clip_len") != want.clip_len:
        return (f"field 'clip_len' is {entry.get('clip_len')} frames, the checkpoint's dataset.num_frames is "
                f"{d.num_frames:g}")
    if entry.get("feature_dim") != d.input_dim:
        return (f"field 'feature_dim' is {entry.get('feature_dim')}, the checkpoint's dataset.input_dim is "
                f"{d.input_dim}")
    if want.resample_fps is not None and abs(float(entry.get("fps") or 0.0) - want.resample_fps) > 1e-3:
        return f"field 'fps' is {entry.get('fps')}, the checkpoint's dataset.default_fps is {want.resample_fps:g}"
    return None


def _read_manifest(features_dir: Path) -> dict[str, dict[str, Any]]:
    """The feature folder's manifest entries by video id; refused when there are none."""
    from tal_kit.extraction.runner import read_manifest_entries

    entries = read_manifest_entries(features_dir)
    if not entries:
        raise DetectError(f"{features_dir}: no manifest.json (or manifest.d/) of extracted features; "
                          "run 'python -m tal_kit extract' into it, or leave out --features")
    return entries


def _collect(videos: Sequence[Path], features_dir: Path, cfg: Config) -> list[DetectVideo]:
    """The videos' manifest entries, each checked against the checkpoint's grid."""
    from tal_kit.extraction.runner import video_id_of

    entries = _read_manifest(features_dir)
    found = []
    for path in videos:
        vid = video_id_of(path)
        entry = entries.get(vid)
        if entry is None:
            raise DetectError(f"{path}: no features for video {vid!r} in {features_dir} (its manifest has no entry)")
        why = grid_mismatch(entry, cfg)
        if why is not None:
            raise DetectError(f"{path}: its features ({features_dir / entry['feature_file']}) are not on the "
                              f"checkpoint's grid: {why}")
        found.append(DetectVideo(vid, path, features_dir / entry["feature_file"], float(entry["fps"]),
                                 float(entry["duration"]), entry))
    return found


def _extract(videos: Sequence[Path], features_dir: Path, cfg: Config, backbone: LoadedBackbone, *, recipe: str,
             batch_size: int, device: torch.device, dtype: str, progress: bool) -> list[Path]:
    """Extract the videos' features on the config's grid into ``features_dir``; returns the videos that worked."""
    from tal_kit.extraction.features import preset_clip_settings
    from tal_kit.extraction.recipes import get_recipe
    from tal_kit.extraction.runner import run_extraction, video_id_of

    if backbone.model.feature_dim != cfg.dataset.input_dim:
        raise DetectError(f"the backbone gives {backbone.model.feature_dim}-d features (field 'feature_dim'), the "
                          f"checkpoint's dataset.input_dim is {cfg.dataset.input_dim}: choose the backbone the "
                          "detector was trained on")
    grid = preset_clip_settings(cfg)
    pixels = get_recipe(recipe, backbone.model.arch.img_size)
    print(f"detect: extracting features of {len(videos)} video(s) with {backbone.name} "
          f"({backbone.checkpoint}), clips of {grid.clip_len} frames every {grid.stride} -> {features_dir}",
          file=sys.stderr)
    report = run_extraction(videos, features_dir, backbone, pixels, grid, batch_size=batch_size, device=device,
                            dtype=dtype, annotations=None, progress=progress)
    print(report.render(), file=sys.stderr)
    ok = [p for p in videos if video_id_of(p) not in report.failed]
    if not ok:
        raise DetectError(f"no video yielded features ({', '.join(sorted(report.failed))})")
    return ok


def _classes_and_truth(cfg: Config, data_root: str | Path | None, annotations: str | Path | None,
                       video_ids: Sequence[str]) -> tuple[list[str], GroundTruth, Path | None]:
    """Class names (the training annotations' when found) and the ground truth of the videos they annotate."""
    from tal_kit.config import resolve_path
    from tal_kit.data.annotations import load_annotations

    single_class = cfg.dataset.num_classes == 1 and cfg.test_cfg.ext_score_file is None
    path = Path(annotations) if annotations is not None else resolve_path(cfg, data_root, cfg.dataset.json_file)
    if path is None or not path.exists():
        if annotations is not None:
            raise DetectError(f"--annotations {annotations}: no such file")
        names = ["action"] if single_class else [f"class_{i}" for i in range(cfg.dataset.num_classes)]
        return names, {}, None
    db = load_annotations(path, single_class=single_class)
    truth = {}
    for vid in video_ids:
        record = db.videos.get(vid)
        if record is not None:
            truth[vid] = [(float(s), float(e), db.label_names[int(lab)])
                          for (s, e), lab in zip(record.segments, record.labels)]
    return list(db.label_names), truth, path


def run_detector(model: ActionFormer, cfg: Config, dataset: TALDataset, *, data_root: str | Path | None,
                 device: torch.device, progress: bool = True) -> Detections:
    """The trained detector over ``dataset`` with the checkpoint's NMS and (when configured) score fusion:
    a Detections table in seconds (the inference loop and the evaluation protocol's post-processing)."""
    from tal_kit.evaluation.protocol import to_detections
    from tal_kit.inference.predict import predict

    predictions = predict(model, dataset, cfg, device=device, progress=progress)
    return to_detections(predictions.video_outputs, cfg, data_root)


def _dataset(cfg: Config, videos: Sequence[DetectVideo], label_names: Sequence[str]) -> tuple[Config, TALDataset]:
    """A config reading the detect videos' feature files, and their evaluation dataset (no ground truth)."""
    import numpy as np

    from tal_kit.data.annotations import AnnotationDB, VideoRecord
    from tal_kit.data.dataset import TALDataset

    folders = {v.feature_file.parent for v in videos}
    suffixes = {v.feature_file.suffix for v in videos}
    if len(folders) != 1 or len(suffixes) != 1:
        raise DetectError(f"the features of one run must share a folder and a format, got {sorted(map(str, folders))}")
    run_cfg = copy.deepcopy(cfg)
    d = run_cfg.dataset
    d.feat_folder, d.file_prefix, d.file_ext = str(folders.pop().resolve()), "", suffixes.pop()
    d.reference_feat_folder = None
    records = {v.video_id: VideoRecord(v.video_id, "detect", v.duration, v.fps, np.zeros((0, 2)),
                                       np.zeros(0, np.int64)) for v in videos}
    db = AnnotationDB(path=Path("<detect videos>"), videos=records, label_names=list(label_names), subsets=["detect"])
    return run_cfg, TALDataset(run_cfg, None, split=["detect"], is_training=False, annotations=db)


def write_report(path: Path, videos: Sequence[DetectVideo], detections: Detections, label_names: Sequence[str],
                 ground_truth: GroundTruth, *, score_threshold: float = 0.2, browser_copies: bool = False) -> Path:
    """The standalone HTML page: each video beside its timeline (tal_kit.viz.video). Detections scoring below
    ``score_threshold`` stay off the timelines (detections.json keeps them all); ``browser_copies`` writes a
    VP8/WebM copy of a video no browser plays (the page says so otherwise)."""
    from tal_kit.viz.timeline import video_detections
    from tal_kit.viz.video import LinkedVideo, write_linked_report

    linked = [LinkedVideo(video_id=v.video_id, video_path=v.video_path, duration=v.duration,
                          detections=video_detections(detections, v.video_id),
                          ground_truth=ground_truth.get(v.video_id), label_names=list(label_names))
              for v in videos]
    write_linked_report(path, linked, score_threshold=score_threshold, make_proxies=browser_copies)
    return path


def detect(videos: Sequence[str | Path], checkpoint: str | Path, *, out: str | Path, config: str | Path | None = None,
           overrides: Sequence[str] = (), features: str | Path | None = None, backbone: LoadedBackbone | None = None,
           recipe: str = "videomae2_tad", data_root: str | Path | None = None,
           annotations: str | Path | None = None, device: str = "auto", dtype: str = "auto", batch_size: int = 16,
           use_ema: bool = True, report: bool = True, report_score: float = 0.2, browser_copies: bool = False,
           progress: bool = True) -> DetectResult:
    """Detect actions in ``videos`` (files or folders) with a trained checkpoint; see the module docstring.

    ``backbone`` (a :class:`tal_kit.extraction.LoadedBackbone`) extracts the features into ``out/features``;
    ``features`` names a folder extracted earlier instead (its manifest must list every video).
    """
    from tal_kit.extraction.runner import find_videos
    from tal_kit.infer import checkpoint_config, load_model
    from tal_kit.runtime import resolve_device

    out = Path(out)
    paths = find_videos(videos)
    cfg = checkpoint_config(checkpoint, config, overrides)
    device = resolve_device(device)
    if features is not None:
        features_dir = Path(features)
    else:
        if backbone is None:
            raise DetectError("no features: pass a backbone (--backbone-checkpoint or --random-weights) or --features")
        features_dir = out / "features"
        paths = _extract(paths, features_dir, cfg, backbone, recipe=recipe, batch_size=batch_size, device=device,
                         dtype=dtype if dtype != "auto" else ("bf16" if device.type == "cuda" else "fp32"),
                         progress=progress)
    found = _collect(paths, features_dir, cfg)
    label_names, truth, gt_path = _classes_and_truth(cfg, data_root, annotations, [v.video_id for v in found])
    run_cfg, dataset = _dataset(cfg, found, label_names)
    print(f"detect: {len(found)} video(s) through {checkpoint} on {device}", file=sys.stderr)
    model, _ = load_model(cfg, checkpoint, device=device, use_ema=use_ema)
    detections = run_detector(model, run_cfg, dataset, data_root=data_root, device=device, progress=progress)
    detections_path = detections.to_results_json(out / "detections.json", label_names,
                                                 version=f"tal_kit detect {cfg.name}")
    report_path = (write_report(out / "report.html", found, detections, label_names, truth,
                                score_threshold=report_score, browser_copies=browser_copies) if report else None)
    note = f"; classes and ground truth from {gt_path}" if gt_path else ""
    print(f"detect: {len(detections)} detection(s) in {len(found)} video(s) -> {detections_path}"
          + (f", {report_path}" if report_path else "") + note, file=sys.stderr)
    return DetectResult(detections_path, report_path, detections, label_names, found, truth)


def build_parser() -> argparse.ArgumentParser:
    from tal_kit.cli import add_common_options
    from tal_kit.extraction.cli import add_backbone_options

    p = argparse.ArgumentParser(prog="tal-kit detect", description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    p.add_argument("videos", nargs="+", help="video files and/or folders (searched recursively)")
    p.add_argument("--checkpoint", required=True, help="a tal_kit training checkpoint (or upstream with --config)")
    p.add_argument("--out", required=True, help="folder for detections.json, report.html and features/")
    add_common_options(p, "config", "set", "data-root", "device", help_texts={
        "config": "preset or YAML (default: the config stored in the checkpoint)",
        "data-root": "where the config's annotations are, for class names and ground truth (default data/<preset>)"})
    p.add_argument("--features", help="reuse this feature folder (from 'extract', with its manifest) instead of "
                   "extracting")
    p.add_argument("--annotations", help="annotations JSON giving class names and ground truth (overrides the "
                   "config's)")
    add_backbone_options(p, weights_flag="--backbone-checkpoint", backbone_default="by the config's input_dim, "
                         "as extract")
    p.add_argument("--raw", action="store_true", help="the detector's raw weights instead of its EMA copy")
    p.add_argument("--no-report", action="store_true", help="skip report.html")
    p.add_argument("--report-score", type=float, default=0.2, help="detections scoring below this stay off the "
                   "report's timelines; detections.json keeps them all (default 0.2)")
    p.add_argument("--browser-copies", action="store_true", help="for a video no browser plays (e.g. MPEG-4 part 2, "
                   "AVI), write a VP8/WebM copy beside the report and link that")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def cli_detect(argv: list[str]) -> int:
    """Entry point of ``python -m tal_kit detect`` (see the module docstring). Bad input raises; tal_kit.cli turns
    it into one ``error:`` line and exit 2."""
    from tal_kit.extraction.checkpoints import backbone_for_dim
    from tal_kit.extraction.cli import backbone_from_args
    from tal_kit.infer import checkpoint_config

    args = build_parser().parse_args(argv)
    backbone = None
    if args.features is None:
        if not (args.backbone_checkpoint or args.random_weights):
            raise DetectError("pass --backbone-checkpoint (or --random-weights) to extract features, or "
                              "--features with a folder extracted before")
        cfg = checkpoint_config(args.checkpoint, args.config, args.overrides)
        name = args.backbone or backbone_for_dim(cfg.dataset.input_dim) or "vit-g/14"
        backbone = backbone_from_args(args, name, num_frames=int(cfg.dataset.num_frames), command="detect")
    detect(args.videos, args.checkpoint, out=args.out, config=args.config, overrides=args.overrides,
           features=args.features, backbone=backbone, recipe=args.recipe, data_root=args.data_root,
           annotations=args.annotations, device=args.device, dtype=args.dtype, batch_size=args.batch_size,
           use_ema=not args.raw, report=not args.no_report, report_score=args.report_score,
           browser_copies=args.browser_copies, progress=not args.no_progress)
    return 0
