"""What notebook 06 looks at: a run's detections and pre-NMS candidates, or stand-ins made from ground truth.

A run folder (``runs/<preset>/`` by default) holds, once a model has been evaluated (``tal_kit.infer``):

    detections.json          ActivityNet results format (what the metrics were computed from)
    pre_nms_candidates.npz   every video's candidates before NMS (for replaying NMS in the explorer)

When neither exists (no run yet, or a test), detector-like candidates are synthesised from the ground truth
(:func:`tal_kit.inference.candidates.synthetic_candidates`) and NMS is applied to them, so every view still works; the
``source`` field says which case holds, and the notebook prints it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from tal_kit.data.dataset import TALDataset
from tal_kit.data.grid import FeatureGrid
from tal_kit.detections import Detections
from tal_kit.evaluation.protocol import ground_truth_for
from tal_kit.inference.candidates import VideoCandidates, load_candidates, synthetic_candidates
from tal_kit.inference.nms import detections_from_candidates, nms_settings
from tal_kit.viz.timeline import Track, feature_energy_track

if TYPE_CHECKING:
    from tal_kit.config import Config
    from tal_kit.data.annotations import VideoRecord

__all__ = ["DETECTIONS_FILE", "CANDIDATES_FILE", "RunOutputs", "load_run_outputs", "feature_tracks"]

DETECTIONS_FILE = "detections.json"
CANDIDATES_FILE = "pre_nms_candidates.npz"


@dataclass
class RunOutputs:
    """Ground truth of the evaluated split, the detections to look at, and (when available) pre-NMS candidates."""

    ground_truth: list[VideoRecord]  # each evaluated video's
    label_names: list[str]
    detections: Detections
    candidates: dict[str, VideoCandidates] | None
    source: str  # one sentence: where the detections come from

    def record(self, video_id: str) -> VideoRecord:
        for record in self.ground_truth:
            if record.video_id == video_id:
                return record
        raise KeyError(f"video {video_id!r} is not in the evaluated split")

    def busiest_videos(self, count: int) -> list[str]:
        """The ``count`` videos with the most ground-truth segments (ties: split order) among those the model
        produced outputs for (a run may cover only part of the split, e.g. when videos without features are
        skipped): good first looks."""
        if self.candidates is not None:
            covered = set(self.candidates)
        else:
            covered = set(self.detections.videos()) if len(self.detections) else set()
        indices = [i for i, r in enumerate(self.ground_truth) if r.video_id in covered] or range(len(self.ground_truth))
        ranked = sorted(indices, key=lambda i: (-self.ground_truth[i].num_segments, i))
        return [self.ground_truth[i].video_id for i in ranked[:count]]


def load_run_outputs(cfg: Config, data_root: str | Path | None, run_dir: str | Path, *,
                     split: Sequence[str] | None = None, seed: int = 0) -> RunOutputs:
    """Read ``run_dir``'s detections and candidates for ``cfg``'s evaluation split (see the module docstring)."""
    split = list(split or cfg.val_split)
    ground_truth, label_names = ground_truth_for(cfg, data_root, split)
    run_dir = Path(run_dir)
    detections_path, candidates_path = run_dir / DETECTIONS_FILE, run_dir / CANDIDATES_FILE
    candidates = load_candidates(candidates_path) if candidates_path.exists() else None
    fused = cfg.test_cfg.ext_score_file is not None
    if candidates is not None and fused:
        # The explorer replays NMS only; fused detections take their classes from video-level scores afterwards.
        candidates = None
    if detections_path.exists():
        detections = Detections.from_results_json(detections_path, label_names)
        source = f"detections of the run in {detections_path}"
        if candidates is not None:
            source += f", pre-NMS candidates from {candidates_path}"
        elif fused:
            source += " (fused with video-level scores, so NMS cannot be replayed here)"
    elif candidates is not None:
        detections = detections_from_candidates(candidates, nms_settings(cfg.test_cfg))
        source = f"NMS ({cfg.test_cfg.nms_method}) applied to the run's candidates in {candidates_path}"
    else:
        candidates = synthetic_candidates(ground_truth, len(label_names), seed=seed)
        detections = detections_from_candidates(candidates, nms_settings(cfg.test_cfg))
        source = (f"no detections in {run_dir} yet: showing STAND-IN detections made by jittering the ground truth "
                  f"(run notebooks 04-05 to see a trained model's)")
    return RunOutputs(ground_truth, list(label_names), detections, candidates, source)


def feature_tracks(cfg: Config, data_root: str | Path | None, split: Sequence[str] | None = None
                   ) -> Callable[[str], Track | None] | None:
    """A function video id -> feature-energy :class:`Track` (read lazily), or None when the features are missing."""
    try:
        dataset = TALDataset(cfg, data_root, split=list(split or cfg.val_split), is_training=False)
    except (OSError, ValueError) as err:  # FeatureError / AnnotationError are ValueErrors
        print(f"feature track unavailable: {err}")
        return None
    index = {video_id: i for i, video_id in enumerate(dataset.video_ids)}

    def track(video_id: str) -> Track | None:
        if video_id not in index:
            return None
        item = dataset[index[video_id]]
        grid = FeatureGrid(item["feat_stride"], item["num_frames"], item["fps"])
        return feature_energy_track(item["feats"], grid.clip_centres(item["feats"].shape[1]), title="‖feature‖")

    return track
