"""NMS speed on dataset-shaped work, as ratios against ActionFormer's own C++ NMS measured in the same run.

    python benchmarks/nms_speed.py                     # both workloads, every backend available here
    python benchmarks/nms_speed.py --workload thumos --videos 50 --json out.json

Workloads (synthetic candidates shaped like ActionFormer's pre-NMS output, fixed seed):
  THUMOS-shaped: 212 videos x 2,000 candidates, 20 classes, per-class Gaussian soft-NMS, sigma 0.5, min_score 0.001,
                 max_seg_num 200.
  ANet-shaped:   4,728 videos x 2,000 candidates, class-agnostic Gaussian soft-NMS, sigma 0.75, min_score 0.001,
                 max_seg_num 100, segment voting 0.9 (score x IoU weights, as the ActionFormer package compared
                 against; the fork's score-only weights cost the same).
Timed: ActionFormer's batched_nms with its nms_cpu.cpp, one video at a time (when the actionformer sdist can be had);
tal_kit's C++ kernels one video at a time and all videos in one call (torch.get_num_threads() threads);
tal_kit's CUDA kernels (all videos in one launch) when a GPU is visible; the pure-torch fallback (vectorised over
groups; also on the GPU when one is visible) and the sequential reference on a few videos, extrapolated.
Outputs are checked against ActionFormer's (segments, scores, labels; float tolerance).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tal_kit.ops import backend_info, batched_nms, nms_videos  # noqa: E402
from tal_kit.ops.build import extension_for  # noqa: E402

WORKLOADS = {
    "thumos": dict(videos=212, candidates=2000, classes=20, grid=2304,
                   settings=dict(iou_threshold=0.1, min_score=0.001, max_seg_num=200, method="soft", sigma=0.5,
                                 multiclass=True, voting_thresh=0.0)),
    "anet": dict(videos=4728, candidates=2000, classes=1, grid=768,
                 settings=dict(iou_threshold=0.1, min_score=0.001, max_seg_num=100, method="soft", sigma=0.75,
                               multiclass=False, voting_thresh=0.9, voting_weight="score_iou")),
}


def make_videos(count: int, candidates: int, classes: int, grid: int, seed: int = 0):
    """Candidates like a trained model's: most around a few actions (jittered boundaries, high scores, the action's
    class), the rest scattered background with low scores; segments in feature-grid units."""
    gen = torch.Generator().manual_seed(seed)
    videos = []
    for _ in range(count):
        length = float(torch.randint(grid // 8, grid + 1, (1,), generator=gen))
        num_actions = int(torch.randint(2, 20, (1,), generator=gen))
        centres = torch.rand(num_actions, generator=gen) * length
        widths = 2 + torch.rand(num_actions, generator=gen) * length / 10
        action_class = torch.randint(0, classes, (num_actions,), generator=gen)
        near = int(candidates * 0.7)
        which = torch.randint(0, num_actions, (near,), generator=gen)
        centre = centres[which] + torch.randn(near, generator=gen) * widths[which] * 0.2
        width = widths[which] * (0.6 + 0.8 * torch.rand(near, generator=gen))
        labels = torch.where(torch.rand(near, generator=gen) < 0.8, action_class[which],
                             torch.randint(0, classes, (near,), generator=gen))
        scores = 0.02 + 0.9 * torch.rand(near, generator=gen) ** 2
        far = candidates - near
        far_centre = torch.rand(far, generator=gen) * length
        far_width = 1 + torch.rand(far, generator=gen) * length / 6
        centre, width = torch.cat([centre, far_centre]), torch.cat([width, far_width])
        labels = torch.cat([labels, torch.randint(0, classes, (far,), generator=gen)])
        scores = torch.cat([scores, 0.001 + 0.05 * torch.rand(far, generator=gen)])
        # at least one grid cell long, as after ActionFormer's duration_thresh filter (zero-length segments would
        # make its voting divide 0 by 0)
        start = (centre - width / 2).clamp(min=0, max=length - 1)
        segs = torch.stack([start, torch.maximum(start + 1, (centre + width / 2).clamp(max=length))], 1)
        videos.append((segs.contiguous(), scores.contiguous(), labels.long().contiguous()))
    return videos


def actionformer_nms():
    """ActionFormer's batched_nms wired to its compiled nms_cpu.cpp, or None."""
    try:
        from tests import oracle
        from tests.test_nms_oracle import build_oracle_nms

        cpp = build_oracle_nms()
        if cpp is None:
            return None
        module = oracle.import_module("utils.nms")
    except Exception as error:  # no sdist, no compiler: report and go on
        print(f"(ActionFormer's NMS unavailable: {str(error).splitlines()[0]})")
        return None
    module.nms_1d_cpu, module.HAS_CPP_NMS = cpp, True
    return module.batched_nms


