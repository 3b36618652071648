"""Synthetic videos for the linked-view tests: a solid colour per block of frames (so a frame's time can be read from
its colour, even after JPEG and browser scaling), with a white square sliding across for something that moves."""
from __future__ import annotations

from pathlib import Path

import numpy as np

BLOCK_SECONDS = 0.5


def block_colour(time: float) -> np.ndarray:
    """The background colour (RGB uint8) of the frame shown at ``time``: one colour per BLOCK_SECONDS block."""
    block = int(time // BLOCK_SECONDS)
    return np.array([(block * 67 + 40) % 256, (block * 151 + 90) % 256, (block * 29 + 200) % 256], np.uint8)


def block_frame(index: int, fps: int, height: int, width: int, num_frames: int) -> np.ndarray:
    frame = np.empty((height, width, 3), np.uint8)
    frame[:] = block_colour(index / fps)
    side = max(4, height // 6)
    x = int(index / max(num_frames - 1, 1) * (width - side))
    frame[height // 2 - side // 2: height // 2 + side // 2, x:x + side] = 255
    return frame


def write_block_video(path: Path, seconds: float, *, fps: int = 25, height: int = 96, width: int = 160,
                      codec: str = "libvpx") -> Path:
    """Encode ``seconds`` of block frames; libvpx (VP8, .webm) plays in browsers, "mpeg4" (.mp4) does not."""
    import av

    num_frames = int(round(seconds * fps))
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if codec == "libvpx":
            stream.options = {"deadline": "realtime", "cpu-used": "8", "crf": "8", "b": "800k"}
        elif codec == "mpeg4":
            stream.options = {"qscale": "2"}
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(block_frame(i, fps, height, width, num_frames), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def decoded_frames(path: Path) -> list[tuple[float, np.ndarray]]:
    """Every frame of ``path`` as (presentation time from the first frame, RGB array), decoded front to back."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [(float(f.time), f.to_ndarray(format="rgb24")) for f in container.decode(stream)]
    start = frames[0][0]
    return [(t - start, rgb) for t, rgb in frames]


def frame_shown_at(frames: list[tuple[float, np.ndarray]], time: float) -> np.ndarray:
    """The frame on screen at ``time``: the last one whose time is <= it (the first for an earlier time)."""
    chosen = frames[0][1]
    for t, rgb in frames:
        if t > time + 1e-6:
            break
        chosen = rgb
    return chosen
