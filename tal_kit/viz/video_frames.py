"""What the linked video view needs from a video file (PyAV): thumbnails at given times, whether a browser can play
the file, and a small browser-playable copy when it cannot.

A thumbnail at time t is the frame on screen at t: the last frame whose presentation time is <= t (the first frame
for a t before it), which is also what a browser shows after ``video.currentTime = t``.
"""
from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from tal_kit.atomic import atomic_path
from tal_kit.extraction.decode import DecodeError, open_video, probe_video

__all__ = ["Thumbnail", "thumbnail_times", "frames_at", "thumbnails", "playability", "write_browser_proxy",
           "BROWSER_CODECS"]

# What Chromium (Debian's build, checked by tests/test_browser_video.py) and Firefox play, by container extension:
# FFmpeg codec names. MPEG-4 part 2 in an .mp4 (FFmpeg's "mpeg4") does NOT play, hence the codec check.
BROWSER_CODECS = {".mp4": {"h264", "av1", "vp9"}, ".m4v": {"h264", "av1", "vp9"},
                  ".webm": {"vp8", "vp9", "av1"}, ".ogv": {"theora", "vp8"}, ".ogg": {"theora", "vp8"}}


@dataclass(frozen=True)
class Thumbnail:
    """One small frame: ``time`` (seconds) asked for, ``frame_time`` of the frame shown, JPEG bytes and size."""

    time: float
    frame_time: float
    jpeg: bytes
    width: int
    height: int

    @property
    def data_uri(self) -> str:
        return "data:image/jpeg;base64," + base64.b64encode(self.jpeg).decode("ascii")


def thumbnail_times(duration: float, count: int) -> np.ndarray:
    """``count`` evenly spaced times: the centres of ``count`` equal cells covering [0, duration]."""
    if count <= 0 or not duration > 0:
        return np.zeros(0)
    return (np.arange(count) + 0.5) * (duration / count)


def frames_at(path: str | Path, times: Sequence[float], *, height: int = 72):
    """Yield ``(time, frame_time, PIL image)`` for each of ``times`` (ascending), scaled to ``height`` pixels.

    Each time costs one seek to the keyframe before it and a decode up to it, so a long video is not decoded
    whole for a few thumbnails.
    """
    import av

    path = Path(path)
    container = open_video(path)
    try:
        stream = container.streams.video[0]
        base = stream.time_base
        start = float(stream.start_time * base) if stream.start_time is not None else 0.0
        for t in sorted(float(x) for x in times):
            target = start + t  # the browser's currentTime counts from the first frame
            container.seek(max(0, int(math.floor(target / base))) if base else 0, stream=stream, backward=True)
            chosen = None
            for frame in container.decode(stream):
                ft = frame.time if frame.time is not None else target
                if chosen is not None and ft > target + 1e-6:
                    break
                chosen = frame
                if ft > target + 1e-6:  # the seek landed after t (t before the first frame): take this one
                    break
            if chosen is None:
                raise DecodeError(path, f"no frame decoded near {t:.3f} s")
            width = max(2, int(round(chosen.width * height / chosen.height / 2)) * 2)
            image = chosen.to_image().resize((width, height))
            yield t, float(chosen.time) - start if chosen.time is not None else t, image
    except av.error.FFmpegError as err:
        raise DecodeError(path, f"decoding failed ({type(err).__name__}: {err})") from None
    finally:
        container.close()


def thumbnails(path: str | Path, times: Sequence[float], *, height: int = 72, quality: int = 70
               ) -> list[Thumbnail]:
    """Small JPEG frames of ``path`` at ``times`` (see :func:`frames_at`)."""
    result = []
    for t, frame_time, image in frames_at(path, times, height=height):
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="JPEG", quality=quality, optimize=True)
        result.append(Thumbnail(t, frame_time, buffer.getvalue(), image.width, image.height))
    return result


def playability(path: str | Path) -> str | None:
    """None when browsers play ``path`` (container and codec, see :data:`BROWSER_CODECS`), else why not."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in BROWSER_CODECS:
        codecs = ", ".join(sorted(set().union(*BROWSER_CODECS.values())))
        return (f"{path.name}: browsers do not play {suffix or 'extension-less'} files "
                f"(they play {', '.join(sorted(BROWSER_CODECS))} with {codecs})")
    codec = probe_video(path).codec
    if codec not in BROWSER_CODECS[suffix]:
        return (f"{path.name}: browsers do not play {codec} video in {suffix} "
                f"(they do play {', '.join(sorted(BROWSER_CODECS[suffix]))})")
    return None


def write_browser_proxy(source: str | Path, target: str | Path, *, height: int = 240, fps: float | None = None
                        ) -> Path:
    """A small browser-playable copy of ``source``: VP8 in WebM, ``height`` pixels high, the same frame times.

    VP8 because every browser plays it and FFmpeg's libvpx encodes it fast in its realtime mode; frames keep their
    presentation times so the copy's times are the original's (detections and thumbnails stay aligned).
    """
    import av

    source, target = Path(source), Path(target)
    with av.open(str(source)) as inp:
        stream = inp.streams.video[0]
        rate = fps or stream.average_rate or 25
        start = stream.start_time or 0
        with atomic_path(target, suffix=".webm") as tmp, av.open(str(tmp), "w", format="webm") as out:
            enc = out.add_stream("libvpx", rate=rate)
            enc.height = height
            enc.width = max(2, int(round(stream.codec_context.width * height / stream.codec_context.height / 2)) * 2)
            enc.pix_fmt = "yuv420p"
            enc.options = {"deadline": "realtime", "cpu-used": "8", "crf": "12", "b": "400k"}
            enc.codec_context.time_base = stream.time_base
            for frame in inp.decode(stream):
                if frame.pts is None:
                    continue
                image = frame.reformat(width=enc.width, height=enc.height, format="yuv420p")
                image.pts = frame.pts - start
                image.time_base = stream.time_base
                for packet in enc.encode(image):
                    out.mux(packet)
            for packet in enc.encode():
                out.mux(packet)
    return target
