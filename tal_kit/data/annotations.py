"""Ground-truth annotations: ActionFormer- and ActivityNet-style JSON files -> :class:`VideoRecord` objects.

Two layouts are read (SPEC §C.1); both have a top-level ``"database"`` mapping video id -> entry with ``subset``,
``duration``, optional ``fps`` and a list of ``annotations`` (``label``, ``segment`` = [start, end] in seconds):

* **ActionFormer JSON** (thumos14.json, anet1.3_tsp_filtered.json, ...): every annotation also carries an integer
  ``label_id``; those ids are used as they are, so class indices agree with external score files (SPEC §B.3).
* **Official ActivityNet JSON** (activity_net.v1-3.min.json): label names only. Ids are then assigned in sorted
  order of the class names; when the file has a ``taxonomy`` (a list of nodes with ``nodeName``/``parentName``),
  its leaf nodes define the class list, so classes without any instance in the file still get an id. Sorted order
  is what ActionFormer's conversion scripts and TSP's label mapping use, so ids agree with ActionFormer JSONs.
  Video ids are kept exactly as the keys of the file (official ActivityNet ids have no ``v_``; the feature files
  do, which is the job of the config's ``file_prefix``).

Bad input raises :class:`AnnotationError` naming the file, the video and the field. Real annotation files contain a
few recoverable oddities (THUMOS-14 has 30 segments that end after the stated duration; ActivityNet-1.3 has 12
zero-length segments and 1,732 that end slightly after the duration); these are kept unchanged, because the
published evaluation keeps them, and reported in one summarised warning with counts.
"""
from __future__ import annotations

import json
import math
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["AnnotationError", "AnnotationWarning", "VideoRecord", "AnnotationDB", "load_annotations",
           "remove_duplicate_segments", "DUPLICATE_TOLERANCE"]

# Two segments are duplicates when they share the label and both endpoints agree within this many seconds
# (the fork's remove_duplicate_annotations, SPEC §C.1 / §F.1).
DUPLICATE_TOLERANCE = 1e-3


class AnnotationError(ValueError):
    """An annotation file that cannot be used; the message names the file, video and field."""


class AnnotationWarning(UserWarning):
    """Recoverable oddities in an annotation file (summarised once per file, with counts)."""


@dataclass(frozen=True)
class VideoRecord:
    """One video's ground truth. ``segments`` are in seconds; ``labels`` index :attr:`AnnotationDB.label_names`."""

    video_id: str
    subset: str
    duration: float
    fps: float | None
    segments: np.ndarray  # float64 [N, 2], seconds
    labels: np.ndarray  # int64 [N]

    @property
    def num_segments(self) -> int:
        return int(self.segments.shape[0])


@dataclass
class AnnotationDB:
    """All videos of one annotation file, keyed by video id, plus the class names (``label_names[label_id]``)."""

    path: Path
    videos: dict[str, VideoRecord]
    label_names: list[str]
    subsets: list[str] = field(default_factory=list)  # subset names as spelled in the file, first-seen order

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    @property
    def num_segments(self) -> int:
        return sum(v.num_segments for v in self.videos.values())

    @property
    def label_ids(self) -> dict[str, int]:
        """Class name -> label id."""
        return {name: i for i, name in enumerate(self.label_names)}

    def select(self, subsets: str | Sequence[str]) -> list[VideoRecord]:
        """Videos whose subset is one of ``subsets`` (compared case-insensitively, as the fork does), in file order.

        Raises AnnotationError when a requested subset matches no video, listing the subsets the file has.
        """
        if isinstance(subsets, str):
            subsets = [subsets]
        wanted = {s.lower() for s in subsets}
        present = {s.lower() for s in self.subsets}
        unknown = sorted(wanted - present)
        if unknown:
            raise AnnotationError(f"{self.path}: no video has subset {', '.join(map(repr, unknown))}; "
                                  f"the file's subsets are {', '.join(map(repr, self.subsets))}")
        return [v for v in self.videos.values() if v.subset.lower() in wanted]

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, video_id: str) -> VideoRecord:
        return self.videos[video_id]


def remove_duplicate_segments(segments: np.ndarray, labels: np.ndarray,
                              tol: float = DUPLICATE_TOLERANCE) -> np.ndarray:
    """Indices of the segments to keep: a segment is dropped when an earlier kept one has the same label and both
    endpoints within ``tol`` seconds (the fork's rule; zero-length segments are kept, unlike AF HEAD)."""
    keep: list[int] = []
    for i in range(len(labels)):
        s, e, lab = segments[i, 0], segments[i, 1], labels[i]
        if not any(labels[j] == lab and abs(s - segments[j, 0]) <= tol and abs(e - segments[j, 1]) <= tol
                   for j in keep):
            keep.append(i)
    return np.asarray(keep, dtype=np.int64)


class _KeyCountingDict(dict):
    """A JSON object that remembers keys that occurred more than once (``json`` silently keeps the last one)."""

    duplicate_keys: tuple[str, ...] = ()


