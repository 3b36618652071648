"""The embedded demo dataset: deterministic synthetic THUMOS-like videos in exactly the real on-disk layout.

``python -m tal_kit demo-data --out data/demo`` writes::

    data/demo/annotations.json        ActionFormer JSON (subset Validation = train, Test = evaluation)
    data/demo/features/<video>.npy    float32 [T, input_dim], one file per video (THUMOS grid: 16-frame clips,
                                      stride 4 frames, so 7.5 features per second at 30 fps)
    data/demo/demo_meta.json          the generator settings (DemoSpec) and class groups

How the videos are made (every random draw comes from ``seed``, video by video, so any video can be re-rendered
on its own, on any grid):

* **Annotations** follow THUMOS-14's shape: the 20 THUMOS classes (label_id alphabetical); each video shows one
  main class, sometimes a related second one; instance durations are log-normal around a per-class median (a few
  seconds); a few instances per minute; fps 30, some videos 25 or 29.97. Two THUMOS quirks are kept: every
  CliffDiving instance is also annotated as Diving (same segment, two labels), and CricketShot follows
  CricketBowling, overlapping its end.
* **Features** are computed the way an extractor sees a video. A frame-level signal is built first: a per-video
  scene vector, slowly drifting background, per-frame noise, and for every instance its class pattern, which has
  an onset, a middle and an offset phase (so boundaries carry information) plus a direction shared by all
  actions. Related classes (the throws, the jumps, the two dives, ...) share part of their pattern, so they can be
  confused. Distractors are added that are not annotated: faint versions of a class's middle phase ("near
  misses") and lone onsets ("false starts"). Each feature then averages the frames of its 16-frame clip, which
  blurs boundaries exactly as real clip features do.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from tal_kit.atomic import atomic_folder
from tal_kit.data.features import feature_path, write_feature_file

__all__ = ["THUMOS_CLASSES", "CLASS_GROUPS", "DemoSpec", "VideoPlan", "plan_videos", "plan_video",
           "render_features", "demo_annotations", "generate_demo_dataset", "ensure_demo_data", "load_demo_spec",
           "cli_demo_data"]

# The 20 THUMOS-14 classes; label_id is the index (alphabetical, as in thumos14.json).
THUMOS_CLASSES = ["BaseballPitch", "BasketballDunk", "Billiards", "CleanAndJerk", "CliffDiving", "CricketBowling",
                  "CricketShot", "Diving", "FrisbeeCatch", "GolfSwing", "HammerThrow", "HighJump", "JavelinThrow",
                  "LongJump", "PoleVault", "Shotput", "SoccerPenalty", "TennisSwing", "ThrowDiscus",
                  "VolleyballSpiking"]
# Related classes share part of their feature pattern (what makes real classes confusable).
CLASS_GROUPS = {
    "ball": ["BaseballPitch", "BasketballDunk", "FrisbeeCatch", "SoccerPenalty", "VolleyballSpiking"],
    "swing": ["GolfSwing", "TennisSwing", "Billiards"],
    "throw": ["HammerThrow", "JavelinThrow", "Shotput", "ThrowDiscus"],
    "jump": ["HighJump", "LongJump", "PoleVault"],
    "dive": ["CliffDiving", "Diving"],
    "cricket": ["CricketBowling", "CricketShot"],
    "lift": ["CleanAndJerk"],
}
META_FILE = "demo_meta.json"


class DemoSettingsError(ValueError):
    """A generator setting that cannot be used (unknown, malformed or out of range); the message names it."""


@dataclass(frozen=True)
class DemoSpec:
    """Generator settings. The defaults make the demo small enough for a CPU reproduction in minutes, and hard
    enough that it is not solved: the demo preset (8 epochs on 2 CPU cores) reaches about 0.70 average mAP
    (tIoU 0.3:0.7), from ~0.76 at tIoU 0.3 down to ~0.59 at 0.7. frame_noise_std, amplitude_range,
    distractors_per_minute, distractor_amplitude, group_share and boundary_blur set that difficulty (the earlier,
    milder defaults 2.0, (0.5, 1.1), 4, (0.25, 0.55), 0.55, 0.15 reached ~0.97)."""

    seed: int = 0
    num_train_videos: int = 200  # subset "Validation", as THUMOS trains on its validation set
    num_test_videos: int = 100  # subset "Test"
    min_duration: float = 30.0  # seconds; durations are log-uniform in [min, max]
    max_duration: float = 120.0
    fps_choices: tuple[float, ...] = (30.0, 25.0, 29.97)
    fps_probs: tuple[float, ...] = (0.85, 0.10, 0.05)
    input_dim: int = 64
    feat_stride: int = 4  # frames between features (THUMOS grid)
    num_frames: int = 16  # frames per clip
    instances_per_minute: float = 5.0  # THUMOS: ~4.2 per minute of test video
    duration_median: float = 3.5  # seconds; the median of the per-class medians (THUMOS mean instance: 4.3 s)
    class_duration_spread: float = 0.45  # log-std of per-class medians
    instance_duration_spread: float = 0.35  # log-std of instance durations around their class median
    min_instance: float = 0.4
    max_instance: float = 25.0
    second_class_prob: float = 0.25  # a video shows a related second class
    amplitude_range: tuple[float, float] = (0.45, 1.0)  # per-instance strength of the action pattern
    group_share: float = 0.6  # how much of a class pattern its group shares (confusability), 0..1
    scene_std: float = 0.6  # per-video constant offset
    drift_std: float = 0.6  # slowly varying background
    drift_seconds: float = 4.0  # time scale of the drift
    frame_noise_std: float = 2.6  # per-frame noise (averaging 16 frames divides it by 4)
    feature_noise_std: float = 0.15  # extractor noise added to each feature
    distractors_per_minute: float = 6.0  # unannotated near misses and false starts
    distractor_amplitude: tuple[float, float] = (0.3, 0.6)
    boundary_blur: float = 0.25  # seconds: soft ramp of the frame-level envelope

    def __post_init__(self) -> None:
        def fail(name: str, why: str) -> None:
            raise DemoSettingsError(f"demo setting {name} = {getattr(self, name)!r}: {why}")

        for name in ("seed", "num_train_videos", "num_test_videos", "input_dim", "feat_stride", "num_frames"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "seed" else 1):
                fail(name, "must be a positive integer" if name != "seed" else "must be a non-negative integer")
        if not 0 < self.min_duration <= self.max_duration:
            fail("min_duration", f"must be positive and at most max_duration ({self.max_duration})")
        if len(self.fps_choices) != len(self.fps_probs) or abs(sum(self.fps_probs) - 1) > 1e-6:
            fail("fps_probs", f"must give one probability per fps choice {self.fps_choices}, summing to 1")
        if self.min_duration * min(self.fps_choices) < self.num_frames:
            fail("min_duration", f"is shorter than one clip of {self.num_frames} frames")
        for name in ("amplitude_range", "distractor_amplitude"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                fail(name, "must be [low, high] with 0 <= low <= high")
        if not 0 <= self.group_share <= 1 or not 0 <= self.second_class_prob <= 1:
            fail("group_share" if not 0 <= self.group_share <= 1 else "second_class_prob", "must be in [0, 1]")
        if not 0 < self.min_instance <= self.max_instance:
            fail("min_instance", f"must be positive and at most max_instance ({self.max_instance})")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "DemoSpec":
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise DemoSettingsError(f"unknown demo settings {unknown}; known: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


@dataclass(frozen=True)
class Instance:
    start: float  # seconds
    end: float
    labels: tuple[int, ...]  # annotated label ids (two for CliffDiving: it is also Diving)
    pattern: int  # class whose feature pattern is drawn
    amplitude: float


@dataclass(frozen=True)
class Distractor:
    start: float
    end: float
    pattern: int
    amplitude: float
    kind: str  # "near_miss" (faint middle phase) | "false_start" (onset only)


@dataclass(frozen=True)
class VideoPlan:
    """Everything random about one video except its frame-level noise (which is re-drawn from its own seed)."""

    index: int
    video_id: str
    subset: str
    duration: float
    fps: float
    instances: tuple[Instance, ...]
    distractors: tuple[Distractor, ...] = field(default=())


# ----------------------------------------------------------------------------------------------------------------------
# Planning: annotations and distractors
# ----------------------------------------------------------------------------------------------------------------------

def _group_of() -> dict[int, str]:
    return {THUMOS_CLASSES.index(c): g for g, members in CLASS_GROUPS.items() for c in members}


def _class_medians(spec: DemoSpec) -> np.ndarray:
    rng = np.random.default_rng([spec.seed, 1])
    medians = spec.duration_median * np.exp(rng.normal(0.0, spec.class_duration_spread, len(THUMOS_CLASSES)))
    return np.clip(medians, 1.0, 12.0)


def plan_video(spec: DemoSpec, index: int) -> VideoPlan:
    """The annotations and distractors of video ``index`` (0-based; train videos first, then test videos)."""
    rng = np.random.default_rng([spec.seed, 2, index])
    is_train = index < spec.num_train_videos
    number = index + 1 if is_train else index - spec.num_train_videos + 1
    subset = "Validation" if is_train else "Test"
    video_id = f"video_{subset.lower()}_{number:07d}"
    duration = float(np.round(np.exp(rng.uniform(np.log(spec.min_duration), np.log(spec.max_duration))), 2))
    fps = float(rng.choice(spec.fps_choices, p=spec.fps_probs))

    medians = _class_medians(spec)
    group_of = _group_of()
    ids = {name: i for i, name in enumerate(THUMOS_CLASSES)}
    # main classes cycle through a seeded permutation within each subset: balanced, and every class is present in
    # both subsets once a subset has 20 videos
    order = np.random.default_rng([spec.seed, 0]).permutation(len(THUMOS_CLASSES))
    main = int(order[(number - 1) % len(THUMOS_CLASSES)])
    related = [ids[c] for c in CLASS_GROUPS[group_of[main]] if ids[c] != main]
    second = int(rng.choice(related)) if related and rng.random() < spec.second_class_prob else None

    count = max(1, int(rng.poisson(spec.instances_per_minute * duration / 60.0)))
    # the main class comes first, so every video shows it at least once
    classes = [main] + [main if second is None or rng.random() < 0.7 else second for _ in range(count - 1)]
    lengths = [float(np.clip(medians[c] * np.exp(rng.normal(0, spec.instance_duration_spread)),
                             spec.min_instance, min(spec.max_instance, duration / 2))) for c in classes]
    while len(lengths) > 1 and sum(lengths) > duration - 0.4:  # too many to fit: drop the last ones
        classes.pop()
        lengths.pop()
    # lay the instances out in time in random order, with random gaps, 0.2 s clear of both ends of the video
    order = rng.permutation(len(classes))
    gaps = rng.dirichlet(np.ones(len(classes) + 1)) * max(duration - 0.4 - sum(lengths), 0.0)
    instances: list[Instance] = []
    t = 0.2
    for k, gap in zip(order, gaps):
        start, end = t + gap, t + gap + lengths[k]
        t = end
        instances.extend(_annotate(rng, spec, classes[k], start, end, ids, medians, duration))

    distractors = []
    for _ in range(int(rng.poisson(spec.distractors_per_minute * duration / 60.0))):
        kind = "near_miss" if rng.random() < 0.6 else "false_start"
        pattern = main if rng.random() < 0.6 else int(rng.integers(len(THUMOS_CLASSES)))
        length = float(medians[pattern] * np.exp(rng.normal(0, 0.3))) if kind == "near_miss" else \
            float(rng.uniform(0.4, 1.0))
        start = float(rng.uniform(0, max(duration - length, 0.1)))
        distractors.append(Distractor(start, min(start + length, duration), pattern,
                                      float(rng.uniform(*spec.distractor_amplitude)), kind))
    return VideoPlan(index, video_id, subset, duration, fps, tuple(instances), tuple(distractors))


def _annotate(rng: np.random.Generator, spec: DemoSpec, c: int, start: float, end: float, ids: dict[str, int],
              medians: np.ndarray, duration: float) -> list[Instance]:
    """One action occurrence -> annotated instances, with THUMOS's two co-occurrence quirks."""
    start, end = round(start, 1), min(round(end, 1), np.floor(duration * 10) / 10)  # THUMOS: 0.1 s resolution
    if end <= start:
        end = start + 0.1
    amp = float(rng.uniform(*spec.amplitude_range))
    if c == ids["CliffDiving"]:  # annotated twice: CliffDiving and Diving, same segment
        return [Instance(start, end, (c, ids["Diving"]), c, amp)]
    out = [Instance(start, end, (c,), c, amp)]
    if c == ids["CricketBowling"] and rng.random() < 0.7:  # the shot follows the ball, overlapping its end
        shot_len = float(np.clip(medians[ids["CricketShot"]] * np.exp(rng.normal(0, 0.3)), 0.4, 6.0))
        s2 = round(end - min(0.3, 0.3 * (end - start)), 1)
        e2 = min(round(s2 + shot_len, 1), np.floor(duration * 10) / 10)  # never past the video's end
        if e2 > s2:
            out.append(Instance(s2, e2, (ids["CricketShot"],), ids["CricketShot"], float(rng.uniform(*spec.amplitude_range))))
    return out


