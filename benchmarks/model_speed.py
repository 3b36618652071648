"""ActionFormer speed and memory: tal_kit's model vs the reference implementation, measured in the same run.

The reference is the PyPI ``actionformer==1.5.0`` (test/benchmark-only, fetched by tests/oracle.py). Both models are
built from the same tal_kit preset and hold the same weights (the reference's, converted), and the script checks
that their losses agree on one batch before timing anything.

    .venv/bin/python benchmarks/model_speed.py [--preset thumos14] [--device auto|cpu|cuda] [--repeats N]

Timed, each a median over interleaved repeats (reference, tal_kit, reference, ...); wall-clock on a GPU, process
CPU time on a CPU (machines shared with other work make wall-clock meaningless there):
  train step   forward + label assignment + losses + backward, batch 2 x max_seq_len (2304 for thumos14),
               drop-path as in training
  long video   inference on one video of --long-steps (12,000) steps: forward + per-level decoding (pre-NMS),
               each model padding the video its own way (upstream: to a multiple of max_div_factor)
  short video  the same on a --short-steps (600) video, which upstream pads to max_seq_len
NMS is not included (same library call for both). Memory: the peak of tensor memory allocated during the step above
what was allocated before it (torch.cuda.max_memory_allocated on a GPU; the profiler's allocation events on a CPU).
Then two device-independent measures: the activations autograd keeps for backward, and the number of operators
a training step runs (about one kernel launch each on a GPU).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tal_kit.config import load_config  # noqa: E402
from tal_kit.model import ActionFormer, load_actionformer_checkpoint  # noqa: E402
from tal_kit.model.layers import ChannelLayerNorm  # noqa: E402
from tests import oracle  # noqa: E402
from tests.test_model_parity import reference_forward, reference_losses, reference_model  # noqa: E402


def build_models(preset: str, device: torch.device, seed: int = 0):
    warnings.filterwarnings("ignore", category=FutureWarning)
    meta_archs = oracle.import_module("modeling.meta_archs")
    cfg = load_config(preset)
    torch.manual_seed(seed)
    ref = reference_model(meta_archs, cfg)
    ours = ActionFormer(cfg)
    load_actionformer_checkpoint(ref.state_dict(), ours)
    return cfg, ref.to(device), ours.to(device)


def train_batch(cfg, device, batch_size: int = 2, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    T = cfg.dataset.max_seq_len
    lengths = [T, int(T * 0.7)][:batch_size] + [T] * max(0, batch_size - 2)
    mask = torch.arange(T)[None] < torch.tensor(lengths)[:, None]
    feats = torch.randn(batch_size, cfg.dataset.input_dim, T, generator=gen) * mask[:, None]
    segments, labels = [], []
    for length in lengths:
        starts = torch.rand(15, generator=gen) * length * 0.9
        ends = torch.minimum(starts + 2 + torch.rand(15, generator=gen) * 60, torch.tensor(float(length)))
        segments.append(torch.stack([starts, ends], 1).to(device))
        labels.append(torch.randint(0, cfg.dataset.num_classes, (15,), generator=gen).to(device))
    return feats.to(device), mask.to(device), segments, labels


def ref_train_step(ref, feats, mask, segments, labels):
    points, masks, cls, off = reference_forward(ref, feats, mask)
    losses = reference_losses(ref, points, masks, cls, off, segments, labels)
    losses["final_loss"].backward()
    return losses


def our_train_step(ours, feats, mask, segments, labels):
    losses = ours.losses(ours(feats, mask), segments, labels)
    losses["final_loss"].backward()
    return losses


def video_input(cfg, num_steps: int, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(cfg.dataset.input_dim, num_steps, generator=gen)


@torch.no_grad()
def ref_inference(ref, feats):
    """Upstream: pad to max_seq_len or the next multiple of max_div_factor, forward, decode per level."""
    num_steps = feats.shape[-1]
    length = ref.max_seq_len if num_steps <= ref.max_seq_len else \
        -(-num_steps // ref.max_div_factor) * ref.max_div_factor
    padded = torch.nn.functional.pad(feats, (0, length - num_steps))[None]
    mask = (torch.arange(length, device=feats.device) < num_steps)[None]
    points, masks, cls, off = reference_forward(ref, padded, mask)
    return ref.inference_single_video(points, [m[0] for m in masks], [c[0] for c in cls], [o[0] for o in off])


@torch.no_grad()
def our_inference(ours, feats):
    num_steps = feats.shape[-1]
    length = ours.inference_length(num_steps)
    padded = torch.nn.functional.pad(feats, (0, length - num_steps))[None]
    mask = (torch.arange(length, device=feats.device) < num_steps)[None]
    return ours.candidates(ours(padded, mask), 0)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device):
    """Seconds fn takes: wall-clock on a GPU; on a CPU, the process's CPU time (robust to other processes
    sharing the cores; run single-threaded, OMP_NUM_THREADS=1, for the fairest comparison)."""
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    sync(device)
    start = clock()
    fn()
    sync(device)
    return clock() - start


def compare_times(fns: dict, device, repeats: int) -> dict:
    """Median seconds per callable, after one warm-up each, alternating between them on every repeat."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(timed(fn, device))
    return {name: statistics.median(values) for name, values in times.items()}


