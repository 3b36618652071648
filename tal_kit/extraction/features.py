"""One video -> [T, C] features: decode once, preprocess each frame once, slide the clip window, batch the ViT.

Decoding and preprocessing run in a background thread that hands batches of clips to the model through a small
bounded queue, so the decoder (CPU) and the backbone (GPU) overlap and memory stays constant in video length.
"""
from __future__ import annotations

import math
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np
import torch

from tal_kit.extraction.clips import batch_clips
from tal_kit.extraction.decode import DecodeError, FrameRateMonitor, iter_frames, probe_video, resample_to_cfr
from tal_kit.extraction.recipes import Recipe

if TYPE_CHECKING:
    from tal_kit.config import Config

__all__ = ["ClipSettings", "VideoFeatures", "BadVideo", "extract_video", "DTYPES"]

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class BadVideo(DecodeError):
    """A video that yields no features (unreadable, zero frames, shorter than one clip); ``reason`` says why."""


@dataclass(frozen=True)
class ClipSettings:
    """The time grid: ``clip_len`` consecutive frames every ``stride`` frames, at native fps or ``resample_fps``."""

    stride: int = 4
    clip_len: int = 16
    resample_fps: float | None = None  # None: native frames (the recipe); else CFR-resampled by timestamps


def preset_clip_settings(cfg: Config) -> ClipSettings:
    """The extraction grid a preset's features sit on: its ``feat_stride`` and ``num_frames``, at the fps it fixes.

    A fixed-length preset (``feat_stride <= 0``, e.g. FineAction: features resized to a fixed length) says nothing
    about the stride or fps; VideoMAEv2's recipe for it is a stride of 16 at native fps (EXTRACTION.md §1).
    """
    d = cfg.dataset
    if d.feat_stride <= 0:
        return ClipSettings(16, _whole(d.num_frames, "dataset.num_frames"), None)
    return ClipSettings(_whole(d.feat_stride, "dataset.feat_stride"), _whole(d.num_frames, "dataset.num_frames"),
                        d.default_fps)


def _whole(value: float, key: str) -> int:
    from tal_kit.config import ConfigError

    if value != int(value):
        raise ConfigError(f"{key} = {value:g}: features are extracted every whole number of frames")
    return int(value)


@dataclass
class VideoFeatures:
    """Features of one video plus the facts its manifest entry records."""

    features: np.ndarray  # float32 [T, C]
    fps: float
    num_frames: int  # frames decoded (after resampling when resample_fps is set)
    header_frames: int
    duration: float  # seconds
    start_time: float  # presentation time of the first frame (clip times below are relative to it)
    clip_centres: list[float]
    variable_frame_rate: bool
    frame_rate_note: str
    width: int
    height: int
    seconds: float = 0.0


_DONE = object()


def _produce(path: Path, recipe: Recipe, grid: ClipSettings, batch_size: int, out: "queue.Queue",
             monitor: FrameRateMonitor, stop: threading.Event, counts: dict) -> None:
    """Decoder thread: put :class:`ClipBatch` es (at most ``batch_size`` clips) on ``out``, then _DONE or the
    exception."""
    try:
        fps = grid.resample_fps or monitor.nominal_fps

        def frames() -> Iterator:
            stream = iter_frames(path)

            def watched():
                for f in stream:
                    monitor.update(f.time)
                    yield f
            source = (resample_to_cfr(watched(), grid.resample_fps, monitor.nominal_fps) if grid.resample_fps
                      else watched())
            for f in source:
                counts["frames"] = f.index + 1
                counts.setdefault("first_time", f.time)
                counts["last_time"] = f.time
                yield f.time, recipe(f.rgb)[:, 0]

        for batch in batch_clips(frames(), grid.clip_len, grid.stride, batch_size, 1.0 / fps if fps > 0 else 0.0):
            out.put(batch)
            if stop.is_set():
                return
        out.put(_DONE)
    except BaseException as err:  # handed to the consumer, which re-raises it in the caller's thread
        out.put(err)


@torch.no_grad()
def extract_video(path: str | Path, model: torch.nn.Module, recipe: Recipe, grid: ClipSettings, *,
                  batch_size: int = 16, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                  on_clips: Callable[[int], None] | None = None) -> VideoFeatures:
    """Features [T, C] of one video (float32), computed in batches of ``batch_size`` clips.

    The model must already be on ``device`` in ``dtype``. ``on_clips(n)`` is called after each batch (progress).
    Raises :class:`BadVideo` for a file that cannot be decoded, has no frames or is shorter than one clip.
    """
    path = Path(path)
    started = time.perf_counter()
    try:
        info = probe_video(path)
    except DecodeError as err:
        raise BadVideo(path, f"unreadable: {err.reason}") from None
    if not (info.fps > 0 and math.isfinite(info.fps)) and not grid.resample_fps:
        raise BadVideo(path, "the container states no frame rate (pass a resample fps)")
    monitor = FrameRateMonitor(info.fps)
    batches: "queue.Queue" = queue.Queue(maxsize=2)
    stop = threading.Event()
    counts: dict[str, Any] = {"frames": 0}
    worker = threading.Thread(target=_produce, args=(path, recipe, grid, batch_size, batches, monitor, stop, counts),
                              name=f"decode-{path.name}", daemon=True)
    worker.start()
    feats: list[np.ndarray] = []
    centres: list[float] = []
    starts: list[int] = []
    try:
        while True:
            item = batches.get()
            if item is _DONE:
                break
            if isinstance(item, BaseException):
                if isinstance(item, DecodeError):
                    raise BadVideo(path, f"undecodable: {item.reason}") from None
                raise item
            feats.append(model(item.to(device, dtype).pixels()).float().cpu().numpy())
            centres.extend(item.centre_times)
            starts.extend(item.starts)
            if on_clips is not None:
                on_clips(len(item))
            del item  # let the block go before the next one arrives
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                batches.get_nowait()
            except queue.Empty:
                worker.join(0.05)
    n = counts["frames"]
    if n == 0:
        raise BadVideo(path, "zero frames decoded")
    if not feats:
        raise BadVideo(path, f"{n} frame(s), shorter than one clip of {grid.clip_len}")
    fps = float(grid.resample_fps or info.fps)
    first = float(counts["first_time"])
    constant = bool(grid.resample_fps) or not monitor.variable
    duration = n / fps if constant else counts["last_time"] - first + 1.0 / fps
    if constant:  # the exact grid (k·stride + clip_len/2)/fps rather than container-quantised timestamps
        centres = [(s + 0.5 * grid.clip_len) / fps for s in starts]
    else:
        centres = [t - first for t in centres]
    return VideoFeatures(
        features=np.concatenate(feats).astype(np.float32, copy=False), fps=fps, num_frames=n,
        header_frames=info.header_frames, duration=float(duration), start_time=first,
        clip_centres=[round(t, 9) for t in centres], variable_frame_rate=monitor.variable,
        frame_rate_note=monitor.describe(), width=info.width, height=info.height,
        seconds=time.perf_counter() - started)