def plan_videos(spec: DemoSpec) -> list[VideoPlan]:
    return [plan_video(spec, i) for i in range(spec.num_train_videos + spec.num_test_videos)]


def demo_annotations(spec: DemoSpec, plans: Sequence[VideoPlan] | None = None) -> dict:
    """The ActionFormer JSON (``{"version", "database"}``) of the demo videos."""
    plans = plan_videos(spec) if plans is None else plans
    database = {}
    for plan in plans:
        annotations = [{"label": THUMOS_CLASSES[lab], "segment": [inst.start, inst.end],
                        "segment(frames)": [round(inst.start * plan.fps, 1), round(inst.end * plan.fps, 1)],
                        "label_id": lab}
                       for inst in plan.instances for lab in inst.labels]
        database[plan.video_id] = {"subset": plan.subset, "duration": plan.duration, "fps": plan.fps,
                                   "annotations": annotations}
    return {"version": "tal_kit-demo-1", "database": database}


# ----------------------------------------------------------------------------------------------------------------------
# Rendering: frame-level signal -> clip features on any grid
# ----------------------------------------------------------------------------------------------------------------------

def _patterns(spec: DemoSpec) -> dict[str, np.ndarray]:
    """Class patterns [K, 3 phases, C] (onset, middle, offset), and the direction shared by all actions [C]."""
    rng = np.random.default_rng([spec.seed, 3])
    k, dim = len(THUMOS_CLASSES), spec.input_dim
    group_vectors = {g: rng.normal(size=(3, dim)) for g in CLASS_GROUPS}
    own = rng.normal(size=(k, 3, dim))
    group_of = _group_of()
    share = spec.group_share
    patterns = np.stack([np.sqrt(share) * group_vectors[group_of[c]] + np.sqrt(1 - share) * own[c]
                         for c in range(k)])
    actionness = rng.normal(size=dim) * 0.5
    return {"patterns": patterns, "actionness": actionness}


