"""The public 1-D NMS API: one call for one video or for many, on the backend that fits the tensors.

Backends (one behaviour, SPEC §E; details in tal_kit/ops/reference.py):
  "cuda"      the CUDA kernels of the extension (GPU tensors): one launch for all (video, class) groups
  "cpp"       the C++ kernels of the extension (CPU tensors, videos in parallel on torch.get_num_threads() threads)
  "torch"     pure torch, all groups advancing together (any device): the fallback without the extension
  "reference" pure torch, one Python step per detection (CPU): the readable oracle the others are tested against
  "auto"      cuda for GPU tensors when built and its self-check on the device passed (ops/selfcheck.py), else
              cpp, else torch (tal_kit.ops.backend_info() says which and why)

Inputs may be float32, float16, bfloat16 or float64; everything is computed in float32 and returned as float32
segments and scores and int64 labels, on the input's device.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import torch

from . import reference, vectorized
from .params import NMSParams
from .selfcheck import Kernel, Outputs, cuda_kernels_ok

Tensor = torch.Tensor
BACKENDS = ("auto", "cuda", "cpp", "torch", "reference")


class PackedDetections(NamedTuple):
    """Kept detections of many videos, end to end: video v owns the next ``counts[v]`` rows (score order)."""

    segments: Tensor  # [M, 2] float32
    scores: Tensor  # [M] float32 (decayed by soft-NMS)
    labels: Tensor  # [M] int64
    indices: Tensor  # [M] int64, row of each detection in the packed input
    counts: Tensor  # [V] int64

    def split(self) -> list[tuple[Tensor, Tensor, Tensor, Tensor]]:
        """Per video (segments, scores, labels, indices): indices are rows of the packed input."""
        counts = self.counts.tolist()
        pieces = [part.split(counts) for part in (self.segments, self.scores, self.labels, self.indices)]
        return list(zip(*pieces))


def _describe(video_ids: Sequence[str] | None, video: int) -> str:
    if video_ids is not None and video < len(video_ids):
        return f"video {video_ids[video]!r}"
    return f"video #{video}"


def _check_inputs(segments: Tensor, scores: Tensor, labels: Tensor | None, video_offsets: Tensor,
                  video_ids: Sequence[str] | None) -> tuple[Tensor, Tensor, Tensor]:
    """Shapes, dtypes, devices and values; returns float32/int64 contiguous tensors (same device)."""
    for name, value in (("segments", segments), ("scores", scores)):
        if not isinstance(value, Tensor):
            raise TypeError(f"NMS {name}: expected a torch.Tensor, got {type(value).__name__}")
        if not value.is_floating_point():
            raise TypeError(f"NMS {name}: expected a floating-point tensor, got {value.dtype}")
    if segments.dim() != 2 or segments.shape[1] != 2:
        raise ValueError(f"NMS segments: expected shape [N, 2] (start, end), got {list(segments.shape)}")
    num = segments.shape[0]
    if scores.shape != (num,):
        raise ValueError(f"NMS scores: expected shape [{num}] to match segments, got {list(scores.shape)}")
    if labels is None:
        labels = torch.zeros(num, dtype=torch.long, device=segments.device)
    elif not isinstance(labels, Tensor) or labels.shape != (num,) or labels.is_floating_point() or labels.is_complex():
        shape = list(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"NMS labels: expected an integer tensor of shape [{num}], got {shape}")
    if scores.device != segments.device or labels.device != segments.device:
        raise ValueError(f"NMS inputs on different devices: segments {segments.device}, scores {scores.device}, "
                         f"labels {labels.device}")
    segments = segments.to(torch.float32).contiguous()
    scores = scores.to(torch.float32).contiguous()
    labels = labels.to(torch.long).contiguous()

    if num:
        bad_rows = ~torch.isfinite(segments).all(dim=1) | ~torch.isfinite(scores) | (segments[:, 1] < segments[:, 0])
        if bool(bad_rows.any()):
            row = int(bad_rows.nonzero()[0, 0])
            video = int(torch.searchsorted(video_offsets.cpu(), torch.tensor([row]), right=True)[0]) - 1
            local = row - int(video_offsets[video])
            start, end = segments[row].tolist()
            raise ValueError(f"NMS input, {_describe(video_ids, video)}, candidate {local}: segment ({start}, {end}) "
                             f"with score {float(scores[row])} - segments need finite start <= end and scores must "
                             f"be finite")
    return segments, scores, labels


def _resolve_backend(backend: str, device: torch.device) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"NMS backend={backend!r}: expected one of {BACKENDS}")
    from .build import extension_for

    if backend in ("torch", "reference"):
        return backend
    if backend == "cuda" and device.type != "cuda":
        raise ValueError(f"NMS backend='cuda' needs CUDA tensors, got tensors on {device}")
    if backend in ("cuda", "cpp"):
        if extension_for(backend) is None:
            from .build import backend_info

            raise RuntimeError(f"NMS backend={backend!r} is not available: {backend_info()['reason']}")
        return backend
    if device.type == "cuda":
        if extension_for("cuda") is None:
            return "torch"
        from .build import backend_info

        # first use on this device: the kernels must reproduce the CPU path on a fixed batch (selfcheck.py)
        cpu_backend = "cpp" if extension_for("cpp") is not None else "torch"
        ok = cuda_kernels_ok(device, packed_kernel("cuda", device), packed_kernel(cpu_backend, torch.device("cpu")),
                             build=backend_info().get("build_dir"))
        return "cuda" if ok else "torch"
    return "cpp" if extension_for("cpp") is not None else "torch"


def nms_packed(segments: Tensor, scores: Tensor, labels: Tensor | None, video_offsets: Tensor | Sequence[int], *,
               iou_threshold: float, min_score: float, max_seg_num: int | None, method: str = "soft",
               soft_kind: str = "gaussian", sigma: float = 0.5, multiclass: bool = True, voting_thresh: float = 0.0,
               voting_weight: str = "score", backend: str = "auto",
               video_ids: Sequence[str] | None = None) -> PackedDetections:
    """NMS over many videos packed end to end: video v owns candidate rows video_offsets[v]:video_offsets[v+1].

    segments [N, 2] (start, end; any unit, grid units in tal_kit), scores [N], labels [N] (None: all 0),
    video_offsets [V + 1] non-decreasing, starting at 0 and ending at N. Settings as in `NMSParams`.
    video_ids (optional) name the videos in error messages. Returns a `PackedDetections`.
    """
    params = NMSParams(iou_threshold=iou_threshold, min_score=min_score, max_seg_num=max_seg_num, method=method,
                       soft_kind=soft_kind, sigma=sigma, multiclass=multiclass, voting_thresh=voting_thresh,
                       voting_weight=voting_weight)
    if not isinstance(segments, Tensor):
        raise TypeError(f"NMS segments: expected a torch.Tensor, got {type(segments).__name__}")
    video_offsets = torch.as_tensor(video_offsets, dtype=torch.long).cpu()
    if (video_offsets.dim() != 1 or len(video_offsets) < 1 or int(video_offsets[0]) != 0
            or int(video_offsets[-1]) != segments.shape[0] or bool((video_offsets.diff() < 0).any())):
        raise ValueError(f"NMS video_offsets: expected non-decreasing offsets from 0 to {segments.shape[0]}, got "
                         f"{video_offsets.tolist()[:8]}{'...' if len(video_offsets) > 8 else ''}")
    segments, scores, labels = _check_inputs(segments, scores, labels, video_offsets, video_ids)
    device = segments.device
    chosen = _resolve_backend(backend, device)

    if chosen == "reference":
        indices, kept_scores, kept_segments, counts = reference.nms_packed(
            segments.cpu(), scores.cpu(), labels.cpu(), video_offsets, params)
    elif chosen == "torch":
        indices, kept_scores, kept_segments, counts = vectorized.nms_packed(segments, scores, labels, video_offsets,
                                                                            params)
    else:
        from .build import extension_for

        ext = extension_for(chosen)
        run_device = device if chosen == "cuda" else torch.device("cpu")
        indices, kept_scores, kept_segments, counts = ext.nms_packed(
            segments.to(run_device), scores.to(run_device), labels.to(run_device), video_offsets.to(run_device),
            _METHOD_CODES[params.method], _KIND_CODES[params.soft_kind], params.iou_threshold, params.sigma,
            params.min_score, params.cap, params.multiclass, params.voting_thresh if params.uses_voting else 0.0,
            _VOTING_CODES[params.voting_weight], torch.get_num_threads())
    indices, counts = indices.to(device), counts.cpu()
    return PackedDetections(kept_segments.to(device), kept_scores.to(device), labels[indices], indices, counts)


# Codes shared with csrc/nms.h.
_METHOD_CODES = {"soft": 0, "hard": 1, "none": 2}
_KIND_CODES = {"gaussian": 0, "linear": 1}
_VOTING_CODES = {"score": 0, "score_iou": 1}


def nms_videos(videos: Sequence[tuple[Tensor, Tensor, Tensor | None]], *, video_ids: Sequence[str] | None = None,
               return_indices: bool = False, **settings) -> list[tuple]:
    """NMS of many videos in one call: ``videos`` is a list of (segments [N_v, 2], scores [N_v], labels [N_v]).

    Returns, per video, (segments [K, 2], scores [K], labels [K]) sorted by score (plus the kept rows' indices into
    that video's inputs when return_indices). Settings: the keyword arguments of `batched_nms`.
    """
    if not videos:
        return []
    for number, video in enumerate(videos):
        if (not isinstance(video, (tuple, list)) or len(video) != 3 or not isinstance(video[0], Tensor)
                or not isinstance(video[1], Tensor) or not (video[2] is None or isinstance(video[2], Tensor))):
            raise ValueError(f"nms_videos: {_describe(video_ids, number)} must be a tuple of tensors "
                             f"(segments, scores, labels or None)")
        if video[0].dim() != 2 or video[0].shape[1] != 2 or video[1].shape != (video[0].shape[0],):
            raise ValueError(f"nms_videos: {_describe(video_ids, number)}: expected segments [N, 2] and scores [N], "
                             f"got {list(video[0].shape)} and {list(video[1].shape)}")
    offsets = [0]
    for segments, _, _ in videos:
        offsets.append(offsets[-1] + segments.shape[0])
    labels = [v[2] if v[2] is not None else torch.zeros(len(v[1]), dtype=torch.long, device=v[1].device)
              for v in videos]
    packed = nms_packed(torch.cat([v[0] for v in videos]), torch.cat([v[1] for v in videos]), torch.cat(labels),
                        offsets, video_ids=video_ids, **settings)
    results = []
    for number, (segs, scores, labs, indices) in enumerate(packed.split()):
        if return_indices:
            results.append((segs, scores, labs, indices - offsets[number]))
        else:
            results.append((segs, scores, labs))
    return results


def batched_nms(segments: Tensor, scores: Tensor, labels: Tensor | None, *, iou_threshold: float, min_score: float,
                max_seg_num: int | None, method: str = "soft", soft_kind: str = "gaussian", sigma: float = 0.5,
                multiclass: bool = True, voting_thresh: float = 0.0, voting_weight: str = "score",
                backend: str = "auto", return_indices: bool = False) -> tuple:
    """NMS of one video's candidates, as ActionFormer's ``batched_nms`` (SPEC §E.5), on any backend.

    segments [N, 2], scores [N], labels [N] (None: class-agnostic ids 0). Settings: see `NMSParams`
    (``tal_kit.ops.params_from_test_cfg(cfg.test_cfg)`` gives them from a config).
    Returns (segments [K, 2], scores [K], labels [K]) sorted by score, descending (stable: among equal scores,
    lower class first, then pick order), plus the kept candidates' indices when return_indices.
    """
    num = segments.shape[0] if isinstance(segments, Tensor) else 0
    packed = nms_packed(segments, scores, labels, [0, num], iou_threshold=iou_threshold, min_score=min_score,
                        max_seg_num=max_seg_num, method=method, soft_kind=soft_kind, sigma=sigma,
                        multiclass=multiclass, voting_thresh=voting_thresh, voting_weight=voting_weight,
                        backend=backend)
    result = (packed.segments, packed.scores, packed.labels)
    return result + (packed.indices,) if return_indices else result


def soft_nms(segments: Tensor, scores: Tensor, *, sigma: float = 0.5, min_score: float = 0.0,
             max_seg_num: int | None = None, soft_kind: str = "gaussian", iou_threshold: float = 0.0,
             backend: str = "auto") -> tuple[Tensor, Tensor]:
    """Soft-NMS of one set of segments (no classes, no voting). Returns (kept indices, decayed scores), pick order."""
    _, kept_scores, _, indices = batched_nms(segments, scores, None, iou_threshold=iou_threshold,
                                             min_score=min_score, max_seg_num=max_seg_num, method="soft",
                                             soft_kind=soft_kind, sigma=sigma, multiclass=False, backend=backend,
                                             return_indices=True)
    return indices, kept_scores


def hard_nms(segments: Tensor, scores: Tensor, *, iou_threshold: float, min_score: float = 0.0,
             max_seg_num: int | None = None, backend: str = "auto") -> Tensor:
    """Greedy NMS of one set of segments. Returns the kept indices in descending (stable) score order."""
    *_, indices = batched_nms(segments, scores, None, iou_threshold=iou_threshold, min_score=min_score,
                              max_seg_num=max_seg_num, method="hard", multiclass=False, backend=backend,
                              return_indices=True)
    return indices


def packed_kernel(backend: str, device: torch.device) -> Kernel:
    """`nms_packed` with one ``backend`` on ``device``, as the self-check calls it (results on the CPU)."""
    def kernel(segments: Tensor, scores: Tensor, labels: Tensor, offsets: list[int], settings: dict) -> Outputs:
        out = nms_packed(segments.to(device), scores.to(device), labels.to(device), offsets, backend=backend,
                         **settings)
        return tuple(t.cpu() for t in (out.segments, out.scores, out.labels, out.indices, out.counts))

    return kernel
