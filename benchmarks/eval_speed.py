"""Evaluator speed at ActivityNet scale: tal_kit vs ActionFormer's ANETdetection, measured in the same run.

Ground truth: the real ActivityNet-1.3 validation set (../shared/data/anet/anet1.3_trainval_gt.json, 4,926 videos,
200 classes). Detections: ~50k synthetic ones (noisy copies of the truth with right or wrong labels, plus random
segments), with distinct scores so that both evaluators rank them the same way. Both compute mAP at tIoU
0.5:0.05:0.95 and recall at 1x/5x #GT, with ActionFormer's ground-truth filter (dedup_gt=True) to compare like with
like; the script checks that the numbers agree to 1e-12 and prints the speed ratio.

    .venv/bin/python benchmarks/eval_speed.py [--num-dets 50000] [--repeats 5] [--workers 8]

ANETdetection is the PyPI ``actionformer==1.5.0`` (test/benchmark-only, fetched by tests/oracle.py); its default
``num_workers=8`` is what ActionFormer's training and evaluation use. Timed: the evaluation call only (the ground-truth
JSON is loaded beforehand by both, and ANETdetection's worker processes are started by a warm-up call).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tal_kit.data.annotations import load_annotations  # noqa: E402
from tal_kit.detections import Detections  # noqa: E402
from tal_kit.evaluate import evaluate_detections  # noqa: E402

SHARED_DATA = Path(os.environ.get("TAL_KIT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
TIOU = np.linspace(0.5, 0.95, 10)


def synthetic_detections(records, num_classes: int, num_dets: int, seed: int = 0) -> Detections:
    """About num_dets detections: per segment a few jittered copies (80 % with the right label), the rest random."""
    rng = np.random.default_rng(seed)
    segments = np.concatenate([r.segments for r in records])
    labels = np.concatenate([r.labels for r in records])
    video = np.repeat([r.video_id for r in records], [len(r.labels) for r in records])
    copies = rng.integers(0, len(labels), num_dets * 3 // 5)
    length = segments[copies, 1] - segments[copies, 0]
    jitter = rng.normal(0.0, 0.15 * length[:, None] + 0.5, (len(copies), 2))
    starts = np.maximum(0.0, segments[copies, 0] + jitter[:, 0])
    ends = np.maximum(starts, segments[copies, 1] + jitter[:, 1])
    copy_labels = np.where(rng.random(len(copies)) < 0.8, labels[copies], rng.integers(0, num_classes, len(copies)))
    n_random = num_dets - len(copies)
    durations = np.array([r.duration for r in records])
    pick = rng.integers(0, len(records), n_random)
    random_starts = rng.random(n_random) * durations[pick]
    random_ends = np.minimum(durations[pick], random_starts + rng.exponential(0.2, n_random) * durations[pick])
    random_video = np.array([records[i].video_id for i in pick])
    return Detections(np.concatenate([video[copies], random_video]), np.concatenate([starts, random_starts]),
                      np.concatenate([ends, random_ends]),
                      np.concatenate([copy_labels, rng.integers(0, num_classes, n_random)]),
                      rng.permutation(num_dets) / num_dets + 1e-3)  # distinct scores


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-dets", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=5, help="tal_kit timing: best of this many runs")
    parser.add_argument("--workers", type=int, default=8, help="ANETdetection num_workers (ActionFormer's default 8)")
    args = parser.parse_args()

    gt_path = SHARED_DATA / "anet" / "anet1.3_trainval_gt.json"
    if not gt_path.exists():
        print(f"skipped: {gt_path} is not present")
        return 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        db = load_annotations(gt_path)
    records = db.select(["validation"])
    dets = synthetic_detections(records, db.num_classes, args.num_dets)
    print(f"ground truth: {len(records)} videos, {sum(len(r.labels) for r in records)} segments, "
          f"{db.num_classes} classes; detections: {len(dets)}; tIoU 0.5:0.05:0.95")

    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        ours = evaluate_detections(records, dets, TIOU, label_names=db.label_names, dedup_gt=True)
        times.append(time.perf_counter() - start)
    ours_time = min(times)
    print(f"tal_kit evaluate_detections: {ours_time:.3f} s (best of {args.repeats})  "
          f"average mAP {100 * ours.average_mAP:.4f} %")

    try:
        from tests import oracle
        metrics = oracle.import_module("utils.metrics")
        import pandas as pd
    except ImportError as err:
        print(f"ANETdetection unavailable ({err}); no ratio")
        return 0
    # joblib's worker processes import the oracle by its plain name; they inherit this process's sys.path.
    sys.path.append(str(oracle.source_dir()))
    reference = metrics.ANETdetection(str(gt_path), "validation", tiou_thresholds=TIOU, num_workers=args.workers)
    frame = pd.DataFrame({"video-id": dets.video_ids, "t-start": dets.starts, "t-end": dets.ends,
                          "label": dets.labels, "score": dets.scores})
    reference.evaluate(frame.iloc[:200].copy(), verbose=False)  # warm-up: start and import the worker processes
    start = time.perf_counter()
    mAP, average_mAP, recall = reference.evaluate(frame, verbose=False)
    reference_time = time.perf_counter() - start
    print(f"ActionFormer ANETdetection (num_workers={args.workers}): {reference_time:.3f} s  "
          f"average mAP {100 * average_mAP:.4f} %")

    ap_diff = float(np.nanmax(np.abs(ours.ap - reference.ap.T)))
    map_diff = float(np.max(np.abs(ours.mAP - mAP)))
    recall_diff = float(np.max(np.abs(np.stack([ours.recall_at_k[1], ours.recall_at_k[5]], axis=1) - recall)))
    identical = max(ap_diff, map_diff, recall_diff) <= 1e-12
    print(f"max |difference|: per-class AP {ap_diff:.1e}, mAP {map_diff:.1e}, recall {recall_diff:.1e} -> "
          f"{'identical' if identical else 'DIFFERENT'}")
    print(f"speed-up: {reference_time / ours_time:.1f}x (target >= 30x)")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
