"""Detections: a columnar table of (video, start, end, label, score) rows, and the ActivityNet results JSON.

One row per detected action instance: ``video_ids[i]`` (str), ``starts[i]``/``ends[i]`` (float64 seconds),
``labels[i]`` (int64 label id, an index into the ground truth's ``label_names``) and ``scores[i]`` (float64).
The table is what the model's per-video outputs are collected into, what the evaluator reads, and what is
written to / read from the ActivityNet results format::

    {"version": "...", "results": {video_id: [{"label": name, "score": s, "segment": [start, end]}, ...]},
     "external_data": {}}

Row order matters in one place only: the evaluator breaks score ties by it (see tal_kit.evaluation.matching).
"""
from __future__ import annotations

import json
import math
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from tal_kit.atomic import write_json_atomic

__all__ = ["Detections", "DetectionsError"]


class DetectionsError(ValueError):
    """Detections that cannot be used; the message names the file, video and field."""


def _as_numpy(values: Any, dtype: type) -> np.ndarray:
    """A 1-D or 2-D numpy array from a numpy array, list or torch tensor (any device)."""
    if hasattr(values, "detach"):  # torch.Tensor, without importing torch here
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=dtype)


@dataclass(frozen=True, eq=False)
class Detections:
    """Columnar detection table; all columns have the same length."""

    video_ids: np.ndarray  # str [N]
    starts: np.ndarray  # float64 [N], seconds
    ends: np.ndarray  # float64 [N], seconds
    labels: np.ndarray  # int64 [N], label ids
    scores: np.ndarray  # float64 [N]

    def __post_init__(self) -> None:
        columns = {"video_ids": np.asarray(self.video_ids, dtype=str),
                   "starts": np.asarray(self.starts, dtype=np.float64),
                   "ends": np.asarray(self.ends, dtype=np.float64),
                   "labels": np.asarray(self.labels, dtype=np.int64),
                   "scores": np.asarray(self.scores, dtype=np.float64)}
        lengths = {name: col.shape for name, col in columns.items()}
        if any(len(shape) != 1 for shape in lengths.values()) or len({s[0] for s in lengths.values()}) != 1:
            raise DetectionsError(f"Detections columns must be 1-D and of equal length, got shapes {lengths}")
        for name, col in columns.items():
            object.__setattr__(self, name, col)

    # ---- construction -------------------------------------------------------------------------------------------
    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.array([], dtype=str), np.zeros(0), np.zeros(0), np.zeros(0, np.int64), np.zeros(0))

    @classmethod
    def from_video_dicts(cls, outputs: Iterable[Mapping[str, Any]]) -> "Detections":
        """Collect per-video model outputs ``{"video_id", "segments" [N, 2] s, "scores" [N], "labels" [N]}``
        (numpy arrays, lists or torch tensors on any device) into one table, keeping their order."""
        parts = []
        for i, out in enumerate(outputs):
            for key in ("video_id", "segments", "scores", "labels"):
                if key not in out:
                    raise DetectionsError(f"per-video output #{i}: missing field {key!r}")
            video_id = str(out["video_id"])
            segments = _as_numpy(out["segments"], np.float64).reshape(-1, 2)
            scores = _as_numpy(out["scores"], np.float64).reshape(-1)
            labels = _as_numpy(out["labels"], np.int64).reshape(-1)
            if not len(segments) == len(scores) == len(labels):
                raise DetectionsError(f"video {video_id!r}: {len(segments)} segments, {len(scores)} scores and "
                                      f"{len(labels)} labels; they must match")
            parts.append(cls(np.full(len(scores), video_id), segments[:, 0], segments[:, 1], labels, scores))
        return cls.concat(parts)

    @classmethod
    def concat(cls, parts: Sequence["Detections"]) -> "Detections":
        """Rows of ``parts`` one after the other."""
        parts = list(parts)
        if not parts:
            return cls.empty()
        return cls(np.concatenate([p.video_ids for p in parts]), np.concatenate([p.starts for p in parts]),
                   np.concatenate([p.ends for p in parts]), np.concatenate([p.labels for p in parts]),
                   np.concatenate([p.scores for p in parts]))

    # ---- access -------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def __repr__(self) -> str:
        return f"Detections({len(self)} rows, {len(self.videos())} videos)"

    @property
    def segments(self) -> np.ndarray:
        """[N, 2] (start, end) in seconds."""
        return np.stack([self.starts, self.ends], axis=1)

    def select(self, rows: np.ndarray | Sequence[int]) -> "Detections":
        """The rows given by a boolean mask or an index array, in that order."""
        rows = np.asarray(rows)
        return Detections(self.video_ids[rows], self.starts[rows], self.ends[rows], self.labels[rows],
                          self.scores[rows])

    def videos(self) -> list[str]:
        """Video ids in order of first appearance."""
        unique, first = np.unique(self.video_ids, return_index=True)
        return [str(v) for v in unique[np.argsort(first)]]

    def for_video(self, video_id: str) -> "Detections":
        """This video's rows, in table order."""
        return self.select(self.video_ids == video_id)

    def to_video_dicts(self) -> list[dict[str, Any]]:
        """One ``{"video_id", "segments", "scores", "labels"}`` dict per video (first-appearance order)."""
        out = []
        for video_id in self.videos():
            part = self.for_video(video_id)
            out.append({"video_id": video_id, "segments": part.segments, "scores": part.scores,
                        "labels": part.labels})
        return out

    # ---- ActivityNet results JSON -------------------------------------------------------------------------------
    def to_results_json(self, path: str | Path, label_names: Sequence[str], *, version: str = "tal_kit",
                        external_data: Mapping[str, Any] | None = None) -> Path:
        """Write the ActivityNet results format (labels as class names), atomically. Returns the path."""
        if len(self) and (self.labels.min() < 0 or self.labels.max() >= len(label_names)):
            bad = int(self.labels[(self.labels < 0) | (self.labels >= len(label_names))][0])
            raise DetectionsError(f"{path}: label id {bad} has no name ({len(label_names)} label_names given)")
        results: dict[str, list[dict[str, Any]]] = {}
        for vid, start, end, label, score in zip(self.video_ids.tolist(), self.starts.tolist(), self.ends.tolist(),
                                                 self.labels.tolist(), self.scores.tolist()):
            results.setdefault(vid, []).append({"label": label_names[label], "score": score,
                                                "segment": [start, end]})
        payload = {"version": version, "results": results, "external_data": dict(external_data or {})}
        return write_json_atomic(path, payload, indent=None)

    @classmethod
    def from_results_json(cls, path: str | Path, label_names: Sequence[str], *,
                          unknown_labels: str = "error") -> "Detections":
        """Read an ActivityNet results JSON; class names are mapped to ids through ``label_names``.

        Integer labels are taken as label ids. A label that is not a known class is an error naming the file,
        video and entry, or with ``unknown_labels="ignore"`` those rows are dropped with one warning that counts
        them. Rows keep the file's order (videos as listed, entries as listed).
        """
        if unknown_labels not in ("error", "ignore"):
            raise ValueError(f"unknown_labels must be 'error' or 'ignore', got {unknown_labels!r}")
        path = Path(path)
        try:
            with open(path, encoding="utf8") as f:
                data = json.load(f, object_pairs_hook=_no_duplicate_keys(path))
        except FileNotFoundError:
            raise DetectionsError(f"results file {path} does not exist") from None
        except IsADirectoryError:
            raise DetectionsError(f"{path} is a folder; expected a results JSON file") from None
        except UnicodeDecodeError as err:
            raise DetectionsError(f"{path}: not a text JSON file (byte {err.start} is not UTF-8); is it the "
                                  f"results JSON?") from None
        except json.JSONDecodeError as err:
            raise DetectionsError(f"{path}: not valid JSON ({err})") from None
        if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
            raise DetectionsError(f"{path}: missing top-level object 'results' (ActivityNet results format)")
        name_to_id = {name: i for i, name in enumerate(label_names)}
        vids: list[str] = []
        rows: list[tuple[float, float, int, float]] = []
        unknown: Counter[str] = Counter()
        for video_id, entries in data["results"].items():
            if not isinstance(entries, list):
                raise DetectionsError(f"{path}: results[{video_id!r}] must be a list of detections")
            for i, entry in enumerate(entries):
                where = f"{path}: video {video_id!r}, results[{i}]"
                if not isinstance(entry, dict):
                    raise DetectionsError(f"{where}: expected an object")
                for key in ("label", "score", "segment"):
                    if key not in entry:
                        raise DetectionsError(f"{where}: missing field {key!r}")
                label_id = _label_id(entry["label"], name_to_id, len(label_names))
                if label_id is None:
                    if unknown_labels == "error":
                        raise DetectionsError(f"{where}, field 'label': {entry['label']!r} is not a class of the "
                                              f"ground truth ({len(label_names)} classes, e.g. "
                                              f"{list(label_names)[:3]}); pass unknown_labels='ignore' to drop "
                                              f"such detections")
                    unknown[str(entry["label"])] += 1
                    continue
                score = _finite(entry["score"], f"{where}, field 'score'")
                seg = entry["segment"]
                if not isinstance(seg, (list, tuple)) or len(seg) != 2:
                    raise DetectionsError(f"{where}, field 'segment': expected [start, end], got {seg!r}")
                start = _finite(seg[0], f"{where}, field 'segment' (start)")
                end = _finite(seg[1], f"{where}, field 'segment' (end)")
                if end < start:
                    raise DetectionsError(f"{where}, field 'segment': end {end} is before start {start}")
                vids.append(video_id)
                rows.append((start, end, label_id, score))
        if unknown:
            listed = ", ".join(f"{name!r} ({n})" for name, n in unknown.most_common(5))
            warnings.warn(f"{path}: ignored {sum(unknown.values())} detection(s) whose label is not a ground-truth "
                          f"class: {listed}{', ...' if len(unknown) > 5 else ''}", stacklevel=2)
        if not rows:
            return cls.empty()
        starts, ends, labels, scores = zip(*rows)
        return cls(np.array(vids, dtype=str), np.array(starts), np.array(ends), np.array(labels, np.int64),
                   np.array(scores))


