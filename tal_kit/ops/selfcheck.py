"""A safety net for the CUDA NMS kernels: before ``backend="auto"`` first sends GPU tensors to them on a device,
a small fixed batch (a few videos, every NMS mode) runs through the kernels and through the C++ CPU kernels (the
pure-torch NMS when those are missing), and the two must agree. This costs milliseconds once per device and build.

On a mismatch one warning names the device and the first difference, and "auto" uses the pure-torch NMS on that
device from then on (it gives the same results, more slowly). An explicit ``backend="cuda"`` is never redirected:
that is how the tests and ``benchmarks/gpu_check.sh`` examine the kernels themselves.
"""
from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

Tensor = torch.Tensor
Outputs = tuple[Tensor, Tensor, Tensor, Tensor, Tensor]  # segments, scores, labels, indices, counts
Kernel = Callable[[Tensor, Tensor, Tensor, list[int], dict[str, Any]], Outputs]

# Every mode the presets use: per-class and class-agnostic Gaussian soft-NMS with caps, linear soft-NMS, hard
# NMS, both segment-voting weights.
SETTINGS: tuple[dict[str, Any], ...] = (
    dict(method="soft", soft_kind="gaussian", sigma=0.5, iou_threshold=0.1, min_score=0.001, max_seg_num=12,
         multiclass=True),
    dict(method="soft", soft_kind="gaussian", sigma=0.75, iou_threshold=0.1, min_score=0.001, max_seg_num=10,
         multiclass=False, voting_thresh=0.75, voting_weight="score"),
    dict(method="soft", soft_kind="linear", iou_threshold=0.3, min_score=0.01, max_seg_num=None, multiclass=False,
         voting_thresh=0.7, voting_weight="score_iou"),
    dict(method="hard", iou_threshold=0.5, min_score=0.05, max_seg_num=8, multiclass=True),
)
SCORE_TOLERANCE = 1e-5  # the kernels are built without FMA and match to the bit; this only absorbs noise


class _Cache:
    lock = threading.Lock()
    results: dict[tuple[Any, ...], bool] = {}


def fixed_batch() -> tuple[Tensor, Tensor, Tensor, list[int]]:
    """Seven videos of 0 to 60 candidates, three classes, clustered segments and some tied scores (CPU)."""
    generator = torch.Generator().manual_seed(20240601)
    segments, scores, labels, offsets = [], [], [], [0]
    for count in (0, 1, 7, 23, 60, 41, 16):
        clusters = torch.randint(0, 5, (count,), generator=generator).float() * 20
        centres = clusters + torch.rand(count, generator=generator) * 6
        lengths = 2 + torch.rand(count, generator=generator) * 12
        segments.append(torch.stack([centres - lengths / 2, centres + lengths / 2], dim=1))
        score = torch.rand(count, generator=generator)
        score[::5] = 0.5  # ties
        scores.append(score)
        labels.append(torch.randint(0, 3, (count,), generator=generator))
        offsets.append(offsets[-1] + count)
    return torch.cat(segments), torch.cat(scores), torch.cat(labels), offsets


def first_difference(candidate: Kernel, reference: Kernel) -> str | None:
    """None when ``candidate`` gives the reference's detections on the fixed batch, else what differs first."""
    segments, scores, labels, offsets = fixed_batch()
    for settings in SETTINGS:
        got = candidate(segments, scores, labels, offsets, settings)
        want = reference(segments, scores, labels, offsets, settings)
        where = f"{settings['method']} NMS ({'per class' if settings['multiclass'] else 'class-agnostic'})"
        if not torch.equal(got[4].long(), want[4].long()):
            return f"{where}: detections per video {got[4].tolist()} instead of {want[4].tolist()}"
        if not torch.equal(got[3].long(), want[3].long()) or not torch.equal(got[2].long(), want[2].long()):
            return f"{where}: other candidates kept (or another order)"
        for name, a, b in (("scores", got[1], want[1]), ("segments", got[0], want[0])):
            if not torch.allclose(a.float(), b.float(), rtol=SCORE_TOLERANCE, atol=SCORE_TOLERANCE):
                worst = float((a.float() - b.float()).abs().max())
                return f"{where}: {name} differ by up to {worst:.3g}"
    return None


def cuda_kernels_ok(device: torch.device, candidate: Kernel, reference: Kernel,
                    build: str | Path | None = None) -> bool:
    """True when ``candidate`` (the CUDA kernels on ``device``) agrees with ``reference`` (the CPU path), checked
    once per device and build; ``build`` identifies the loaded extension (its build folder). The caller
    (tal_kit.ops.nms) supplies the kernels, so this module needs nothing from it."""
    index = device.index
    if index is None and device.type == "cuda" and torch.cuda.is_available():
        index = torch.cuda.current_device()
    key = (build, device.type, index)
    with _Cache.lock:
        if key in _Cache.results:
            return _Cache.results[key]
        try:
            problem = first_difference(candidate, reference)
        except Exception as error:  # a kernel that crashes is as unusable as one that is wrong
            problem = f"the kernels raised {type(error).__name__}: {(str(error) or ' ').splitlines()[0]}"
        if problem is not None:
            warnings.warn(f"tal_kit NMS: the CUDA kernels disagree with the CPU path on {device} ({problem}); "
                          f"NMS of GPU tensors uses the pure-torch path on this device instead (same results, "
                          f"slower). Please report this with the output of `python -m tal_kit info`.",
                          RuntimeWarning, stacklevel=4)
        _Cache.results[key] = problem is None
        return problem is None


def clear_cache() -> None:
    """Forget the checks made in this process (tests)."""
    with _Cache.lock:
        _Cache.results.clear()
