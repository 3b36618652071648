"""``python -m tal_kit viz``: notebook 06's outputs without a notebook (timelines HTML, report and DETAD figures).

    python -m tal_kit viz --config demo                       # runs/demo -> figures/demo
    python -m tal_kit viz --config thumos14 --run-dir runs/thumos14/seed_1 --videos 10 --out /tmp/thumos_viz
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

__all__ = ["cli_viz", "write_report"]


def write_report(run: Any, cfg: Any, out_dir: Path, *, tiou_threshold: float = 0.5, score_threshold: float = 0.05,
                 videos: Optional[Sequence[str]] = None, num_videos: int = 5) -> dict[str, Path]:
    """Write ``timelines.html`` (``videos``, default the ``num_videos`` busiest) and every report figure into
    ``out_dir``; returns name -> path. ``run`` is a :class:`tal_kit.viz.run_outputs.RunOutputs`."""
    from tal_kit.evaluate import evaluate_detections
    from tal_kit.evaluation.detad import false_positive_analysis, length_bins_for, sensitivity_analysis
    from tal_kit.evaluation.protocol import DEDUP_GT, UNKNOWN_LABELS
    from tal_kit.viz import export_html, save_report_figures, timeline

    videos = list(videos) if videos else run.busiest_videos(num_videos)
    figures = {video_id: timeline(run.record(video_id), run.detections, label_names=run.label_names,
                                  tiou_threshold=tiou_threshold, score_threshold=score_threshold)
               for video_id in videos}
    paths = {"timelines": export_html(figures, out_dir / "timelines.html", title=f"tal_kit {cfg.name}: detections")}
    result = evaluate_detections(run.ground_truth, run.detections, cfg.dataset.tiou_thresholds,
                                 label_names=run.label_names, dedup_gt=DEDUP_GT, unknown_labels=UNKNOWN_LABELS)
    bins = length_bins_for(cfg.dataset_name)
    sensitivities = [sensitivity_analysis(run.ground_truth, run.detections, [tiou_threshold], characteristic=which,
                                          bins=bins, dedup_gt=DEDUP_GT) for which in ("length", "coverage")]
    paths.update(save_report_figures(
        out_dir, result=result, label_names=run.label_names, ground_truth=run.ground_truth,
        detections=run.detections, sensitivities=sensitivities,
        false_positives=false_positive_analysis(run.ground_truth, run.detections, [tiou_threshold],
                                                dedup_gt=DEDUP_GT)))
    return paths


def cli_viz(argv: list[str]) -> int:
    """``python -m tal_kit viz --config PRESET [--data-root DIR] [--run-dir DIR] [--out DIR] ...``"""
    from tal_kit.config import REPO_ROOT, ConfigError, default_data_root, figures_dir_for, load_config

    parser = argparse.ArgumentParser(prog="python -m tal_kit viz", description=(
        "Write timelines (one standalone HTML file) and the report figures (AP vs tIoU, per-class AP, PR curves, "
        "durations, DETAD false positives and length sensitivity) for a run's detections. Without detections in "
        "the run folder, stand-in detections made from the ground truth are shown (and said so)."))
    parser.add_argument("--config", default="demo", help="preset name or YAML file (default: demo)")
    parser.add_argument("--data-root", help="dataset folder (default: data/<preset>)")
    parser.add_argument("--run-dir", help="folder with detections.json / pre_nms_candidates.npz (default: runs/<preset>)")
    parser.add_argument("--out", help="output folder (default: figures/<preset> for runs/<preset>, else "
                        "RUN_DIR/figures)")
    parser.add_argument("--video", action="append", default=[], help="a video to put in the HTML file (repeatable)")
    parser.add_argument("--videos", type=int, default=5, help="without --video: this many videos, most actions first")
    parser.add_argument("--tiou", type=float, default=0.5, help="tIoU of a true positive (default 0.5)")
    parser.add_argument("--score", type=float, default=0.05, help="timelines hide scores below this (default 0.05)")
    args = parser.parse_args(argv)
    try:
        from tal_kit.viz.run_outputs import load_run_outputs

        cfg = load_config(args.config)
        data_root = Path(args.data_root) if args.data_root else default_data_root(cfg)
        run_dir = Path(args.run_dir) if args.run_dir else REPO_ROOT / "runs" / cfg.name
        out = figures_dir_for(cfg, run_dir, args.out)  # a run elsewhere draws beside itself, not over figures/<preset>
        run = load_run_outputs(cfg, data_root, run_dir)
        print(run.source)
        known = {record.video_id for record in run.ground_truth}
        unknown = [v for v in args.video if v not in known]
        if unknown:
            raise ValueError(f"--video {', '.join(unknown)}: not in the evaluated split {cfg.val_split}")
        paths = write_report(run, cfg, out, tiou_threshold=args.tiou, score_threshold=args.score,
                             videos=args.video or None, num_videos=args.videos)
    except (ConfigError, FileNotFoundError, ValueError) as err:  # AnnotationError/DetectionsError are ValueErrors
        print(f"error: {err}", file=sys.stderr)
        return 2
    for name, path in paths.items():
        print(f"{name:>24}: {path}")
    return 0
