"""Feature extraction speed and memory: tal_kit's extractor vs the reference approach, measured in the same run.

    .venv/bin/python benchmarks/extract_speed.py                       # CPU: speed ratio + identical features
    .venv/bin/python benchmarks/extract_speed.py --memory-minutes 10   # + peak memory, 1-min vs 10-min 720p video
    .venv/bin/python benchmarks/extract_speed.py --device cuda         # GPU: ViT-g/14 bf16 vs the compute bound

CPU mode. One generated H.264 video (libx264 ultrafast, yuv420p, default keyframe interval), one small random-
weight ViT, the videomae2_tad recipe, clips of 16 frames every 4. The **reference approach** is what VideoMAEv2's
``extract_tad_feature.py`` does per clip (EXTRACTION.md §1, §4): fetch frames start..start+15 by seeking (to the
keyframe before them, then decoding forward, as decord's get_batch does), preprocess the clip, run the model with
batch 1 in fp32. **tal_kit** decodes the video once, preprocesses each frame once, slides the window in memory and
runs batches. Both outputs are compared (max abs difference; batched GEMMs differ from batch 1 at ~1e-6). Timed:
wall clock and process CPU time (the machine may be shared), clips/s each, and their ratio.

Memory mode. A 1-minute and a ``--memory-minutes`` 720p30 video are generated; each is extracted in a fresh
subprocess whose peak resident memory (ru_maxrss, torch included) is reported: the two should be about equal
(memory constant in video length) and below the 1.5 GB target.

GPU mode. The full ViT-g/14 (random weights, 40 blocks, 1408-d) in bf16 on 16x224x224 clips: model clips/s at a
few batch sizes, as a fraction of the compute bound (5.09 TFLOP per clip, EXTRACTION.md §5; ``--peak-tflops``
defaults to 989, H100/H200 dense bf16), then the whole pipeline (decode + recipe + model) on a generated
THUMOS-like 320x180 video.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tal_kit.extraction.checkpoints import random_backbone  # noqa: E402
from tal_kit.extraction.clips import clip_starts  # noqa: E402
from tal_kit.extraction.features import ClipSettings, extract_video  # noqa: E402
from tal_kit.extraction.recipes import get_recipe  # noqa: E402

SMALL_VIT = dict(embed_dim=192, depth=2, num_heads=3, mlp_dim=768)  # a ViT-Ti-sized stand-in, 16x224^2 input
MEMORY_VIT = dict(embed_dim=64, depth=1, num_heads=2, mlp_dim=128)
FLOP_PER_CLIP_VIT_G = 5.09e12


def make_video(path: Path, seconds: float, width: int, height: int, fps: int = 30) -> Path:
    """Simple moving content, H.264 yuv420p, ultrafast (the default keyframe interval of libx264: 250)."""
    import av

    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([(xx * 255 // max(width - 1, 1)), (yy * 255 // max(height - 1, 1)), (xx + yy) % 256],
                    -1).astype(np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for i in range(int(seconds * fps)):
            frame = base + np.uint8(3 * i % 256)  # uint8 arithmetic wraps modulo 256
            frame[(i * 7) % height: (i * 7) % height + 20, :40] = 255  # a moving block
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def reference_clip_frames(container, stream, start: int, clip_len: int, fps: float) -> np.ndarray:
    """Frames start..start+clip_len-1 by random access: seek to the keyframe at or before them, decode forward."""
    target = int(start / fps / stream.time_base)
    container.seek(target, stream=stream, backward=True, any_frame=False)
    frames = []
    for frame in container.decode(stream):
        index = round(frame.time * fps)
        if index < start:
            continue
        frames.append(frame.to_ndarray(format="rgb24"))
        if len(frames) == clip_len:
            break
    return np.stack(frames)


@torch.no_grad()
def reference_extract(path: Path, model, clip_len: int, stride: int) -> np.ndarray:
    """The reference loop: per clip, random-access 16 frames, the recipe's lines on the clip, batch 1, fp32."""
    import av
    import torch.nn.functional as F

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate)
        n = sum(1 for _ in container.decode(stream))  # decord-like: the frame count comes first
        feats = []
        for start in clip_starts(n, clip_len, stride):
            clip = reference_clip_frames(container, stream, start, clip_len, fps)
            x = torch.from_numpy(clip).permute(3, 0, 1, 2).float() / 255
            x = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
            feats.append(model(x.unsqueeze(0)).numpy())
    return np.vstack(feats)