def _envelope(times: np.ndarray, start: float, end: float, blur: float) -> np.ndarray:
    """A soft box: ~1 inside [start, end], ramps of width ``blur`` seconds at the edges."""
    blur = max(blur, 1e-3)
    return 1.0 / (1.0 + np.exp(-(times - start) / blur)) / (1.0 + np.exp(-(end - times) / blur))


def _phase_weights(times: np.ndarray, start: float, end: float) -> np.ndarray:
    """[n, 3] weights of the onset / middle / offset phases along an instance (first and last 30 %)."""
    u = np.clip((times - start) / max(end - start, 1e-3), 0.0, 1.0)
    onset = np.clip(1.0 - u / 0.3, 0.0, 1.0)
    offset = np.clip((u - 0.7) / 0.3, 0.0, 1.0)
    return np.stack([onset, 1.0 - onset - offset, offset], axis=1)


def _frame_signal(spec: DemoSpec, plan: VideoPlan, pat: dict[str, np.ndarray]) -> np.ndarray:
    """[num_frames_in_video, C] frame-level signal (independent of any feature grid)."""
    rng = np.random.default_rng([spec.seed, 4, plan.index])
    n = int(np.floor(plan.duration * plan.fps))
    times = (np.arange(n) + 0.5) / plan.fps  # frame centres
    dim = spec.input_dim
    signal = rng.normal(0.0, spec.scene_std, dim)[None, :] + rng.normal(0.0, spec.frame_noise_std, (n, dim))
    # slow background drift: a random walk smoothed on a coarse time axis, interpolated to frames
    knots = np.arange(0.0, plan.duration + spec.drift_seconds, spec.drift_seconds)
    values = rng.normal(0.0, spec.drift_std, (len(knots), dim))
    signal += np.stack([np.interp(times, knots, values[:, j]) for j in range(dim)], axis=1)

    patterns, actionness = pat["patterns"], pat["actionness"]
    for inst in plan.instances:
        lo, hi = np.searchsorted(times, [inst.start - 1.0, inst.end + 1.0])
        t = times[lo:hi]
        env = _envelope(t, inst.start, inst.end, spec.boundary_blur)[:, None]
        shape = _phase_weights(t, inst.start, inst.end) @ patterns[inst.pattern] + actionness
        signal[lo:hi] += inst.amplitude * env * shape
    for dis in plan.distractors:
        lo, hi = np.searchsorted(times, [dis.start - 1.0, dis.end + 1.0])
        t = times[lo:hi]
        env = _envelope(t, dis.start, dis.end, spec.boundary_blur)[:, None]
        phase = patterns[dis.pattern, 1] if dis.kind == "near_miss" else patterns[dis.pattern, 0]
        signal[lo:hi] += dis.amplitude * env * phase[None, :]
    return signal


