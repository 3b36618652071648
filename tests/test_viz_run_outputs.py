"""RunOutputs picks its first-look videos among those the run actually produced outputs for."""
from __future__ import annotations

import numpy as np

from tal_kit.data.annotations import VideoRecord
from tal_kit.detections import Detections
from tal_kit.viz.run_outputs import RunOutputs


def _record(video_id: str, num_segments: int) -> VideoRecord:
    segments = np.array([[i, i + 1.0] for i in range(num_segments)], dtype=np.float64).reshape(-1, 2)
    return VideoRecord(video_id, "Test", 100.0, 30.0, segments, np.zeros(num_segments, dtype=np.int64))


def test_busiest_videos_only_among_covered_videos():
    truth = [_record("a", 9), _record("b", 2), _record("c", 5), _record("d", 5)]
    # the run skipped "a" (e.g. no features): the busiest covered video is "c" (ties keep split order)
    detections = Detections.from_video_dicts([
        {"video_id": vid, "segments": np.array([[0.0, 1.0]]), "scores": np.array([0.5]), "labels": np.array([0])}
        for vid in ("b", "c", "d")])
    run = RunOutputs(truth, ["x"], detections, None, "test")
    assert run.busiest_videos(2) == ["c", "d"]
    run_without_outputs = RunOutputs(truth, ["x"], Detections.empty(), None, "test")
    assert run_without_outputs.busiest_videos(1) == ["a"]
