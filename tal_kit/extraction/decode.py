"""Video decoding with PyAV: every frame once, in presentation order, counted as it is decoded.

The reference extractor (VideoMAEv2 ``extract_tad_feature.py``) asks decord for 16 frames per clip, which seeks
back to a keyframe and re-decodes for every overlapping window, and trusts the container's packet count for N
(EXTRACTION.md §1, §4). Here a video is decoded sequentially exactly once; N is the number of frames that actually
came out of the decoder; the clip windows are slid over the decoded frames in memory (:mod:`.clips`), so memory is
constant in the video's length.

Times are presentation times (``frame.time``, seconds). A variable-frame-rate file is detected from them
(:class:`FrameRateMonitor`); :func:`resample_to_cfr` turns any stream into a constant-rate one by timestamps.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

__all__ = ["DecodeError", "VideoInfo", "Frame", "open_video", "probe_video", "iter_frames", "resample_to_cfr",
           "FrameRateMonitor", "VFR_TOLERANCE"]

# A frame interval that differs from the nominal 1/fps by more than this fraction of it marks the file as
# variable frame rate (container time bases quantise CFR intervals by a few percent, e.g. 33/34 ms at 29.97 fps).
VFR_TOLERANCE = 0.25


class DecodeError(ValueError):
    """A video that cannot be opened or decoded; the message names the file, ``reason`` says what went wrong."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about its first video stream (header facts: the frame count is *not* trusted)."""

    path: Path
    width: int
    height: int
    fps: float  # average frame rate from the container (frames per second)
    header_frames: int  # the container's frame count; 0 when the container does not store one (MKV)
    codec: str


@dataclass(frozen=True)
class Frame:
    """One decoded frame: ``index`` counts decoded frames from 0, ``time`` is its presentation time in seconds."""

    index: int
    time: float
    rgb: np.ndarray  # uint8 [H, W, 3]


def open_video(path: Path) -> Any:  # av.container.InputContainer (PyAV is imported lazily)
    """The PyAV container of a video file with a video stream; DecodeError (naming the file) otherwise."""
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as err:  # FileNotFoundError is an OSError
        raise DecodeError(path, f"cannot be opened as a video ({type(err).__name__}: {err})") from None
    if not container.streams.video:
        container.close()
        raise DecodeError(path, "has no video stream")
    return container


def _stream_fps(stream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else float("nan")


def probe_video(path: str | Path) -> VideoInfo:
    """Header facts of the first video stream (cheap: nothing is decoded)."""
    path = Path(path)
    container = open_video(path)
    try:
        stream = container.streams.video[0]
        return VideoInfo(path, int(stream.codec_context.width), int(stream.codec_context.height),
                         _stream_fps(stream), int(stream.frames or 0), stream.codec_context.name)
    finally:
        container.close()


def iter_frames(path: str | Path, *, threads: bool = True) -> Iterator[Frame]:
    """Decode every frame of the first video stream once, in presentation order, as RGB uint8.

    ``threads`` lets FFmpeg decode with frame threads (same frames, faster). A decoding error part way through is
    raised as :class:`DecodeError` naming the file and the number of frames decoded before it.
    """
    import av

    path = Path(path)
    container = open_video(path)
    try:
        stream = container.streams.video[0]
        if threads:
            stream.thread_type = "AUTO"
        fps = _stream_fps(stream)
        index = 0
        try:
            for frame in container.decode(stream):
                time = frame.time
                if time is None:  # no timestamp at all: fall back on the nominal rate
                    time = index / fps if math.isfinite(fps) and fps > 0 else float(index)
                yield Frame(index, float(time), frame.to_ndarray(format="rgb24"))
                index += 1
        except av.error.FFmpegError as err:
            raise DecodeError(path, f"decoding failed after {index} frame(s) ({type(err).__name__}: {err})") from None
    finally:
        container.close()


def resample_to_cfr(frames: Iterator[Frame], fps: float, source_fps: float | None = None) -> Iterator[Frame]:
    """A constant ``fps`` stream by timestamps: output frame j (time t0 + j/fps) is the decoded frame on screen at
    that time, i.e. the last one whose presentation time is <= t0 + j/fps. Frames are repeated or dropped as the
    timestamps say; the video ends one source frame interval (1/``source_fps``, default 1/``fps``) after the last
    frame's presentation time, so its duration is kept.
    """
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"resample fps must be a positive number, got {fps}")
    previous: Frame | None = None
    t0 = 0.0
    out = 0
    eps = 1e-9
    for frame in frames:
        if previous is None:
            t0 = frame.time
        else:
            while t0 + out / fps < frame.time - eps:  # targets shown before this frame appears
                yield Frame(out, t0 + out / fps, previous.rgb)
                out += 1
        previous = frame
    if previous is not None:
        last_interval = 1.0 / source_fps if source_fps and source_fps > 0 and math.isfinite(source_fps) else 1.0 / fps
        end = previous.time + last_interval
        while t0 + out / fps < end - eps:
            yield Frame(out, t0 + out / fps, previous.rgb)
            out += 1


class FrameRateMonitor:
    """Watches presentation times as frames go by: counts frames and decides whether the rate was constant."""

    def __init__(self, nominal_fps: float, tolerance: float = VFR_TOLERANCE):
        self.nominal_fps = nominal_fps
        self.tolerance = tolerance
        self.count = 0
        self.first_time: float | None = None
        self.last_time: float | None = None
        self.irregular = 0  # intervals off the nominal one by more than the tolerance
        self.min_interval = math.inf
        self.max_interval = 0.0

    def update(self, time: float) -> None:
        if self.last_time is not None:
            interval = time - self.last_time
            self.min_interval = min(self.min_interval, interval)
            self.max_interval = max(self.max_interval, interval)
            if math.isfinite(self.nominal_fps) and self.nominal_fps > 0:
                nominal = 1.0 / self.nominal_fps
                if abs(interval - nominal) > self.tolerance * nominal:
                    self.irregular += 1
        else:
            self.first_time = time
        self.last_time = time
        self.count += 1

    @property
    def variable(self) -> bool:
        """True when some frame interval was off the nominal 1/fps (a variable-frame-rate file)."""
        return self.irregular > 0

    def describe(self) -> str:
        if self.count < 2:
            return f"{self.count} frame(s)"
        return (f"{self.irregular} of {self.count - 1} frame intervals differ from 1/{self.nominal_fps:g} s by more "
                f"than {self.tolerance:.0%} (intervals {self.min_interval * 1000:.1f}-"
                f"{self.max_interval * 1000:.1f} ms)")