def timed(function, repeats: int = 1) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - started)
    return best, result


def same_outputs(ours, theirs) -> int:
    """Number of videos whose (segments, scores, labels) differ beyond float tolerance."""
    differ = 0
    for (segs, scores, labels), (t_segs, t_scores, t_labels) in zip(ours, theirs):
        ok = (len(scores) == len(t_scores) and torch.equal(labels.cpu(), t_labels)
              and torch.allclose(scores.cpu(), t_scores, atol=1e-6, rtol=0)
              and torch.allclose(segs.cpu(), t_segs, atol=1e-3, rtol=1e-5))
        differ += not ok
    return differ


def run_workload(name: str, spec: dict, videos_override: int | None, reference_videos: int, repeats: int,
                 af_batched, baseline_videos: int | None = None) -> dict:
    count = videos_override or spec["videos"]
    settings = spec["settings"]
    videos = make_videos(count, spec["candidates"], spec["classes"], spec["grid"])
    print(f"\n{name}: {count} videos x {spec['candidates']} candidates, {spec['classes']} classes, {settings}")
    rows: dict[str, float] = {}
    outputs = {}

    checked = videos if not baseline_videos else videos[:baseline_videos]
    if af_batched is not None:
        def run_af():
            return [af_batched(s, sc, lb, settings["iou_threshold"], settings["min_score"], settings["max_seg_num"],
                               use_soft_nms=True, multiclass=settings["multiclass"], sigma=settings["sigma"],
                               voting_thresh=settings["voting_thresh"]) for s, sc, lb in checked]
        seconds, outputs["af"] = timed(run_af, 1)
        rows["actionformer_cpp_per_video"] = seconds * count / len(checked)
        if len(checked) < count:
            print(f"(ActionFormer timed on {len(checked)} videos, extrapolated to {count}; outputs compared on those)")

    if extension_for("cpp") is not None:
        def run_cpp_each():
            return [batched_nms(s, sc, lb, backend="cpp", **settings) for s, sc, lb in videos]

        def run_cpp_batched():
            return nms_videos(videos, backend="cpp", **settings)
        rows["tal_kit_cpp_per_video"], outputs["cpp_each"] = timed(run_cpp_each, repeats)
        rows["tal_kit_cpp_batched"], outputs["cpp"] = timed(run_cpp_batched, repeats)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        rows["tal_kit_cpp_batched_1_thread"], _ = timed(run_cpp_batched, repeats)
        torch.set_num_threads(threads)

    gpu_videos = [tuple(x.cuda() for x in v) for v in videos] if torch.cuda.is_available() else []
    if gpu_videos and extension_for("cuda") is not None:
        nms_videos(gpu_videos[:4], backend="cuda", **settings)  # warm-up
        torch.cuda.synchronize()

        def run_cuda():
            out = nms_videos(gpu_videos, backend="cuda", **settings)
            torch.cuda.synchronize()
            return out

        def run_cuda_from_cpu():  # host inputs in, host results out
            gpu = [tuple(x.cuda(non_blocking=True) for x in v) for v in videos]
            return [tuple(x.cpu() for x in r) for r in nms_videos(gpu, backend="cuda", **settings)]
        rows["tal_kit_cuda_batched"], outputs["cuda"] = timed(run_cuda, repeats)
        rows["tal_kit_cuda_batched_host_to_host"], _ = timed(run_cuda_from_cpu, repeats)

    if torch.cuda.is_available():
        seconds, _ = timed(lambda: [tuple(x.cpu() for x in r) for r in nms_videos(gpu_videos, backend="torch",
                                                                              **settings)], 1)
        rows["tal_kit_torch_fallback_on_gpu"] = seconds
    if reference_videos > 0:
        subset = videos[:reference_videos]
        seconds, _ = timed(lambda: nms_videos(subset, backend="reference", **settings), 1)
        rows["tal_kit_torch_reference (extrapolated)"] = seconds * count / len(subset)
        subset = videos[:reference_videos * 10]
        seconds, _ = timed(lambda: nms_videos(subset, backend="torch", **settings), 1)
        rows["tal_kit_torch_fallback (extrapolated)"] = seconds * count / len(subset)

    base_name = "actionformer_cpp_per_video" if "actionformer_cpp_per_video" in rows else "tal_kit_cpp_per_video"
    base = rows.get(base_name)
    print(f"{'method':44s} {'seconds':>9s} {'videos/s':>10s} {'speed-up vs ' + base_name:>40s}")
    for method, seconds in rows.items():
        ratio = f"{base / seconds:.2f}x" if base else "-"
        print(f"{method:44s} {seconds:9.3f} {count / seconds:10.1f} {ratio:>40s}")

    checks = {}
    if "af" in outputs:
        for key in ("cpp", "cpp_each", "cuda"):
            if key in outputs:
                checks[key] = same_outputs(outputs[key], outputs["af"])
        print("outputs vs ActionFormer: " + ", ".join(f"{k}: {'identical' if v == 0 else f'{v} videos differ'}"
                                                      for k, v in checks.items()))
    if "cuda" in outputs and "cpp" in outputs:
        differ = sum(not torch.equal(a[2].cpu(), b[2]) or not torch.allclose(a[1].cpu(), b[1], atol=1e-6, rtol=0)
                     for a, b in zip(outputs["cuda"], outputs["cpp"]))
        checks["cuda_vs_cpp"] = differ
        print(f"CUDA vs C++: {'identical' if differ == 0 else f'{differ} videos differ'}")
    return {"videos": count, "seconds": rows, "baseline": base_name, "differing_videos": checks}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=["thumos", "anet", "both"], default="both")
    parser.add_argument("--videos", type=int, default=None, help="override the number of videos (quick runs)")
    parser.add_argument("--reference-videos", type=int, default=4,
                        help="videos timed on the sequential reference (x10 on the vectorised torch fallback)")
    parser.add_argument("--repeats", type=int, default=2, help="best of N for the fast methods")
    parser.add_argument("--no-actionformer", action="store_true", help="skip ActionFormer's NMS")
    parser.add_argument("--baseline-videos", type=int, default=None,
                        help="time ActionFormer's NMS on the first N videos only and extrapolate (it is slow)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this file")
    args = parser.parse_args(argv)

    info = backend_info()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, GPU: "
          f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}; NMS: {info['reason']}")
    af_batched = None if args.no_actionformer else actionformer_nms()
    names = ["thumos", "anet"] if args.workload == "both" else [args.workload]
    report = {"torch": torch.__version__, "threads": torch.get_num_threads(),
              "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
              "workloads": {name: run_workload(name, WORKLOADS[name], args.videos, args.reference_videos,
                                               args.repeats, af_batched, args.baseline_videos) for name in names}}
    if args.json:
        tmp = args.json.with_suffix(".tmp")
        tmp.write_text(json.dumps(report, indent=1))
        tmp.replace(args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
