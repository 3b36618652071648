"""``python -m tal_kit viz``: notebook 06's outputs without a notebook (timelines HTML, report and DETAD figures).

    python -m tal_kit viz --config demo                       # runs/demo -> figures/demo
    python -m tal_kit viz --config thumos14 --run-dir runs/thumos14/seed_1 --videos 10 --out /tmp/thumos_viz
"""
from __future__ import annotations

import argparse

__all__ = ["cli_viz"]


def cli_viz(argv: list[str]) -> int:
    """``python -m tal_kit viz --config PRESET [--data-root DIR] [--run-dir DIR] [--out DIR] ...``"""
    from tal_kit.cli import UsageError, add_common_options
    from tal_kit.config import load_config, run_paths

    parser = argparse.ArgumentParser(prog="python -m tal_kit viz", description=(
        "Write timelines (one standalone HTML file) and the report figures (AP vs tIoU, per-class AP, PR curves, "
        "durations, DETAD false positives and length sensitivity) for a run's detections. Without detections in "
        "the run folder, stand-in detections made from the ground truth are shown (and said so)."))
    add_common_options(parser, "config", "data-root", "run-dir", defaults={"config": "demo"}, help_texts={
        "run-dir": "folder with detections.json / pre_nms_candidates.npz (default: runs/<preset>)"})
    parser.add_argument("--out", dest="figure_dir", metavar="OUT",
                        help="output folder (default: figures/<preset> for runs/<preset>, else RUN_DIR/figures)")
    parser.add_argument("--video", action="append", default=[], help="a video to put in the HTML file (repeatable)")
    parser.add_argument("--videos", type=int, default=5, help="without --video: this many videos, most actions first")
    parser.add_argument("--tiou", type=float, default=0.5, help="tIoU of a true positive (default 0.5)")
    parser.add_argument("--score", type=float, default=0.05, help="timelines hide scores below this (default 0.05)")
    args = parser.parse_args(argv)
    from tal_kit.viz.report import write_report
    from tal_kit.viz.run_outputs import load_run_outputs

    cfg = load_config(args.config)
    # a run elsewhere draws beside itself, not over figures/<preset>
    paths = run_paths(cfg, args.data_root, args.run_dir, args.figure_dir)
    run = load_run_outputs(cfg, paths.data_root, paths.run_dir)
    print(run.source)
    known = {record.video_id for record in run.ground_truth}
    unknown = [v for v in args.video if v not in known]
    if unknown:
        raise UsageError(f"--video {', '.join(unknown)}: not in the evaluated split {cfg.val_split}")
    written = write_report(run, cfg, paths.figure_dir, tiou_threshold=args.tiou, score_threshold=args.score,
                           videos=args.video or None, num_videos=args.videos)
    for name, path in written.items():
        print(f"{name:>24}: {path}")
    return 0
