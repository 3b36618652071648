"""Annotations: the real files parse with their published counts; each kind of bad input gets its clear error."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from tal_kit.data.annotations import (AnnotationError, AnnotationWarning, load_annotations,
                                      remove_duplicate_segments)
from tests import oracle


def _write(tmp_path, database, name="ann.json", **top):
    path = tmp_path / name
    path.write_text(json.dumps({"version": "test", **top, "database": database}))
    return path


def _video(subset="Validation", duration=10.0, fps=30.0, annotations=()):
    return {"subset": subset, "duration": duration, "fps": fps, "annotations": list(annotations)}


def _ann(label, start, end, label_id=None):
    a = {"label": label, "segment": [start, end]}
    if label_id is not None:
        a["label_id"] = label_id
    return a


# ---------------------------------------------------------------- real files (counts from ../shared/data/README.md)

def test_thumos14_counts(thumos_json):
    with pytest.warns(AnnotationWarning, match="30 segment"):  # 30 segments end after the stated duration
        db = load_annotations(thumos_json)
    assert len(db) == 412
    assert db.num_segments == 6365
    assert db.num_classes == 20
    assert len(db.select(["validation"])) == 200
    assert len(db.select(["Test"])) == 212
    # THUMOS label ids are alphabetical (SPEC §C.1)
    assert db.label_names == sorted(db.label_names)
    assert db.label_names[4] == "CliffDiving" and db.label_names[19] == "VolleyballSpiking"
    first = db["video_test_0000004"]
    assert first.subset == "Test" and first.duration == 33.83 and first.fps == 30.0
    np.testing.assert_array_equal(first.segments[0], [0.2, 1.1])
    assert first.labels[0] == db.label_ids["CricketBowling"] == 5
    durations = [v.duration for v in db.videos.values()]
    assert min(durations) == pytest.approx(8.9, abs=0.05) and max(durations) == pytest.approx(1673, abs=1)


def test_anet_official_format_counts(anet_json):
    with pytest.warns(AnnotationWarning, match="12 segment.*zero length"):
        db = load_annotations(anet_json)
    assert len(db) == 14950
    assert len(db.select("training")) == 10024 and len(db.select("VALIDATION")) == 4926
    assert db.num_segments == 23064
    assert db.num_classes == 200
    assert list(db.videos) == list(json.loads(anet_json.read_text())["database"])  # ids exactly as the keys


def test_anet_label_names_only_gives_sorted_ids(anet_json, tmp_path):
    """The official ActivityNet format has no label_id: ids are assigned in sorted name order, which for this file
    must reproduce the label_ids it does carry (TSP's alphabetical mapping)."""
    data = json.loads(anet_json.read_text())
    expected = {a["label"]: a["label_id"] for v in data["database"].values() for a in v["annotations"]}
    for v in data["database"].values():
        for a in v["annotations"]:
            del a["label_id"]
    stripped = tmp_path / "official.json"
    stripped.write_text(json.dumps(data))
    with pytest.warns(AnnotationWarning):
        db = load_annotations(stripped)
    assert db.label_ids == expected


def test_remove_duplicates_matches_oracle(anet_json):
    """Duplicate removal equals the oracle's remove_duplicate_annotations on every video without short segments
    (the oracle is AF HEAD's version, which also drops segments shorter than 1e-3 s; the fork keeps those)."""
    try:
        metrics = oracle.import_module("utils.metrics")
    except ImportError as err:
        pytest.skip(f"oracle unavailable: {err}")
    raw = json.loads(anet_json.read_text())["database"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AnnotationWarning)
        db = load_annotations(anet_json, remove_duplicates=True)
    assert db.num_segments == 23064 - 52
    compared = 0
    for vid, entry in raw.items():
        if any(a["segment"][1] - a["segment"][0] < 1e-3 for a in entry["annotations"]):
            continue
        ref = metrics.remove_duplicate_annotations(entry["annotations"])
        got = db[vid]
        assert got.num_segments == len(ref)
        np.testing.assert_array_equal(got.segments, [a["segment"] for a in ref])
        np.testing.assert_array_equal(got.labels, [a["label_id"] for a in ref])
        compared += 1
    assert compared > 14000


def test_remove_duplicate_segments_hand_case():
    segs = np.array([[1.0, 2.0], [1.0005, 2.0009], [1.0, 2.0], [1.0, 2.002], [5.0, 6.0]])
    labels = np.array([3, 3, 4, 3, 3])
    # #1 duplicates #0 (within 1e-3); #2 has another label; #3 ends 2e-3 later; #4 is elsewhere
    np.testing.assert_array_equal(remove_duplicate_segments(segs, labels), [0, 2, 3, 4])


def test_single_class_and_subset_case_insensitive(tmp_path):
    path = _write(tmp_path, {
        "a": _video("Validation", annotations=[_ann("Jump", 1, 2, 1), _ann("Run", 3, 4, 0)]),
        "b": _video("TEST", annotations=[_ann("Run", 0, 1, 0)]),
        "c": _video("test", annotations=[]),
    })
    db = load_annotations(path)
    assert db.label_names == ["Run", "Jump"]
    assert [v.video_id for v in db.select(["Test"])] == ["b", "c"]
    assert db["c"].segments.shape == (0, 2) and db["c"].labels.dtype == np.int64
    single = load_annotations(path, single_class=True)
    assert single.label_names == ["action"]
    np.testing.assert_array_equal(single["a"].labels, [0, 0])
    with pytest.raises(AnnotationError, match="no video has subset 'training'.*'Validation', 'TEST'"):
        db.select(["training"])


def test_taxonomy_leaves_define_classes(tmp_path):
    taxonomy = [{"nodeName": "Root", "parentName": None}, {"nodeName": "Sports", "parentName": "Root"},
                {"nodeName": "Zumba", "parentName": "Sports"}, {"nodeName": "Archery", "parentName": "Sports"},
                {"nodeName": "Curling", "parentName": "Sports"}]
    path = _write(tmp_path, {"x": _video(annotations=[_ann("Zumba", 1, 2)])}, taxonomy=taxonomy)
    db = load_annotations(path)
    assert db.label_names == ["Archery", "Curling", "Zumba"]
    np.testing.assert_array_equal(db["x"].labels, [2])


# ---------------------------------------------------------------- bad input: clear errors naming file, video, field

@pytest.mark.parametrize("entry, message", [
    ({"duration": 5.0, "annotations": []}, r"video 'v1': missing field 'subset'"),
    ({"subset": "Test", "annotations": []}, r"video 'v1': missing field 'duration'"),
    ({"subset": "Test", "duration": -1.0}, r"video 'v1', field 'duration': must be positive"),
    ({"subset": "Test", "duration": "long"}, r"video 'v1', field 'duration': expected a finite number"),
    (_video(annotations=[{"segment": [1, 2]}]), r"video 'v1', annotations\[0\]: missing field 'label'"),
    (_video(annotations=[_ann("A", 1, 2, 0), {"label": "A", "label_id": 0}]),
     r"video 'v1', annotations\[1\]: missing field 'segment'"),
    (_video(annotations=[_ann("A", 3.0, 2.0, 0)]), r"video 'v1', annotations\[0\], field 'segment': end 2.0 is "
                                                   r"before start 3.0"),
    (_video(annotations=[_ann("A", -0.5, 2.0, 0)]), r"annotations\[0\], field 'segment': negative start -0.5"),
    (_video(annotations=[_ann("A", 1.0, float("nan"), 0)]), r"field 'segment' \(end\): expected a finite number"),
    (_video(annotations=[{"label": "A", "segment": [1.0]}]), r"field 'segment': expected \[start, end\]"),
    (_video(annotations=[_ann("A", 1, 2, 0), _ann("A", 2, 3)]),
     r"video 'v1', annotations\[1\]: missing field 'label_id'"),
    (_video(annotations=[_ann("A", 1, 2, 0), _ann("A", 2, 3, 1)]), r"field 'label_id': 'A' -> 1 conflicts"),
    (_video(annotations=[_ann("A", 1, 2, 0), _ann("B", 2, 3, 0)]),
     r"annotations\[1\], field 'label_id': 'B' -> 0 conflicts with 'A' -> 0"),
])
def test_bad_entries_name_file_video_field(tmp_path, entry, message):
    path = _write(tmp_path, {"v0": _video(), "v1": entry})
    with pytest.raises(AnnotationError, match=message) as info:
        load_annotations(path)
    assert str(path) in str(info.value)


def test_duplicate_video_id(tmp_path):
    path = tmp_path / "dup.json"
    path.write_text('{"database": {"v1": {"subset": "Test", "duration": 3}, "v1": {"subset": "Test", "duration": 4}}}')
    with pytest.raises(AnnotationError, match=r"dup.json: duplicate video id\(s\) in 'database': 'v1'"):
        load_annotations(path)


def test_missing_file_and_database(tmp_path):
    with pytest.raises(AnnotationError, match="does not exist"):
        load_annotations(tmp_path / "nope.json")
    path = tmp_path / "bad.json"
    path.write_text('{"results": {}}')
    with pytest.raises(AnnotationError, match="bad.json: missing top-level field 'database'"):
        load_annotations(path)
    path.write_text('{"database": ')
    with pytest.raises(AnnotationError, match="not valid JSON"):
        load_annotations(path)


def test_recoverable_issues_summarised_once(tmp_path):
    path = _write(tmp_path, {
        "a": _video(duration=10.0, annotations=[_ann("A", 9, 11, 0), _ann("A", 9.5, 12, 0), _ann("A", 4, 4, 0)]),
        "b": _video(duration=10.0, annotations=[_ann("A", 9, 10.5, 0)]),
    })
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        db = load_annotations(path)
    messages = [str(w.message) for w in caught if issubclass(w.category, AnnotationWarning)]
    assert len(messages) == 1
    assert "3 segment(s) with end after the video's duration (in 2 video(s)" in messages[0]
    assert "1 segment(s) with zero length" in messages[0]
    np.testing.assert_array_equal(db["a"].segments[1], [9.5, 12])  # kept unchanged