def cuda_peak(fn, device) -> float:
    """Peak bytes allocated while fn runs, above what was allocated before it."""
    sync(device)
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    sync(device)
    return torch.cuda.max_memory_allocated(device) - base


def cpu_peak(fn) -> float:
    """Peak bytes of tensors allocated while fn runs on the CPU, above what was allocated before it: the
    profiler's allocation and free events replayed in time order (the CPU analogue of max_memory_allocated)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    changes = sorted((event.time_range.start, event.self_cpu_memory_usage) for event in prof.events()
                     if event.self_cpu_memory_usage)
    current = peak = 0
    for _, change in changes:
        current += change
        peak = max(peak, current)
    return float(peak)


class _OpCounter(TorchDispatchMode):
    """Counts the ATen operators that do work (views excluded): on a GPU, about one kernel launch each."""

    VIEWS = {"view", "_unsafe_view", "reshape", "transpose", "t", "permute", "expand", "unsqueeze", "squeeze",
             "slice", "select", "as_strided", "unfold", "alias", "split", "split_with_sizes", "unbind", "detach",
             "narrow", "lift_fresh", "view_as"}

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.__name__.split(".")[0] not in self.VIEWS:
            self.count += 1
        return func(*args, **(kwargs or {}))


def count_ops(fn) -> int:
    with _OpCounter() as counter:
        fn()
    return counter.count


def saved_activation_bytes(fn) -> int:
    """Bytes of the distinct storages autograd keeps for the backward pass of fn's forward."""
    storages: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        fn()
    return sum(storages.values())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="thumos14")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (default 20 on CUDA, 3 on CPU)")
    parser.add_argument("--long-steps", type=int, default=12000)
    parser.add_argument("--short-steps", type=int, default=600)
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    repeats = args.repeats or (20 if device.type == "cuda" else 3)
    try:
        cfg, ref, ours = build_models(args.preset, device)
    except ImportError as exc:
        print(f"reference package unavailable ({exc}); nothing to compare against")
        return 1
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"preset {args.preset}: {sum(p.numel() for p in ours.parameters()):,} parameters; device {name}; "
          f"torch {torch.__version__}; median of {repeats}")

    # agreement first: same weights, same batch, drop-path off
    batch = train_batch(cfg, device)
    for model in (ref, ours):
        model.train()
        for module in model.modules():
            if hasattr(module, "drop_prob"):
                module.saved_drop_prob, module.drop_prob = module.drop_prob, 0.0
    ref.loss_normalizer = float(cfg.train_cfg.init_loss_norm)
    ours.loss_normalizer.fill_(float(cfg.train_cfg.init_loss_norm))
    ref_losses = ref_train_step(ref, *batch)
    our_losses = our_train_step(ours, *batch)
    diff = max(abs(ref_losses[k].item() - our_losses[k].item()) for k in ("cls_loss", "reg_loss", "final_loss"))
    print(f"check: max loss difference {diff:.2e} (final_loss {our_losses['final_loss'].item():.6f})")
    for model in (ref, ours):
        for module in model.modules():
            if hasattr(module, "saved_drop_prob"):
                module.drop_prob = module.saved_drop_prob

    rows = []

    def step(model, fn):
        def run():
            model.zero_grad(set_to_none=True)
            fn(model, *batch)
        return run

    times = compare_times({"reference": step(ref, ref_train_step), "tal_kit": step(ours, our_train_step)},
                          device, repeats)
    rows.append((f"train step (batch {batch[0].shape[0]} x {batch[0].shape[-1]})", times, "train", 0))
    print(f"train step: reference {times['reference']:.3f} s, tal_kit {times['tal_kit']:.3f} s", flush=True)

    for model in (ref, ours):
        model.eval()
    for label, steps in (("long video", args.long_steps), ("short video", args.short_steps)):
        feats = video_input(cfg, steps).to(device)
        times = compare_times({"reference": lambda: ref_inference(ref, feats),
                               "tal_kit": lambda: our_inference(ours, feats)}, device, repeats)
        padded = (ours.reference_length(steps), ours.inference_length(steps))
        rows.append((f"{label} ({steps} steps; padded {padded[0]} vs {padded[1]})", times, "infer", steps))

    print(f"\n{'':44s} {'reference':>10s} {'tal_kit':>10s} {'speed-up':>9s}   peak memory (reference / tal_kit)",
          flush=True)
    peak_memory = (lambda fn: cuda_peak(fn, device)) if device.type == "cuda" else cpu_peak
    for label, times, task, steps in rows:
        memory = ""
        if not args.skip_memory:
            if task == "train":
                ref.train()
                ours.train()
                peaks = [peak_memory(step(ref, ref_train_step)), peak_memory(step(ours, our_train_step))]
            else:
                ref.eval()
                ours.eval()
                feats = video_input(cfg, steps).to(device)
                peaks = [peak_memory(lambda: ref_inference(ref, feats)),
                         peak_memory(lambda: our_inference(ours, feats))]
            memory = f"   {peaks[0] / 2**20:8.0f} MiB / {peaks[1] / 2**20:6.0f} MiB  ({peaks[1] / peaks[0]:.2f}x)"
        speedup = times["reference"] / times["tal_kit"]
        print(f"{label:44s} {times['reference'] * 1e3:8.1f}ms {times['tal_kit'] * 1e3:8.1f}ms {speedup:8.2f}x{memory}",
              flush=True)

    # Two device-independent measures: what backward keeps, and how many operators run (kernel launches on a GPU,
    # where a model this size at batch 2 is largely launch-bound)
    ref.train()
    ours.train()
    saved = [saved_activation_bytes(lambda: reference_losses(ref, *reference_forward(ref, *batch[:2]), *batch[2:])),
             saved_activation_bytes(lambda: ours.losses(ours(*batch[:2]), *batch[2:]))]
    print(f"\nactivations kept for backward (train step): reference {saved[0] / 2**20:.0f} MiB, "
          f"tal_kit {saved[1] / 2**20:.0f} MiB ({saved[1] / saved[0]:.2f}x)")
    ops = [count_ops(step(ref, ref_train_step)), count_ops(step(ours, our_train_step))]
    print(f"operators per train step (views excluded): reference {ops[0]}, tal_kit {ops[1]} ({ops[0] / ops[1]:.2f}x "
          f"fewer)", end="")
    if device.type != "cuda":  # what the GPU code path would launch: the fused LayerNorm
        norms = [m for m in ours.modules() if isinstance(m, ChannelLayerNorm)]
        for norm in norms:
            norm.fused = True
        gpu_path = count_ops(step(ours, our_train_step))
        for norm in norms:
            norm.fused = None
        print(f"; with tal_kit's GPU LayerNorm path {gpu_path} ({ops[0] / gpu_path:.2f}x fewer)", end="")
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