def _times(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def cpu_benchmark(args) -> None:
    torch.manual_seed(0)
    model = random_backbone("vit-b/16", **SMALL_VIT).model.eval()
    with tempfile.TemporaryDirectory() as tmp:
        video = make_video(Path(tmp) / "bench.mp4", args.seconds, 640, 360)
        grid = ClipSettings(4, 16)
        recipe = get_recipe("videomae2_tad")
        ref, ref_wall, ref_cpu = _times(lambda: reference_extract(video, model, 16, 4))
        ours, our_wall, our_cpu = _times(lambda: extract_video(video, model, recipe, grid,
                                                               batch_size=args.batch_size).features)
    t = len(ref)
    print(f"video: {args.seconds:g} s 640x360 H.264 30 fps, {t} clips (16 frames, stride 4); model: random ViT "
          f"{SMALL_VIT['embed_dim']}-d x {SMALL_VIT['depth']} blocks, 16x224^2 clips; torch threads "
          f"{torch.get_num_threads()}")
    print(f"reference (seek + decode 16 frames per clip, batch 1, fp32): {t / ref_wall:7.2f} clips/s wall, "
          f"{t / ref_cpu:7.2f} clips per CPU-s")
    print(f"tal_kit   (decode once, slide, batch {args.batch_size}, fp32):    {t / our_wall:7.2f} clips/s wall, "
          f"{t / our_cpu:7.2f} clips per CPU-s")
    print(f"ratio tal_kit / reference: {ref_wall / our_wall:.2f}x wall, {ref_cpu / our_cpu:.2f}x CPU time "
          f"(target >= 3x)")
    same_shape = ref.shape == ours.shape
    diff = float(np.abs(ref - ours).max()) if same_shape else float("nan")
    print(f"features: shapes {ref.shape} vs {ours.shape}; max |difference| {diff:.2e} "
          f"({'identical up to batched-GEMM rounding' if same_shape and diff < 1e-4 else 'DIFFERENT'})")


def _memory_child(video: str) -> None:
    model = random_backbone("vit-b/16", **MEMORY_VIT).model.eval()
    started = time.perf_counter()
    out = extract_video(video, model, get_recipe("videomae2_tad"), ClipSettings(4, 16), batch_size=16)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    print(json.dumps({"clips": int(out.features.shape[0]), "frames": out.num_frames, "peak_mb": peak,
                      "seconds": time.perf_counter() - started}))


def memory_benchmark(args) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in (1, args.memory_minutes):
            video = make_video(Path(tmp) / f"m{minutes}.mp4", minutes * 60, 1280, 720)
            env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
            result = subprocess.run([sys.executable, __file__, "--memory-child", str(video)], env=env,
                                    capture_output=True, text=True, check=True)
            row = json.loads(result.stdout.strip().splitlines()[-1])
            rows.append(row)
            video.unlink()
            print(f"memory: {minutes:g}-min 720p30 H.264 ({row['frames']} frames, {row['clips']} clips): peak RSS "
                  f"{row['peak_mb']:.0f} MB (torch included), {row['seconds']:.0f} s", flush=True)
    print(f"memory ratio {args.memory_minutes:g}-min / 1-min: {rows[1]['peak_mb'] / rows[0]['peak_mb']:.2f} "
          f"(constant in length = 1.0); target <= 1500 MB")


def gpu_benchmark(args) -> None:
    device = torch.device(args.device)
    bound = args.peak_tflops * 1e12 / FLOP_PER_CLIP_VIT_G
    backbone = random_backbone("vit-g/14")
    model = backbone.model.to(device=device, dtype=torch.bfloat16).eval()
    print(f"{torch.cuda.get_device_name(device)}; ViT-g/14 (random weights) bf16; compute bound "
          f"{bound:.0f} clips/s at {args.peak_tflops:g} TFLOPS")
    best = 0.0
    with torch.no_grad():
        for batch in args.gpu_batches:
            x = torch.rand(batch, 3, 16, 224, 224, device=device, dtype=torch.bfloat16)
            for _ in range(2):
                model(x)
            torch.cuda.synchronize(device)
            started = time.perf_counter()
            for _ in range(args.gpu_iters):
                model(x)
            torch.cuda.synchronize(device)
            rate = batch * args.gpu_iters / (time.perf_counter() - started)
            best = max(best, rate)
            print(f"model only, batch {batch:3d}: {rate:7.1f} clips/s = {rate / bound:.0%} of the bound "
                  f"(peak memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB)")
    with tempfile.TemporaryDirectory() as tmp:
        video = make_video(Path(tmp) / "thumos_like.mp4", args.seconds, 320, 180)
        started = time.perf_counter()
        out = extract_video(video, model, get_recipe("videomae2_tad"), ClipSettings(4, 16),
                            batch_size=max(args.gpu_batches), device=device, dtype=torch.bfloat16)
        elapsed = time.perf_counter() - started
    t = out.features.shape[0]
    print(f"pipeline (decode + recipe + model), {args.seconds:g} s 320x180 video, {t} clips: {t / elapsed:.1f} "
          f"clips/s = {t / elapsed / bound:.0%} of the bound; best model-only {best / bound:.0%} (target >= 50%)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu (ratio vs the reference) or cuda (ViT-g/14 bf16)")
    p.add_argument("--seconds", type=float, default=20.0, help="length of the generated speed-test video")
    p.add_argument("--batch-size", type=int, default=16, help="tal_kit's clips per forward pass (CPU mode)")
    p.add_argument("--memory-minutes", type=float, default=0, help="also measure peak memory on a video this long")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak of the GPU (H100/H200: 989)")
    p.add_argument("--gpu-batches", type=int, nargs="+", default=[8, 32, 64])
    p.add_argument("--gpu-iters", type=int, default=5)
    p.add_argument("--no-speed", action="store_true", help="skip the CPU speed comparison (with --memory-minutes)")
    p.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.memory_child:
        return _memory_child(args.memory_child)
    if args.device.startswith("cuda"):
        return gpu_benchmark(args)
    if not args.no_speed:
        cpu_benchmark(args)
    if args.memory_minutes:
        memory_benchmark(args)


if __name__ == "__main__":
    main()
