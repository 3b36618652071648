"""Score fusion with an external video-level classifier (SPEC §B.3; InternVideo's ``postprocess_results``).

ANet, HACS and FineAction train ActionFormer as a class-agnostic proposal generator (``num_classes: 1``); the class
of each detection then comes from a video-level classifier. Per video:

1. keep the ``num_pred`` highest-scoring detections (ties in table order);
2. take the ``topk`` classes with the highest video-level scores, c_1 .. c_k with scores s_1 .. s_k (ties: lower
   class index first);
3. emit every kept detection once per chosen class, with label c_j and score sqrt(s_j * p), where p is the
   detection's own score; class-major (all detections with c_1, then all with c_2, ...).

A class index is a position in the score vector and must equal the ground truth's ``label_id``. As in InternVideo,
a vector nested in a length-1 list is unwrapped, and (``softmax_out_of_range=True``, InternVideo's rule) a vector
with any value outside [0, 1] is taken to be logits and passed through a softmax; ActionFormer uses the values as
they are (``softmax_out_of_range=False``). The difference is real: 155 of the 212 vectors in ActionFormer's
``thumos14_cls_scores.pkl`` have a value above 1.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from tal_kit.detections import Detections

__all__ = ["load_class_scores", "fuse_scores", "FusionError"]


class FusionError(ValueError):
    """Unusable class-score input; the message names the file and video."""


def _score_vector(value: Any, where: str) -> np.ndarray:
    try:
        vector = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value, dtype=np.float64)
    except (TypeError, ValueError):
        raise FusionError(f"{where}: expected a vector of class scores, got {type(value).__name__}") from None
    if vector.ndim == 2 and vector.shape[0] == 1:  # InternVideo unwraps [[...]]
        vector = vector[0]
    if vector.ndim != 1 or vector.size == 0 or not np.isfinite(vector).all():
        raise FusionError(f"{where}: expected a non-empty 1-D vector of finite class scores, got shape "
                          f"{vector.shape}")
    return vector


def load_class_scores(path: str | Path) -> dict[str, np.ndarray]:
    """Video-level class scores from ``.json`` (``{video: [scores]}``, optionally under ``"results"``) or ``.pkl``
    (a pickled dict video -> vector). Returns video id -> float64 vector; all vectors have one length."""
    path = Path(path)
    if not path.exists():
        raise FusionError(f"class-score file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            with open(path, encoding="utf8") as f:
                data = json.load(f)
        except json.JSONDecodeError as err:
            raise FusionError(f"{path}: not valid JSON ({err})") from None
        if isinstance(data, dict) and isinstance(data.get("results"), dict):
            data = data["results"]
    elif suffix in (".pkl", ".pickle"):
        with open(path, "rb") as f:
            data = pickle.load(f)  # trusted local file named by the user's config
    else:
        raise FusionError(f"{path}: class scores must be a .json or .pkl file")
    if not isinstance(data, Mapping) or not data:
        raise FusionError(f"{path}: expected a non-empty mapping video id -> class scores")
    scores = {str(video): _score_vector(value, f"{path}: video {video!r}") for video, value in data.items()}
    lengths = {len(v) for v in scores.values()}
    if len(lengths) != 1:
        raise FusionError(f"{path}: score vectors have different lengths {sorted(lengths)}")
    return scores


def _as_probabilities(vector: np.ndarray) -> np.ndarray:
    """InternVideo's rule: a vector with a value outside [0, 1] is logits -> softmax."""
    if (vector < 0).any() or (vector > 1).any():
        shifted = np.exp(vector - vector.max())
        return shifted / shifted.sum()
    return vector


def fuse_scores(detections: Detections | Iterable[Mapping[str, Any]], class_scores: Mapping[str, Any], *,
                topk: int = 2, num_pred: int = 200, softmax_out_of_range: bool = True,
                source: str | Path | None = None) -> Detections:
    """Give class-agnostic detections their classes from video-level scores (see the module docstring).

    Args:
        detections: a :class:`Detections` table or per-video model outputs (their labels are ignored).
        class_scores: video id -> class-score vector, e.g. from :func:`load_class_scores`.
        topk: classes per video (InternVideo: 2).
        num_pred: detections kept per video before the expansion (InternVideo: 200).
        softmax_out_of_range: InternVideo's softmax of vectors with values outside [0, 1] (False: ActionFormer).
        source: the score file, for error messages.

    Returns a new table: videos in first-appearance order, up to ``topk * num_pred`` rows each.
    Raises FusionError listing every video that has detections but no class scores.
    """
    if not isinstance(detections, Detections):
        detections = Detections.from_video_dicts(detections)
    if topk < 1 or num_pred < 1:
        raise FusionError(f"topk and num_pred must be positive, got topk={topk}, num_pred={num_pred}")
    if len(detections) == 0:
        return Detections.empty()
    videos = detections.videos()
    missing = [v for v in videos if v not in class_scores]
    if missing:
        where = f"{source}: " if source is not None else "class scores: "
        raise FusionError(f"{where}{len(missing)} video(s) with detections have no class scores: "
                          f"{', '.join(map(repr, missing[:20]))}{', ...' if len(missing) > 20 else ''}")
    vectors = [_score_vector(class_scores[v], f"class scores of video {v!r}") for v in videos]
    if softmax_out_of_range:
        vectors = [_as_probabilities(v) for v in vectors]
    if len({len(v) for v in vectors}) != 1:
        raise FusionError(f"{source or 'class scores'}: score vectors have different lengths")
    video_scores = np.stack(vectors)  # [V, num_classes], V in first-appearance order
    if topk > video_scores.shape[1]:
        raise FusionError(f"{source or 'class scores'}: topk={topk} exceeds the {video_scores.shape[1]} classes of "
                          f"the score vectors")
    top_classes = np.argsort(-video_scores, axis=1, kind="stable")[:, :topk]  # [V, topk]
    top_scores = np.take_along_axis(video_scores, top_classes, axis=1)

    # Rows grouped by video (first-appearance order), by score descending, ties in table order; keep num_pred.
    video_index = {v: i for i, v in enumerate(videos)}
    video_of_row = np.array([video_index[v] for v in detections.video_ids.tolist()], dtype=np.int64)
    order = np.lexsort((-detections.scores, video_of_row))
    grouped = video_of_row[order]
    group_start = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
    rank = np.arange(len(order)) - np.repeat(group_start, np.diff(np.r_[group_start, len(order)]))
    kept = order[rank < num_pred]
    kept_video = video_of_row[kept]
    kept_rank = rank[rank < num_pred]

    # Expand: class j of the video's top classes; output ordered by (video, j, rank).
    j = np.repeat(np.arange(topk), len(kept))
    rows = np.tile(kept, topk)
    video = np.tile(kept_video, topk)
    out_order = np.lexsort((np.tile(kept_rank, topk), j, video))
    rows, video, j = rows[out_order], video[out_order], j[out_order]
    return Detections(detections.video_ids[rows], detections.starts[rows], detections.ends[rows],
                      top_classes[video, j], np.sqrt(top_scores[video, j] * detections.scores[rows]))
