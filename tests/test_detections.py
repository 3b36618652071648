"""Detections table and the ActivityNet results JSON."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from tal_kit.detections import Detections, DetectionsError

NAMES = ["Run", "Jump", "Swim"]


def table() -> Detections:
    return Detections(np.array(["b", "a", "b"]), np.array([1.0, 2.0, 3.0]), np.array([1.5, 4.0, 3.0]),
                      np.array([2, 0, 1]), np.array([0.5, 0.25, 0.125]))


def test_from_video_dicts_accepts_tensors_and_keeps_order():
    outputs = [{"video_id": "v1", "segments": torch.tensor([[0.0, 1.0], [2.0, 3.5]]),
                "scores": torch.tensor([0.9, 0.1]), "labels": torch.tensor([1, 0])},
               {"video_id": "v0", "segments": np.zeros((0, 2)), "scores": [], "labels": []},
               {"video_id": "v2", "segments": [[5.0, 6.0]], "scores": [0.3], "labels": [2]}]
    d = Detections.from_video_dicts(outputs)
    assert len(d) == 3 and d.video_ids.tolist() == ["v1", "v1", "v2"]
    np.testing.assert_array_equal(d.segments, [[0, 1], [2, 3.5], [5, 6]])
    assert d.scores.dtype == np.float64 and d.labels.dtype == np.int64
    np.testing.assert_allclose(d.scores, [np.float32(0.9), np.float32(0.1), 0.3])
    with pytest.raises(DetectionsError, match="'v3'.*2 segments, 1 scores"):
        Detections.from_video_dicts([{"video_id": "v3", "segments": [[0, 1], [1, 2]], "scores": [1], "labels": [0]}])
    with pytest.raises(DetectionsError, match="missing field 'scores'"):
        Detections.from_video_dicts([{"video_id": "v3", "segments": [], "labels": []}])


def test_table_operations():
    d = table()
    assert d.videos() == ["b", "a"]
    assert d.for_video("b").starts.tolist() == [1.0, 3.0]
    both = Detections.concat([d, d.for_video("a")])
    assert len(both) == 4 and both.video_ids.tolist() == ["b", "a", "b", "a"]
    per_video = d.to_video_dicts()
    assert [p["video_id"] for p in per_video] == ["b", "a"]
    np.testing.assert_array_equal(per_video[0]["labels"], [2, 1])
    assert len(Detections.empty()) == 0 and len(Detections.concat([])) == 0
    with pytest.raises(DetectionsError, match="equal length"):
        Detections(np.array(["a"]), np.zeros(2), np.zeros(2), np.zeros(2), np.zeros(2))


def test_results_json_round_trip_is_exact(tmp_path):
    d = table()
    path = d.to_results_json(tmp_path / "sub" / "results.json", NAMES)
    data = json.loads(path.read_text())
    assert set(data) == {"version", "results", "external_data"}
    assert data["results"]["b"][0] == {"label": "Swim", "score": 0.5, "segment": [1.0, 1.5]}
    assert os.listdir(path.parent) == ["results.json"]  # no temporary file left behind
    back = Detections.from_results_json(path, NAMES)
    # Rows come back grouped by video (the format's nesting), each video's rows in table order.
    order = [0, 2, 1]
    for column in ("video_ids", "starts", "ends", "labels", "scores"):
        np.testing.assert_array_equal(getattr(back, column), getattr(d, column)[order])


def test_results_json_label_ids_and_unknown_labels(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"results": {"a": [{"label": 1, "score": 0.5, "segment": [0, 1]},
                                                  {"label": "Dance", "score": 0.4, "segment": [0, 1]},
                                                  {"label": "Run", "score": 0.3, "segment": [0, 1]}]}}))
    with pytest.raises(DetectionsError, match=r"r.json: video 'a', results\[1\], field 'label': 'Dance'"):
        Detections.from_results_json(path, NAMES)
    with pytest.warns(UserWarning, match="ignored 1 detection.*'Dance'"):
        d = Detections.from_results_json(path, NAMES, unknown_labels="ignore")
    assert d.labels.tolist() == [1, 0]


@pytest.mark.parametrize("entry, message", [
    ({"score": 0.5, "segment": [0, 1]}, "missing field 'label'"),
    ({"label": "Run", "score": "high", "segment": [0, 1]}, "field 'score': expected a finite number"),
    ({"label": "Run", "score": 0.5, "segment": [0]}, "field 'segment': expected \\[start, end\\]"),
    ({"label": "Run", "score": 0.5, "segment": [2, 1]}, "end 1.0 is before start 2.0"),
    ({"label": "Run", "score": float("nan"), "segment": [0, 1]}, "finite"),
])
def test_results_json_bad_entries_name_file_video_and_field(tmp_path, entry, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"results": {"vid7": [{"label": "Run", "score": 1, "segment": [0, 1]}, entry]}}))
    with pytest.raises(DetectionsError, match=rf"bad.json: video 'vid7', results\[1\].*{message}"):
        Detections.from_results_json(path, NAMES)


def test_results_json_file_errors(tmp_path):
    with pytest.raises(DetectionsError, match="does not exist"):
        Detections.from_results_json(tmp_path / "missing.json", NAMES)
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(DetectionsError, match="not valid JSON"):
        Detections.from_results_json(tmp_path / "x.json", NAMES)
    (tmp_path / "y.json").write_text(json.dumps({"database": {}}))
    with pytest.raises(DetectionsError, match="'results'"):
        Detections.from_results_json(tmp_path / "y.json", NAMES)
    with pytest.raises(DetectionsError, match="label id 2 has no name"):
        table().to_results_json(tmp_path / "z.json", NAMES[:2])
    assert not (tmp_path / "z.json").exists()


def test_real_rc3d_results(rc3d_predictions, thumos_json):
    from tal_kit.data.annotations import load_annotations
    with pytest.warns(UserWarning):
        names = load_annotations(thumos_json).label_names
    d = Detections.from_results_json(rc3d_predictions, names)
    raw = json.loads(rc3d_predictions.read_text())["results"]
    assert len(d) == sum(len(v) for v in raw.values()) == 30481
    assert len(d.videos()) == 213
    first = raw["video_test_0000211"][0]
    row = d.for_video("video_test_0000211")
    assert names[row.labels[0]] == first["label"] and row.scores[0] == first["score"]