def render_features(spec: DemoSpec, plan: VideoPlan, feat_stride: int | None = None,
                    num_frames: int | None = None) -> np.ndarray:
    """float32 [T, C] clip features of one video: feature i averages frames [i*stride, i*stride + num_frames).

    The same video can be rendered on another grid (e.g. stride 8, like a second feature extractor) to show how
    InternVideo resamples one feature set onto another's grid.
    """
    stride = spec.feat_stride if feat_stride is None else feat_stride
    frames = spec.num_frames if num_frames is None else num_frames
    signal = _frame_signal(spec, plan, _patterns(spec))
    n = signal.shape[0]
    if n < frames:
        raise ValueError(f"video {plan.video_id} has {n} frames, fewer than one clip of {frames}")
    csum = np.concatenate([np.zeros((1, signal.shape[1])), np.cumsum(signal, axis=0)])
    starts = np.arange(0, n - frames + 1, stride)
    feats = (csum[starts + frames] - csum[starts]) / frames
    rng = np.random.default_rng([spec.seed, 5, plan.index, stride, frames])
    feats += rng.normal(0.0, spec.feature_noise_std, feats.shape)
    return feats.astype(np.float32)


# ----------------------------------------------------------------------------------------------------------------------
# Writing the dataset
# ----------------------------------------------------------------------------------------------------------------------

