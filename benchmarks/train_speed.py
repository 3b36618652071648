"""Training and evaluation speed on the real datasets' shapes: padded to max_seq_len vs length-aware, and one video
per forward pass vs batched evaluation, each pair measured in the same run.

    OMP_NUM_THREADS=1 nice .venv/bin/python benchmarks/train_speed.py [--device auto|cpu|cuda] [--batches 6]

Workloads come from the real annotation files in ../shared/data (TAL_KIT_SHARED_DATA): the THUMOS-14 training split
(its 200 "validation" videos) and the ActivityNet-1.3 training split (10,024 videos), at the ``thumos14`` and ``anet``
presets' grids (I3D stride 4 at the video's fps; TSP 15 fps stride 16), max_seq_len and batch sizes. One epoch is
laid out as training lays it out: a seeded shuffle, the recipe's random crops (tal_kit's own ``truncate_video``),
full batches only. Its padded-vs-needed steps are counted over the whole epoch; ``--batches`` batches drawn
evenly from it are then timed as training steps (forward, label assignment, losses, backward; the preset's model,
drop-path on; features random) once padded to max_seq_len and once length-aware, interleaved. Evaluation: ANet
validation videos (``--eval-videos``, a seeded sample), through ``tal_kit.inference.predict.predict`` (forward, decoding, NMS)
with ``eval_batch_size`` 1 and the preset's.

Times are process CPU time on a CPU (robust to other work on a shared machine; run with OMP_NUM_THREADS=1) and
wall-clock on a GPU. Peak memory: of the median-length timed batch (the longest batch of an epoch usually reaches
max_seq_len either way). ``--embd-dim`` scales the model down (embedding, FPN and head widths) for a smoke run;
the numbers reported in the issue use the presets' models as they are.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.model_speed import cpu_peak, cuda_peak, sync  # noqa: E402
from tal_kit.config import load_config  # noqa: E402
from tal_kit.data.annotations import AnnotationWarning, load_annotations  # noqa: E402
from tal_kit.data.dataset import collate_videos, training_collate, truncate_video  # noqa: E402
from tal_kit.data.grid import grid_for_video  # noqa: E402
from tal_kit.dryrun import _grid_length  # noqa: E402  (clips a real extractor produces for a video)
from tal_kit.model import ActionFormer  # noqa: E402

SHARED_DATA = Path(os.environ.get("TAL_KIT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
WORKLOADS = {"thumos14": "thumos14/thumos14.json", "anet": "anet/anet1.3_trainval_gt.json"}


def video_shapes(cfg, records, is_training: bool, seed: int = 0) -> list[dict]:
    """Items as TALDataset makes them (features replaced by a [1, T] placeholder): grid length, ground truth in
    grid units, the training-only fixes and the random crop of one epoch (Python's ``random``, as the loader)."""
    d = cfg.dataset
    rng = random.Random(seed)
    items = []
    for record in records:
        fps = float(d.default_fps if d.default_fps is not None else record.fps)
        length = _grid_length(cfg, record.duration, fps)
        grid = grid_for_video(d, fps=fps, duration=record.duration, num_features=length)
        segments = torch.from_numpy(grid.seconds_to_grid(record.segments)).float().reshape(-1, 2)
        labels = torch.from_numpy(np.array(record.labels, dtype=np.int64))
        if is_training and d.clip_segments_to_features:
            keep = segments[:, 0] < length
            segments, labels = segments[keep].clamp(max=float(length)), labels[keep]
        item = {"video_id": record.video_id, "feats": torch.zeros(1, length), "segments": segments,
                "labels": labels, "fps": fps, "duration": float(record.duration),
                "feat_stride": float(grid.feat_stride), "num_frames": float(grid.num_frames)}
        if is_training and (len(labels) > 0 or length > d.max_seq_len):
            item = truncate_video(item, d.max_seq_len, d.trunc_thresh, d.crop_ratio, rng=rng)
        items.append(item)
    return items


def epoch_batches(items: list[dict], batch_size: int, seed: int = 0) -> list[list[dict]]:
    """A seeded shuffle cut into full batches (the last partial one dropped, as training does)."""
    order = torch.randperm(len(items), generator=torch.Generator().manual_seed(seed)).tolist()
    return [[items[i] for i in order[k:k + batch_size]] for k in range(0, len(order) - batch_size + 1, batch_size)]


def with_features(batch: list[dict], dim: int, seed: int) -> list[dict]:
    gen = torch.Generator().manual_seed(seed)
    return [{**it, "feats": torch.randn(dim, it["feats"].shape[1], generator=gen)} for it in batch]


def clock_for(device):
    return time.perf_counter if device.type == "cuda" else time.process_time


def train_step_fn(model, batch, device):
    feats, mask = batch["feats"].to(device), batch["mask"].to(device)
    segments = [s.to(device) for s in batch["segments"]]
    labels = [lab.to(device) for lab in batch["labels"]]

    def run():
        model.zero_grad(set_to_none=True)
        losses = model.losses(model(feats, mask), segments, labels)
        losses["final_loss"].backward()
        return losses
    return run


def timed(fn, device) -> float:
    clock = clock_for(device)
    sync(device)
    start = clock()
    fn()
    sync(device)
    return clock() - start


def scaled_config(preset: str, embd_dim: int | None):
    overrides = [] if embd_dim is None else [f"model.{k}={embd_dim}" for k in ("embd_dim", "fpn_dim", "head_dim")]
    return load_config(preset, overrides)


def train_workload(preset: str, args, device) -> dict:
    cfg = scaled_config(preset, args.embd_dim)
    db = load_annotations(SHARED_DATA / WORKLOADS[preset], remove_duplicates=cfg.dataset.remove_duplicates,
                          single_class=cfg.dataset.num_classes == 1)
    records = db.select(cfg.train_split)
    items = video_shapes(cfg, records, is_training=True, seed=args.seed)
    batches = epoch_batches(items, cfg.loader.batch_size, seed=args.seed)
    max_seq_len = cfg.dataset.max_seq_len
    aware = training_collate(cfg)
    needed = [aware(b)["feats"].shape[-1] for b in batches]
    longest = [max(it["feats"].shape[1] for it in b) for b in batches]
    print(f"\n{preset}: {len(records)} training videos, batch {cfg.loader.batch_size}, max_seq_len {max_seq_len}, "
          f"{len(batches)} batches per epoch; steps per batch: padded {max_seq_len}, length-aware "
          f"{statistics.mean(needed):.0f} on average (longest crop {statistics.mean(longest):.0f}): "
          f"{max_seq_len / statistics.mean(needed):.2f}x fewer computed", flush=True)

    picks = np.linspace(0, len(batches) - 1, args.batches).round().astype(int).tolist()
    torch.manual_seed(args.seed)
    model = ActionFormer(cfg).to(device).train()
    times = {"padded": [], "length-aware": []}
    collates = {"padded": lambda b: collate_videos(b, max_seq_len, cfg.model.max_div_factor, True), "length-aware": aware}
    warm = with_features(batches[picks[0]], cfg.dataset.input_dim, 0)
    for collate in collates.values():
        train_step_fn(model, collate(warm), device)()
    for k, index in enumerate(picks):
        batch = with_features(batches[index], cfg.dataset.input_dim, k)
        for name, collate in collates.items():
            torch.manual_seed(k)  # the same drop-path draws in both
            times[name].append(timed(train_step_fn(model, collate(batch), device), device))
        print(f"  batch {index:5d}: length-aware {needed[index]:5d} steps  padded {times['padded'][-1]:7.2f} s  "
              f"length-aware {times['length-aware'][-1]:7.2f} s", flush=True)
    row = {"name": f"{preset} train (batch {cfg.loader.batch_size}, {args.batches} batches)",
           "reference": sum(times["padded"]), "ours": sum(times["length-aware"]),
           "steps_ratio": max_seq_len * len(picks) / sum(needed[i] for i in picks)}
    if not args.skip_memory:
        median = sorted(picks, key=lambda i: needed[i])[len(picks) // 2]
        batch = with_features(batches[median], cfg.dataset.input_dim, 0)
        peak = (lambda fn: cuda_peak(fn, device)) if device.type == "cuda" else cpu_peak
        row["memory"] = [peak(train_step_fn(model, collate(batch), device)) for collate in collates.values()]
    return row


def eval_workload(args, device) -> dict:
    from tal_kit.inference.predict import predict

    cfg = scaled_config("anet", args.embd_dim)
    if args.eval_batch_size:
        cfg.loader.eval_batch_size = args.eval_batch_size
    db = load_annotations(SHARED_DATA / WORKLOADS["anet"], single_class=True)
    records = db.select(cfg.val_split)
    sample = random.Random(args.seed).sample(records, min(args.eval_videos, len(records)))
    items = with_features(video_shapes(cfg, sample, is_training=False), cfg.dataset.input_dim, 0)
    lengths = [it["feats"].shape[1] for it in items]
    print(f"\nanet evaluation: {len(items)} of {len(records)} validation videos, {statistics.mean(lengths):.0f} steps "
          f"on average (max {max(lengths)}); eval_batch_size {cfg.loader.eval_batch_size} vs 1", flush=True)

    class Items:
        video_ids = [it["video_id"] for it in items]

        def __len__(self):
            return len(items)

        def __getitem__(self, index):
            return items[index]

    torch.manual_seed(args.seed)
    model = ActionFormer(cfg).to(device).eval()
    runs = {"one by one": lambda: predict(model, Items(), cfg, device=device, progress=False, batch_size=1),
            "batched": lambda: predict(model, Items(), cfg, device=device, progress=False)}
    runs["batched"]()  # warm-up (the NMS extension loads on first use)
    times = {name: [] for name in runs}
    for _ in range(args.eval_repeats):
        for name, fn in runs.items():
            times[name].append(timed(fn, device))
    row = {"name": f"anet evaluation ({len(items)} videos)", "reference": statistics.median(times["one by one"]),
           "ours": statistics.median(times["batched"]), "unit": f"{len(items)} videos"}
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--workloads", default="thumos14,anet,eval", help="comma-separated: thumos14, anet, eval")
    parser.add_argument("--batches", type=int, default=6, help="training batches timed per workload")
    parser.add_argument("--eval-videos", type=int, default=96)
    parser.add_argument("--eval-repeats", type=int, default=2)
    parser.add_argument("--eval-batch-size", type=int, default=None, help="default: the preset's loader.eval_batch_size")
    parser.add_argument("--embd-dim", type=int, default=None, help="scale the model down (smoke runs only)")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=AnnotationWarning)  # the files' known quirks, reported by check-data
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    for relative in WORKLOADS.values():
        if not (SHARED_DATA / relative).exists():
            print(f"annotation file {SHARED_DATA / relative} not found (set TAL_KIT_SHARED_DATA)")
            return 1
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    clock = "wall-clock" if device.type == "cuda" else "process CPU time"
    model_note = "presets' models" if args.embd_dim is None else f"models scaled to width {args.embd_dim}"
    print(f"device {name}; torch {torch.__version__}; {clock}; {model_note}")

    rows = []
    for workload in args.workloads.split(","):
        rows.append(eval_workload(args, device) if workload == "eval" else train_workload(workload, args, device))

    print(f"\n{'':44s} {'reference':>10s} {'tal_kit':>10s} {'speed-up':>9s}   peak memory (reference / tal_kit)")
    for row in rows:
        memory = ""
        if "memory" in row:
            a, b = row["memory"]
            memory = f"   {a / 2**20:8.0f} MiB / {b / 2**20:6.0f} MiB  ({b / a:.2f}x)"
        extra = f"  (steps {row['steps_ratio']:.2f}x fewer)" if "steps_ratio" in row else ""
        print(f"{row['name']:44s} {row['reference']:9.2f}s {row['ours']:9.2f}s {row['reference'] / row['ours']:8.2f}x"
              f"{memory}{extra}")
    print("reference: training padded to max_seq_len (trainer.pad_to_max_seq_len=true); evaluation one video per "
          "forward pass (loader.eval_batch_size=1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