def _object_hook(pairs: list[tuple[str, Any]]) -> dict:
    obj = _KeyCountingDict(pairs)
    if len(obj) != len(pairs):
        counts = Counter(k for k, _ in pairs)
        obj.duplicate_keys = tuple(k for k, c in counts.items() if c > 1)
    return obj


def _read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf8") as f:
            return json.load(f, object_pairs_hook=_object_hook)
    except FileNotFoundError:
        raise AnnotationError(f"annotation file {path} does not exist") from None
    except UnicodeDecodeError as err:
        raise AnnotationError(f"{path}: not a text JSON file (byte {err.start} is not UTF-8); is it the annotation "
                              f"JSON?") from None
    except json.JSONDecodeError as err:
        raise AnnotationError(f"{path}: not valid JSON ({err})") from None


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise AnnotationError(f"{where}: expected a finite number, got {value!r}")
    return float(value)


def load_annotations(path: str | Path, *, remove_duplicates: bool = False, single_class: bool = False,
                     label_names: Sequence[str] | None = None) -> AnnotationDB:
    """Read an ActionFormer- or ActivityNet-style annotation JSON.

    Args:
        path: the JSON file.
        remove_duplicates: drop repeated segments (same label, endpoints within 1e-3 s), as the fork does for
            ActivityNet training annotations and for every evaluation ground truth.
        single_class: map every label to 0 and name the one class ``"action"`` (ANet/HACS/FineAction train a
            class-agnostic detector with ``num_classes: 1``, SPEC §B.2).
        label_names: an explicit class list (``label_names[label_id]``) for files without ``label_id``s, e.g. to
            match the order of an external score file; names not in it are an error.

    Returns:
        AnnotationDB with videos in file order.
    """
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, dict) or "database" not in data:
        raise AnnotationError(f"{path}: missing top-level field 'database'")
    database = data["database"]
    if not isinstance(database, dict):
        raise AnnotationError(f"{path}: field 'database' must map video ids to entries")
    if getattr(database, "duplicate_keys", ()):
        raise AnnotationError(f"{path}: duplicate video id(s) in 'database': "
                              f"{', '.join(map(repr, database.duplicate_keys))}")

    raw = _parse_entries(path, database)
    names, name_to_id = _label_map(path, data, raw, label_names)

    issues: Counter[str] = Counter()
    issue_videos: dict[str, set[str]] = {}
    videos: dict[str, VideoRecord] = {}
    subsets: list[str] = []
    for video_id, (subset, duration, fps, anns) in raw.items():
        if subset not in subsets:
            subsets.append(subset)
        segments = np.array([seg for seg, _, _ in anns], dtype=np.float64).reshape(-1, 2)
        labels = np.array([name_to_id[name] if lid is None else lid for _, name, lid in anns], dtype=np.int64)
        for kind, hit in (("end after the video's duration", segments[:, 1] > duration),
                          ("zero length", segments[:, 1] == segments[:, 0])):
            if hit.any():
                issues[kind] += int(hit.sum())
                issue_videos.setdefault(kind, set()).add(video_id)
        if remove_duplicates and len(labels):
            keep = remove_duplicate_segments(segments, labels)
            issues["removed as duplicates"] += len(labels) - len(keep)
            segments, labels = segments[keep], labels[keep]
        if single_class:
            labels = np.zeros_like(labels)
        segments.setflags(write=False)
        labels.setflags(write=False)
        videos[video_id] = VideoRecord(video_id, subset, duration, fps, segments, labels)

    kept_as_is = {k: v for k, v in issues.items() if k != "removed as duplicates" and v}
    if kept_as_is:
        summary = "; ".join(f"{count} segment(s) with {kind} (in {len(issue_videos[kind])} video(s), e.g. "
                            f"{sorted(issue_videos[kind])[0]!r})" for kind, count in kept_as_is.items())
        warnings.warn(f"{path}: {summary}; kept unchanged, as the published evaluation does", AnnotationWarning,
                      stacklevel=2)
    return AnnotationDB(path=path, videos=videos, label_names=["action"] if single_class else names,
                        subsets=subsets)


# (subset, duration, fps, [(segment, label name, label_id or None)])
_RawVideo = tuple[str, float, "float | None", list[tuple[tuple[float, float], str, "int | None"]]]