def load_demo_spec(root: str | Path) -> DemoSpec:
    """The settings a demo folder was generated with (from its demo_meta.json)."""
    meta = json.loads((Path(root) / META_FILE).read_text())
    return DemoSpec.from_dict(meta["spec"])


def check_replaceable(out: Path, meta_file: str, what: str, overwrite: bool) -> None:
    """Refuse to build a generated dataset into ``out`` unless it is empty, absent, or a ``what`` folder (it holds
    ``meta_file``) that ``overwrite`` allows replacing: a generator never touches anybody else's folder."""
    if out.exists() and any(out.iterdir()):
        if not (out / meta_file).exists():
            raise FileExistsError(f"{out} is not empty and is not a {what} folder; choose another --out")
        if not overwrite:
            raise FileExistsError(f"{out} already holds a {what}; pass overwrite=True (--overwrite) to replace it")


def generate_demo_dataset(out: str | Path, spec: DemoSpec | None = None, *, overwrite: bool = False,
                          log=None) -> dict:
    """Write the demo dataset into ``out`` and return a summary (videos, segments, bytes, seconds).

    The folder is built beside ``out`` and renamed into place, so an interrupted run leaves nothing half-written.
    An existing demo folder (one with demo_meta.json) is replaced only with ``overwrite``; any other non-empty
    folder is never touched.
    """
    spec = spec or DemoSpec()
    out = Path(out)
    check_replaceable(out, META_FILE, "demo dataset", overwrite)
    started = time.perf_counter()
    with atomic_folder(out) as tmp:  # built beside out, then swapped in whole; a killed run leaves nothing half-built
        plans = plan_videos(spec)
        (tmp / "features").mkdir()
        total_bytes = 0
        for plan in plans:
            path = write_feature_file(feature_path(tmp / "features", plan.video_id, "", ".npy"),
                                      render_features(spec, plan))
            total_bytes += path.stat().st_size
        annotations = demo_annotations(spec, plans)
        (tmp / "annotations.json").write_text(json.dumps(annotations, indent=1))
        summary = {
            "videos": len(plans),
            "train_videos": spec.num_train_videos,
            "test_videos": spec.num_test_videos,
            "segments": sum(len(v["annotations"]) for v in annotations["database"].values()),
            "hours": round(sum(p.duration for p in plans) / 3600, 3),
            "feature_bytes": total_bytes,
        }
        meta = {"spec": spec.to_dict(), "classes": THUMOS_CLASSES, "class_groups": CLASS_GROUPS,
                "layout": {"json_file": "annotations.json", "feat_folder": "features", "file_prefix": "",
                           "file_ext": ".npy", "input_dim": spec.input_dim, "feat_stride": spec.feat_stride,
                           "num_frames": spec.num_frames, "default_fps": None}, "summary": summary}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=1))
    summary["seconds"] = round(time.perf_counter() - started, 2)
    if log:
        log(f"demo dataset in {out}: {summary['videos']} videos ({summary['train_videos']} train / "
            f"{summary['test_videos']} test, {summary['hours']} h), {summary['segments']} segments, "
            f"{summary['feature_bytes'] / 1e6:.1f} MB of features, {summary['seconds']} s")
    return summary


