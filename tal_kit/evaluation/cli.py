"""``python -m tal_kit evaluate``: ActivityNet detection mAP of a results JSON against a ground-truth JSON."""
from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np

from tal_kit.atomic import write_json_atomic
from tal_kit.cli import UsageError
from tal_kit.data.annotations import load_annotations
from tal_kit.detections import Detections
from tal_kit.evaluation.fusion import fuse_scores, load_class_scores
from tal_kit.evaluation.ground_truth import DEDUP_MODES
from tal_kit.evaluation.metrics import evaluate_detections

__all__ = ["cli_evaluate", "parse_tiou_thresholds", "parse_top_k", "unusual_detections"]


def parse_tiou_thresholds(text: str) -> list[float]:
    """``"0.3:0.7:0.1"`` (start:stop:step, stop included), ``"0.5,0.75,0.95"`` or ``"0.5"`` -> list of floats.

    Ranges give clean decimals (0.6, not 0.6000000000000001), like the literal lists in the configs.
    """
    text = text.strip()
    try:
        if ":" not in text:
            values = [float(x) for x in text.split(",") if x.strip()]
        else:
            start, stop, step = (float(x) for x in text.split(":"))
    except ValueError:
        raise UsageError(f"--tiou {text!r}: expected start:stop:step or a comma-separated list of numbers") from None
    if ":" not in text:
        return _check_tiou(values, text)
    steps = (stop - start) / step if step > 0 else -1.0
    if steps < 0 or abs(steps - round(steps)) > 1e-6:
        raise UsageError(f"--tiou {text!r}: the range must go up from start to stop in whole steps")
    return _check_tiou([round(start + i * step, 10) for i in range(int(round(steps)) + 1)], text)


def _check_tiou(values: list[float], text: str) -> list[float]:
    if not values:
        raise UsageError(f"--tiou {text!r}: no thresholds given")
    bad = [v for v in values if not (math.isfinite(v) and 0 < v <= 1)]
    if bad:
        raise UsageError(f"--tiou {text!r}: tIoU thresholds are overlaps in (0, 1], got {bad[0]:g}")
    return values


def parse_top_k(text: str) -> list[int]:
    """``"1,5"`` -> [1, 5]: the k of the recall at k x #GT, whole numbers >= 1."""
    try:
        values = [int(k) for k in text.split(",") if k.strip()]
    except ValueError:
        raise UsageError(f"--top-k {text!r}: expected comma-separated whole numbers >= 1, e.g. 1,5") from None
    if not values or min(values) < 1:
        raise UsageError(f"--top-k {text!r}: each k must be a whole number >= 1, e.g. 1,5")
    return values