def _no_duplicate_keys(path: Path):
    """A json object_pairs_hook that refuses repeated keys: ``json.load`` keeps only the last one, so a video listed
    twice under "results" would silently lose its earlier detections (the ground-truth loader refuses them too)."""
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        counts = Counter(key for key, _ in pairs)
        repeated = [key for key, n in counts.items() if n > 1]
        if repeated:
            key = repeated[0]
            values = [value for k, value in pairs if k == key]
            what = f"video {key!r} is listed {counts[key]} times under 'results'" if isinstance(values[0], list) \
                else f"key {key!r} appears {counts[key]} times in one object"
            more = f" ({len(repeated) - 1} more repeated key(s))" if len(repeated) > 1 else ""
            raise DetectionsError(f"{path}: {what}{more}; JSON keeps only the last copy, so the earlier "
                                  f"detections would be lost: merge the copies into one list")
        return dict(pairs)
    return hook


def _label_id(label: Any, name_to_id: Mapping[str, int], num_classes: int) -> int | None:
    """A results-file label (class name, or an integer id) -> label id; None when it is not a known class."""
    if isinstance(label, str):
        return name_to_id.get(label)
    if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
        return int(label) if 0 <= label < num_classes else None
    return None


def _finite(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DetectionsError(f"{where}: expected a finite number, got {value!r}")
    return float(value)