def ensure_demo_data(root: str | Path, log: Callable[[str], Any] | None = print) -> bool:
    """Generate the demo dataset in ``root`` unless it is already there (it is never committed); True when it was
    generated. The one place that decides this, for reproduce, the notebooks' set-up and the benchmarks."""
    root = Path(root)
    if (root / "annotations.json").exists():
        return False
    if log:
        log(f"generating the demo dataset in {root} ...")
    generate_demo_dataset(root, log=log)
    return True


def cli_demo_data(argv: list[str]) -> int:
    """``python -m tal_kit demo-data [--out data/demo] [--overwrite] [--set key=value ...]``"""
    parser = argparse.ArgumentParser(prog="tal-kit demo-data",
                                     description="Generate the synthetic THUMOS-like demo dataset.")
    parser.add_argument("--out", default="data/demo", help="output folder (default data/demo)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing demo dataset")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help=f"generator setting, e.g. num_train_videos=50 (repeatable); settings: "
                             f"{', '.join(f.name for f in dataclasses.fields(DemoSpec))}")
    args = parser.parse_args(argv)
    generate_demo_dataset(args.out, DemoSpec.from_dict(parse_settings(args.settings)), overwrite=args.overwrite,
                          log=print)
    return 0


def parse_settings(texts: Sequence[str]) -> dict[str, object]:
    """``--set key=value`` strings of a generator -> {key: JSON value}."""
    settings = {}
    for text in texts:
        if "=" not in text:
            raise DemoSettingsError(f"setting {text!r} must look like key=value")
        key, value = text.split("=", 1)
        try:
            settings[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            raise DemoSettingsError(f"setting {key.strip()}: {value!r} is not a number, list or quoted "
                                    "string") from None
    return settings