def unusual_detections(records: list, detections: Detections) -> str | None:
    """One line summarising detections the evaluation accepts but a user should know about: videos that are not in
    the evaluated ground truth (false positives, as in the official code) and segments starting before 0 s."""
    known = np.array(sorted({r.video_id for r in records}), dtype=str)
    outside = ~np.isin(detections.video_ids, known)
    negative = detections.starts < 0
    parts = []
    if outside.any():
        videos = np.unique(detections.video_ids[outside])
        parts.append(f"{int(outside.sum())} detection(s) of {len(videos)} video(s) not in the evaluated ground "
                     f"truth (e.g. {str(detections.video_ids[outside][0])!r}) count as false positives, as in the "
                     f"official evaluation")
    if negative.any():
        first = int(np.flatnonzero(negative)[0])
        parts.append(f"{int(negative.sum())} detection(s) start before 0 s (e.g. video "
                     f"{str(detections.video_ids[first])!r}, start {detections.starts[first]:.3f} s)")
    return "; ".join(parts) or None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tal_kit evaluate",
        description="ActivityNet detection mAP (identical to the official eval_detection.py; score ties are broken "
                    "by file order). Ground truth: ActionFormer or official ActivityNet JSON. Predictions: "
                    "ActivityNet results JSON (results[video] = [{label, score, segment}]).")
    parser.add_argument("--gt", required=True, help="ground-truth JSON")
    parser.add_argument("--pred", required=True, help="results JSON")
    parser.add_argument("--subset", default="validation",
                        help="subset(s) to evaluate, comma-separated, case-insensitive (default: validation)")
    parser.add_argument("--tiou", default="0.5:0.95:0.05",
                        help="tIoU thresholds: start:stop:step or a list (default 0.5:0.95:0.05; THUMOS: 0.3:0.7:0.1)")
    parser.add_argument("--dedup-gt", choices=DEDUP_MODES, default="none",
                        help="ground-truth filter: none (official), duplicates (InternVideo's ActionFormer fork), "
                             "actionformer (ActionFormer HEAD: duplicates and segments < 1e-3 s)")
    parser.add_argument("--unknown-labels", choices=("error", "ignore"), default="error",
                        help="a predicted label without ground truth: error (official) or ignore (counted)")
    parser.add_argument("--class-scores", metavar="FILE",
                        help="fuse with video-level class scores (.json/.pkl) before evaluating (SPEC B.3)")
    parser.add_argument("--fusion-topk", type=int, default=2, help="classes per video for --class-scores")
    parser.add_argument("--fusion-num-pred", type=int, default=200, help="detections kept per video for fusion")
    parser.add_argument("--fusion-no-softmax", action="store_true",
                        help="use class scores as they are (ActionFormer); default: softmax vectors with values "
                             "outside [0, 1] (InternVideo)")
    parser.add_argument("--top-k", default="1,5", help="k of the recall at k x #GT (default 1,5)")
    parser.add_argument("--per-class", action="store_true", help="also print AP per class")
    parser.add_argument("--json", action="store_true",
                        help='print {"tiou_thresholds", "mAP", "average_mAP"} as JSON (fractions)')
    parser.add_argument("--output", metavar="FILE", help="write the full metrics (per class, recall) as JSON")
    return parser


def cli_evaluate(argv: list[str]) -> int:
    """Entry point of ``python -m tal_kit evaluate``; returns the exit code."""
    args = _parser().parse_args(argv)
    thresholds = parse_tiou_thresholds(args.tiou)
    top_k = parse_top_k(args.top_k)
    for flag, value in (("--fusion-topk", args.fusion_topk), ("--fusion-num-pred", args.fusion_num_pred)):
        if value < 1:
            raise UsageError(f"{flag} must be >= 1, got {value}")
    db = load_annotations(args.gt)
    records = db.select([s.strip() for s in args.subset.split(",") if s.strip()])
    detections = Detections.from_results_json(args.pred, db.label_names, unknown_labels=args.unknown_labels)
    if args.class_scores:
        detections = fuse_scores(detections, load_class_scores(args.class_scores), topk=args.fusion_topk,
                                 num_pred=args.fusion_num_pred, softmax_out_of_range=not args.fusion_no_softmax,
                                 source=args.class_scores)
    result = evaluate_detections(records, detections, thresholds, label_names=db.label_names,
                                 dedup_gt=args.dedup_gt, unknown_labels=args.unknown_labels, top_k=top_k)
    note = unusual_detections(records, detections)
    if note:
        print(f"warning: {args.pred}: {note}", file=sys.stderr)
    if args.output:
        write_json_atomic(args.output, result.to_dict(), indent=1)
    if args.json:
        print(json.dumps({"tiou_thresholds": result.tiou_thresholds.tolist(), "mAP": result.mAP.tolist(),
                          "average_mAP": _plain(result.average_mAP)}))
    else:
        print(f"{args.pred} vs {args.gt} ({args.subset}, {len(records)} videos)")
        print(result.table(per_class=args.per_class))
    return 0


def _plain(value: float) -> float | None:
    value = float(np.float64(value))
    return value if math.isfinite(value) else None