def _parse_entries(path: Path, database: dict) -> dict[str, _RawVideo]:
    """Validate every video entry and annotation; return them in file order."""
    raw: dict[str, _RawVideo] = {}
    for video_id, entry in database.items():
        where = f"{path}: video {video_id!r}"
        if not isinstance(entry, dict):
            raise AnnotationError(f"{where}: entry must be an object, got {type(entry).__name__}")
        if getattr(entry, "duplicate_keys", ()):
            raise AnnotationError(f"{where}: field(s) {', '.join(map(repr, entry.duplicate_keys))} given twice")
        for required in ("subset", "duration"):
            if required not in entry:
                raise AnnotationError(f"{where}: missing field {required!r}")
        subset = entry["subset"]
        if not isinstance(subset, str) or not subset:
            raise AnnotationError(f"{where}, field 'subset': expected a non-empty string, got {subset!r}")
        duration = _number(entry["duration"], f"{where}, field 'duration'")
        if duration <= 0:
            raise AnnotationError(f"{where}, field 'duration': must be positive, got {duration}")
        fps = entry.get("fps")
        if fps is not None:
            fps = _number(fps, f"{where}, field 'fps'")
            if fps <= 0:
                raise AnnotationError(f"{where}, field 'fps': must be positive, got {fps}")
        annotations = entry.get("annotations", [])  # test-only files may have none
        if not isinstance(annotations, list):
            raise AnnotationError(f"{where}, field 'annotations': expected a list")
        anns = []
        for i, ann in enumerate(annotations):
            at = f"{where}, annotations[{i}]"
            if not isinstance(ann, dict):
                raise AnnotationError(f"{at}: expected an object")
            for required in ("label", "segment"):
                if required not in ann:
                    raise AnnotationError(f"{at}: missing field {required!r}")
            label = ann["label"]
            if not isinstance(label, str) or not label:
                raise AnnotationError(f"{at}, field 'label': expected a non-empty string, got {label!r}")
            seg = ann["segment"]
            if not isinstance(seg, (list, tuple)) or len(seg) != 2:
                raise AnnotationError(f"{at}, field 'segment': expected [start, end], got {seg!r}")
            start = _number(seg[0], f"{at}, field 'segment' (start)")
            end = _number(seg[1], f"{at}, field 'segment' (end)")
            if start < 0:
                raise AnnotationError(f"{at}, field 'segment': negative start {start}")
            if end < start:
                raise AnnotationError(f"{at}, field 'segment': end {end} is before start {start}")
            label_id = ann.get("label_id")
            if label_id is not None and (isinstance(label_id, bool) or not isinstance(label_id, int)
                                         or label_id < 0):
                raise AnnotationError(f"{at}, field 'label_id': expected a non-negative integer, got {label_id!r}")
            anns.append(((start, end), label, label_id))
        raw[video_id] = (subset, duration, fps, anns)
    return raw


def _label_map(path: Path, data: dict, raw: dict[str, _RawVideo],
               label_names: Sequence[str] | None) -> tuple[list[str], dict[str, int]]:
    """The class list and name -> id map, from label_ids (ActionFormer), an explicit list, or sorted names."""
    has_id = {lid is not None for _, _, _, anns in raw.values() for _, _, lid in anns}
    if has_id == {True, False}:
        video_id, i = next((v, i) for v, (_, _, _, anns) in raw.items() for i, a in enumerate(anns) if a[2] is None)
        raise AnnotationError(f"{path}: video {video_id!r}, annotations[{i}]: missing field 'label_id' "
                              f"(other annotations in the file have one)")
    if has_id == {True}:
        id_of: dict[str, int] = {}
        name_of: dict[int, str] = {}
        for video_id, (_, _, _, anns) in raw.items():
            for i, (_, name, lid) in enumerate(anns):
                if id_of.get(name, lid) != lid or name_of.get(lid, name) != name:
                    earlier = (f"{name!r} -> {id_of[name]}" if name in id_of else f"{name_of[lid]!r} -> {lid}")
                    raise AnnotationError(f"{path}: video {video_id!r}, annotations[{i}], field 'label_id': "
                                          f"{name!r} -> {lid} conflicts with {earlier} seen earlier")
                id_of[name], name_of[lid] = lid, name
        num = max(name_of) + 1
        missing = [i for i in range(num) if i not in name_of]
        if missing:
            warnings.warn(f"{path}: label ids {missing} have no annotation; their classes are named 'class_<id>'",
                          AnnotationWarning, stacklevel=3)
        names = [name_of.get(i, f"class_{i}") for i in range(num)]
        if label_names is not None and list(label_names) != names:
            raise AnnotationError(f"{path}: the file's label_ids define classes {names[:5]}..., which differ from "
                                  f"the label_names given")
        return names, id_of

    used = sorted({name for _, _, _, anns in raw.values() for _, name, _ in anns})
    if label_names is not None:
        names = list(label_names)
    else:
        names = sorted(set(used) | set(_taxonomy_leaves(path, data.get("taxonomy"))))
    name_to_id = {n: i for i, n in enumerate(names)}
    for video_id, (_, _, _, anns) in raw.items():
        for i, (_, name, _) in enumerate(anns):
            if name not in name_to_id:
                raise AnnotationError(f"{path}: video {video_id!r}, annotations[{i}], field 'label': "
                                      f"{name!r} is not one of the given label_names")
    return names, name_to_id


def _taxonomy_leaves(path: Path, taxonomy: Any) -> list[str]:
    """Leaf class names of an official ActivityNet taxonomy (nodes that are nobody's parent); [] when absent."""
    if not taxonomy:
        return []
    if not isinstance(taxonomy, list) or not all(isinstance(n, dict) and "nodeName" in n for n in taxonomy):
        raise AnnotationError(f"{path}: field 'taxonomy' must be a list of nodes with 'nodeName'")
    parents = {n.get("parentName") for n in taxonomy}
    return [n["nodeName"] for n in taxonomy if n["nodeName"] not in parents]
