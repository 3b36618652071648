"""The video demo: short synthetic videos whose actions you can see, in the kit's dataset layout.

``python -m tal_kit demo-videos --out data/demo_videos`` writes::

    data/demo_videos/videos/train/<id>.mp4   H.264 yuv420p (VP9 WebM when the bundled ffmpeg lacks libx264)
    data/demo_videos/videos/test/<id>.mp4    held-out videos (what ``detect`` runs on)
    data/demo_videos/annotations.json        ActionFormer JSON in seconds (subsets "training" / "test")
    data/demo_videos/demo_videos_meta.json   the generator settings and the classes (name, colour, shape)

What a video shows (every draw comes from ``seed``, video by video): a dim, low-saturation textured background
that slowly drifts, with per-frame grain; each **action** is a shape of its class's colour and form (a red disc, a
green square, ...) that fades in, moves across the frame, bouncing off its edges, and fades out. The fades are
linear ramps of ``blur`` seconds centred on the annotated start and end (blurred onsets: the boundary is where the
shape is half visible). **Distractors**, not annotated, are the same kinds of moving shapes (any form, the class
forms included) in colours that are no class's: greys and white. Class colours never appear outside an action, so
the annotations can be checked against the pixels.

Why three primary colours and achromatic distractors: the demo's features come from a *random-weight* ViT, whose
pooled output is close to a linear function of the clip's mean patch (the random blocks barely change the tokens),
so what it sees is mostly how much of each colour is on screen. Red, green and blue are three independent
directions of that; a grey or white shape moves all three together, which no single action does. Washed-out class
colours (an earlier version's near misses) are a mix of a class colour and grey, which a smaller shape of the class
colour on a grey one imitates exactly under such a linear view: no feature of this kind could tell them apart.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from tal_kit.atomic import atomic_folder
from tal_kit.data.demo import DemoSettingsError, check_replaceable, parse_settings

__all__ = ["VideoClass", "VIDEO_CLASSES", "VideoDemoSpec", "Appearance", "VideoPlan", "plan_video", "plan_videos",
           "render_frame", "video_annotations", "video_codec", "generate_demo_videos", "cli_demo_videos",
           "META_FILE"]

META_FILE = "demo_videos_meta.json"


@dataclass(frozen=True)
class VideoClass:
    name: str
    colour: tuple[int, int, int]  # RGB of the shape
    shape: str  # disc | square | triangle | ring


# Saturated, well-separated colours: a background or distractor pixel is never within ~90 RGB units of one.
VIDEO_CLASSES: tuple[VideoClass, ...] = (
    VideoClass("RedDisc", (230, 40, 40), "disc"),
    VideoClass("GreenSquare", (40, 200, 60), "square"),
    VideoClass("BlueTriangle", (50, 90, 240), "triangle"),
)
# Distractor colours: greys and white (achromatic: see the module docstring for why no near misses).
_GREYS = ((200, 200, 200), (150, 150, 150), (245, 245, 245))
SHAPES = ("disc", "square", "triangle", "ring")


@dataclass(frozen=True)
class VideoDemoSpec:
    """Generator settings. The defaults keep the whole chain (generate, extract with a tiny ViT, train, detect)
    at a few minutes on 2 CPU cores."""

    seed: int = 0
    num_train_videos: int = 32
    num_test_videos: int = 8
    min_duration: float = 15.0  # seconds, uniform in [min, max]
    max_duration: float = 22.0
    fps: int = 15
    size: int = 96  # frames are size x size pixels
    instances: tuple[int, int] = (2, 3)  # actions per video, inclusive range
    min_instance: float = 1.5  # seconds (annotated length)
    max_instance: float = 4.0
    blur: float = 0.4  # seconds of fade at each boundary
    distractors: tuple[int, int] = (1, 3)  # unannotated moving shapes per video, inclusive range
    shape_radius: tuple[int, int] = (26, 34)  # pixels
    crf: int = 20  # H.264 quality (lower is better; the colours must survive compression)

    def __post_init__(self) -> None:
        def fail(name: str, why: str) -> None:
            raise DemoSettingsError(f"demo-videos setting {name} = {getattr(self, name)!r}: {why}")

        for name in ("num_train_videos", "num_test_videos", "fps", "size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                fail(name, "must be a positive integer")
        if self.size < 32 or self.size % 2:
            fail("size", "must be even and at least 32 pixels")
        if not 0 < self.min_duration <= self.max_duration:
            fail("min_duration", f"must be positive and at most max_duration ({self.max_duration})")
        if not 0 < self.min_instance <= self.max_instance:
            fail("min_instance", f"must be positive and at most max_instance ({self.max_instance})")
        for name in ("instances", "distractors", "shape_radius"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                fail(name, "must be [low, high] with 0 <= low <= high")
        if self.instances[1] * (self.max_instance + self.blur) + 2 * self.blur > self.min_duration:
            fail("instances", f"{self.instances[1]} actions of up to {self.max_instance} s do not fit in "
                              f"{self.min_duration} s")
        if 2 * self.shape_radius[1] >= self.size:
            fail("shape_radius", f"must be less than half the frame size ({self.size})")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "VideoDemoSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DemoSettingsError(f"unknown demo-videos settings {unknown}; known: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


@dataclass(frozen=True)
class Appearance:
    """One moving shape: visible (alpha 1) on [start, end] apart from the fades, which are centred on both ends."""

    start: float  # seconds: alpha reaches 0.5 here
    end: float
    shape: str
    colour: tuple[int, int, int]
    radius: int
    position: tuple[float, float]  # centre (x, y) in pixels at ``start``
    velocity: tuple[float, float]  # pixels per second
    label: int | None  # class id for an action, None for a distractor


@dataclass(frozen=True)
class VideoPlan:
    index: int
    video_id: str
    subset: str  # "training" | "test"
    num_frames: int
    fps: int
    background: np.ndarray  # float32 [2 size, 2 size, 3] texture (drifts across the frame)
    drift: tuple[float, float]  # texture pixels per second
    appearances: tuple[Appearance, ...]

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    @property
    def actions(self) -> tuple[Appearance, ...]:
        return tuple(a for a in self.appearances if a.label is not None)


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth low-saturation texture, [2 size, 2 size, 3], values ~50..120 (dim, greyish, tinted per video)."""
    coarse = rng.normal(0.0, 1.0, (size // 8 + 2, size // 8 + 2))
    up = np.kron(coarse, np.ones((16, 16)))[:2 * size, :2 * size]
    k = np.ones(9) / 9.0  # a box blur of the blocky noise, rows then columns
    up = np.apply_along_axis(lambda r: np.convolve(r, k, mode="same"), 0, up)
    up = np.apply_along_axis(lambda r: np.convolve(r, k, mode="same"), 1, up)
    tint = rng.uniform(-12.0, 12.0, 3)
    base = rng.uniform(70.0, 95.0)
    return np.clip(base + tint[None, None, :] + 10.0 * up[..., None], 30, 140).astype(np.float32)


def _appearance(rng: np.random.Generator, spec: VideoDemoSpec, start: float, end: float, shape: str,
                colour: tuple[int, int, int], label: int | None) -> Appearance:
    radius = int(rng.integers(spec.shape_radius[0], spec.shape_radius[1] + 1))
    pos = tuple(float(v) for v in rng.uniform(radius, spec.size - radius, 2))
    speed = rng.uniform(8.0, 25.0)
    angle = rng.uniform(0, 2 * np.pi)
    return Appearance(round(start, 2), round(end, 2), shape, colour, radius, pos,
                      (float(speed * np.cos(angle)), float(speed * np.sin(angle))), label)


def plan_video(spec: VideoDemoSpec, index: int) -> VideoPlan:
    """Everything about video ``index`` (train videos first, then test videos), drawn from its own seed."""
    rng = np.random.default_rng([spec.seed, 7, index])
    train = index < spec.num_train_videos
    subset = "training" if train else "test"
    number = index + 1 if train else index - spec.num_train_videos + 1
    video_id = f"clip_{subset}_{number:04d}"
    num_frames = int(round(rng.uniform(spec.min_duration, spec.max_duration) * spec.fps))
    duration = num_frames / spec.fps

    count = int(rng.integers(spec.instances[0], spec.instances[1] + 1))
    # classes cycle through the videos (every class is in both subsets) plus random ones
    labels = [(index + k) % len(VIDEO_CLASSES) if k == 0 else int(rng.integers(len(VIDEO_CLASSES)))
              for k in range(count)]
    lengths = rng.uniform(spec.min_instance, spec.max_instance, count)
    margin = spec.blur  # the fades stay inside the video
    free = duration - 2 * margin - lengths.sum() - spec.blur * (count - 1)
    gaps = rng.dirichlet(np.ones(count + 1)) * max(free, 0.0)
    appearances: list[Appearance] = []
    t = margin
    for k in range(count):
        start = t + gaps[k]
        end = start + lengths[k]
        t = end + spec.blur  # fades of neighbouring actions never overlap
        c = VIDEO_CLASSES[labels[k]]
        appearances.append(_appearance(rng, spec, start, end, c.shape, c.colour, labels[k]))
    for _ in range(int(rng.integers(spec.distractors[0], spec.distractors[1] + 1))):
        length = float(rng.uniform(spec.min_instance, spec.max_instance))
        start = float(rng.uniform(margin, max(margin, duration - margin - length)))
        colour = _GREYS[int(rng.integers(len(_GREYS)))]
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        appearances.append(_appearance(rng, spec, start, start + length, shape, colour, None))
    background = _texture(rng, spec.size)
    drift = tuple(float(v) for v in rng.uniform(-6.0, 6.0, 2))
    return VideoPlan(index, video_id, subset, num_frames, spec.fps, background, drift, tuple(appearances))


def plan_videos(spec: VideoDemoSpec) -> list[VideoPlan]:
    return [plan_video(spec, i) for i in range(spec.num_train_videos + spec.num_test_videos)]


def _alpha(t: float, a: Appearance, blur: float) -> float:
    """Visibility at time ``t``: linear fades of ``blur`` seconds centred on start and end."""
    half = 0.5 * blur
    rise = np.clip((t - (a.start - half)) / blur, 0.0, 1.0)
    fall = np.clip(((a.end + half) - t) / blur, 0.0, 1.0)
    return float(min(rise, fall))


def _bounce(x: float, low: float, high: float) -> float:
    """Reflect ``x`` into [low, high] (a shape bouncing off the frame's edges)."""
    span = high - low
    u = (x - low) % (2 * span)
    return low + (u if u <= span else 2 * span - u)


def _mask(shape: str, cx: float, cy: float, r: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Coverage in [0, 1] of each pixel by the shape (1-pixel soft edge)."""
    dx, dy = xx - cx, yy - cy
    if shape == "disc":
        d = np.hypot(dx, dy) - r
    elif shape == "ring":
        d = np.abs(np.hypot(dx, dy) - 0.75 * r) - 0.3 * r
    elif shape == "square":
        d = np.maximum(np.abs(dx), np.abs(dy)) - 0.85 * r
    else:  # equilateral triangle pointing up, inradius 0.65 r: about the area of the square (a smaller one was
        # a much weaker signal in the demo's features, which mostly see how much colour is on screen)
        k = 0.65 * r
        d = np.maximum(np.maximum(dy - k, -0.866 * dx - 0.5 * dy - k), 0.866 * dx - 0.5 * dy - k)
    return np.clip(0.5 - d, 0.0, 1.0)


def render_frame(spec: VideoDemoSpec, plan: VideoPlan, index: int) -> np.ndarray:
    """RGB uint8 [size, size, 3] of frame ``index``, drawn at the frame's centre time (index + 0.5) / fps."""
    t = (index + 0.5) / plan.fps
    s = spec.size
    ox = int(round(_bounce(s / 2 + plan.drift[0] * t, 0, s)))
    oy = int(round(_bounce(s / 2 + plan.drift[1] * t, 0, s)))
    frame = plan.background[oy:oy + s, ox:ox + s].copy()
    grain = np.random.default_rng([spec.seed, 8, plan.index, index]).normal(0.0, 3.0, (s, s, 1))
    frame += grain.astype(np.float32)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    for a in plan.appearances:
        alpha = _alpha(t, a, spec.blur)
        if alpha <= 0:
            continue
        dt = t - a.start
        cx = _bounce(a.position[0] + a.velocity[0] * dt, a.radius, s - a.radius)
        cy = _bounce(a.position[1] + a.velocity[1] * dt, a.radius, s - a.radius)
        cover = (alpha * _mask(a.shape, cx, cy, a.radius, yy, xx))[..., None]
        frame = frame * (1 - cover) + np.asarray(a.colour, np.float32) * cover
    return np.clip(np.round(frame), 0, 255).astype(np.uint8)


def video_annotations(spec: VideoDemoSpec, plans: Sequence[VideoPlan]) -> dict:
    """The ActionFormer JSON of the videos: segments in seconds, label ids in VIDEO_CLASSES order."""
    database = {}
    for plan in plans:
        anns = [{"label": VIDEO_CLASSES[a.label].name, "segment": [a.start, a.end],
                 "segment(frames)": [round(a.start * plan.fps, 1), round(a.end * plan.fps, 1)], "label_id": a.label}
                for a in sorted(plan.actions, key=lambda a: a.start)]
        database[plan.video_id] = {"subset": plan.subset, "duration": round(plan.duration, 6), "fps": plan.fps,
                                   "annotations": anns}
    return {"version": "tal_kit-demo-videos-1", "database": database}


def video_codec() -> tuple[str, str]:
    """(encoder, file extension) a browser plays: H.264 in MP4 when libx264 is there, else VP9 in WebM."""
    import av

    available = av.codecs_available
    if "libx264" in available:
        return "libx264", ".mp4"
    if "libvpx-vp9" in available:
        return "libvpx-vp9", ".webm"
    raise DemoSettingsError("this PyAV build has neither libx264 nor libvpx-vp9 to encode browser-playable videos")


def _encode(path: Path, spec: VideoDemoSpec, plan: VideoPlan, codec: str) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=plan.fps)
        stream.width = stream.height = spec.size
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": str(spec.crf), "preset": "veryfast"}
        else:
            stream.options = {"crf": str(spec.crf + 10), "b": "0", "deadline": "realtime"}
        for i in range(plan.num_frames):
            frame = av.VideoFrame.from_ndarray(render_frame(spec, plan, i), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def generate_demo_videos(out: str | Path, spec: VideoDemoSpec | None = None, *, overwrite: bool = False,
                         log: Callable[[str], None] | None = None) -> dict:
    """Write the video demo into ``out`` (built beside it, renamed into place) and return a summary.

    An existing folder is replaced only with ``overwrite`` and only when it is a demo-videos folder.
    """
    spec = spec or VideoDemoSpec()
    out = Path(out)
    check_replaceable(out, META_FILE, "demo-videos", overwrite)
    started = time.perf_counter()
    codec, ext = video_codec()
    with atomic_folder(out) as tmp:  # built beside out, then swapped in whole; a killed run leaves nothing half-built
        plans = plan_videos(spec)
        for k, plan in enumerate(plans):
            folder = tmp / "videos" / ("train" if plan.subset == "training" else "test")
            folder.mkdir(parents=True, exist_ok=True)
            _encode(folder / f"{plan.video_id}{ext}", spec, plan, codec)
            if log and (k + 1) % 10 == 0:
                log(f"demo-videos: {k + 1}/{len(plans)} videos encoded")
        annotations = video_annotations(spec, plans)
        (tmp / "annotations.json").write_text(json.dumps(annotations, indent=1))
        summary = {"videos": len(plans), "train_videos": spec.num_train_videos, "test_videos": spec.num_test_videos,
                   "segments": sum(len(v["annotations"]) for v in annotations["database"].values()),
                   "minutes": round(sum(p.duration for p in plans) / 60, 2), "codec": codec,
                   "bytes": sum(p.stat().st_size for p in (tmp / "videos").rglob(f"*{ext}"))}
        meta = {"spec": spec.to_dict(), "classes": [dataclasses.asdict(c) for c in VIDEO_CLASSES],
                "codec": codec, "extension": ext, "summary": summary}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=1))
    summary["seconds"] = round(time.perf_counter() - started, 2)
    if log:
        log(f"demo-videos in {out}: {summary['videos']} videos ({summary['train_videos']} train in videos/train, "
            f"{summary['test_videos']} test in videos/test, {summary['minutes']} min, {codec}), "
            f"{summary['segments']} annotated actions in annotations.json, {summary['bytes'] / 1e6:.1f} MB, "
            f"{summary['seconds']} s")
    return summary


def cli_demo_videos(argv: list[str]) -> int:
    """``python -m tal_kit demo-videos [--out data/demo_videos] [--num-videos N] [--seed S] [--set k=v ...]``"""
    parser = argparse.ArgumentParser(prog="tal-kit demo-videos",
                                     description="Generate short synthetic videos with visible actions and their "
                                                 "annotations (the video demo).")
    parser.add_argument("--out", default="data/demo_videos", help="output folder (default data/demo_videos)")
    parser.add_argument("--num-videos", type=int, help="total videos; a fifth of them (at least 1) are held out")
    parser.add_argument("--seed", type=int, help="generator seed (default 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing demo-videos folder")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help=f"generator setting (repeatable); settings: "
                             f"{', '.join(f.name for f in dataclasses.fields(VideoDemoSpec))}")
    args = parser.parse_args(argv)
    settings = parse_settings(args.settings)
    if args.num_videos is not None:
        if args.num_videos < 2:
            raise DemoSettingsError("--num-videos must be at least 2 (one to train on, one held out)")
        test = max(1, args.num_videos // 5)
        settings.update(num_train_videos=args.num_videos - test, num_test_videos=test)
    if args.seed is not None:
        settings["seed"] = args.seed
    generate_demo_videos(args.out, VideoDemoSpec.from_dict(settings), overwrite=args.overwrite, log=print)
    return 0
