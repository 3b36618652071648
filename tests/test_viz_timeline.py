"""The timeline figure, its HTML export, the candidate cache and the explorer, on hand-built inputs."""
from __future__ import annotations

import math

import numpy as np
import pytest

from tal_kit.data.annotations import VideoRecord
from tal_kit.detections import Detections
from tal_kit.inference.candidates import VideoCandidates, load_candidates, save_candidates, synthetic_candidates
from tal_kit.inference.nms import apply_nms, nms_settings
from tal_kit.viz import (
    Track, class_score_track, explorer, export_html, feature_energy_track, timeline, video_detections,
)
from tal_kit.viz.timeline import pack_lanes

LABELS = ["jump", "run", "swim"]
GT = VideoRecord("vid", "test", 60.0, 30.0, np.array([[5.0, 10.0], [20.0, 30.0], [40.0, 42.0]]), np.array([0, 1, 0]))
# Hand-worked outcomes at tIoU 0.5:
DETS = {
    "segments": np.array([[5.0, 10.0],     # jump 0.9: TP on GT #0 (tIoU 1)
                          [5.5, 10.0],     # jump 0.6: double detection of GT #0 (tIoU 0.9)
                          [21.0, 29.0],    # run  0.8: TP on GT #1 (tIoU 0.8)
                          [45.0, 50.0],    # jump 0.3: background
                          [20.0, 30.0],    # jump 0.5: wrong label (tIoU 1 with the run segment)
                          [40.0, 41.5]]),  # jump 0.04: TP on GT #2 (tIoU 0.75), hidden by a 0.05 score threshold
    "scores": np.array([0.9, 0.6, 0.8, 0.3, 0.5, 0.04]),
    "labels": np.array([0, 0, 1, 0, 0, 0]),
}


def traces(fig):
    return {trace.name.split(" (")[0]: trace for trace in fig.data}


def test_timeline_bars_and_true_false_positive_marks():
    fig = timeline(GT, DETS, label_names=LABELS, tiou_threshold=0.5)
    t = traces(fig)
    assert len(t["ground truth"].x) == 3
    assert len(t["true positive"].x) == 3 and len(t["false positive"].x) == 3
    # Bars span [start, end]: base = start, x = length.
    tp_segments = sorted(zip(t["true positive"].base, np.add(t["true positive"].base, t["true positive"].x)))
    np.testing.assert_allclose(tp_segments, [[5.0, 10.0], [21.0, 29.0], [40.0, 41.5]])
    outcomes = sorted(row[6] for row in t["false positive"].customdata)
    assert outcomes == ["background", "double detection", "wrong label"]
    assert fig.layout.xaxis.range == (0.0, 60.0)


def test_hover_data_names_best_tiou_and_the_matched_ground_truth():
    fig = timeline(GT, DETS, label_names=LABELS)
    rows = {round(r[1], 2): r for r in traces(fig)["true positive"].customdata}
    assert rows[0.8][0] == "run" and rows[0.8][4] == "0.80" and rows[0.8][5].startswith("GT #1 20.00–30.00")
    fp = {round(r[1], 2): r for r in traces(fig)["false positive"].customdata}
    assert fp[0.6][4] == "0.90" and fp[0.6][5] == "none"
    assert fp[0.5][4] == "0.00"  # a jump detection on the run segment: no overlap with any jump segment
    gt_status = [r[4] for r in traces(fig)["ground truth"].customdata]
    assert gt_status[0].startswith("detected: score 0.900") and gt_status[1].startswith("detected: score 0.800")


def test_score_threshold_hides_low_scores_without_changing_the_marks():
    fig = timeline(GT, DETS, label_names=LABELS, score_threshold=0.05)
    t = traces(fig)
    assert len(t["true positive"].x) == 2 and len(t["false positive"].x) == 3
    # GT #2 is still reported as detected: matching used every detection.
    assert traces(fig)["ground truth"].customdata[2][4].startswith("detected: score 0.040")


def test_tiou_threshold_changes_the_outcome():
    strict = traces(timeline(GT, DETS, label_names=LABELS, tiou_threshold=0.85))
    # At 0.85 the run detection (tIoU 0.8) and the last jump detection (0.75) become localization errors, while the
    # 0.6 jump detection (0.9 with GT #0, taken) stays a double detection.
    assert len(strict["true positive"].x) == 1
    assert sorted(r[6] for r in strict["false positive"].customdata).count("localization") == 2


def test_class_filter_and_max_detections():
    fig = timeline(GT, DETS, label_names=LABELS, classes=["run"])
    t = traces(fig)
    assert len(t["ground truth"].x) == 1 and len(t["true positive"].x) == 1 and len(t["false positive"].x) == 0
    top2 = traces(timeline(GT, DETS, label_names=LABELS, max_detections=2))
    assert sorted(top2["true positive"].customdata[i][1] for i in range(2)) == [0.8, 0.9]
    with pytest.raises(ValueError, match="unknown class"):
        timeline(GT, DETS, label_names=LABELS, classes=["fly"])


def test_detections_without_ground_truth_and_from_a_table():
    table = Detections.from_video_dicts([dict(DETS, video_id="vid"), dict(DETS, video_id="other")])
    fig = timeline(None, table, video_id="vid", label_names=LABELS)
    assert [tr.name for tr in fig.data] == ["detections"] and len(fig.data[0].x) == 6
    arrays = video_detections(table, "other")
    np.testing.assert_allclose(arrays.segments, DETS["segments"])
    with pytest.raises(ValueError, match="video_id"):
        video_detections(table)


def test_pack_lanes_puts_overlapping_segments_on_separate_lanes():
    segments = np.array([[0, 10], [5, 15], [10, 20], [2, 8], [30, 40]], float)
    order = np.arange(5)
    # 0 -> lane 0; 1 overlaps 0 -> lane 1; 2 touches 0 at 10 (no overlap) -> lane 0; 3 overlaps 0 and 1 -> lane 2;
    # 4 -> lane 0.
    assert pack_lanes(segments, order, max_lanes=4).tolist() == [0, 1, 0, 2, 0]
    # With 2 lanes the third overlapping segment shares the last lane.
    assert pack_lanes(segments, order, max_lanes=2).tolist() == [0, 1, 0, 1, 0]


def test_tracks_below_the_timeline():
    feats = np.array([[3.0, 0.0], [4.0, 1.0]])  # norms 5 and 1
    track = feature_energy_track(feats, np.array([1.0, 2.0]))
    np.testing.assert_allclose(track.values[:, 0], [5.0, 1.0])
    scores = np.array([[0.1, 0.9, 0.2], [0.3, 0.1, 0.25]])
    top = class_score_track(scores, np.array([1.0, 2.0]), LABELS, top=2)
    assert top.names == ["run", "jump"]
    fig = timeline(GT, DETS, label_names=LABELS, track=top)
    assert [tr.name for tr in fig.data][-2:] == ["run", "jump"] and fig.data[-1].yaxis == "y2"
    with pytest.raises(ValueError, match="times"):
        Track(np.arange(3), np.zeros(2), ["x"])


def test_export_html_is_standalone_with_one_copy_of_plotly(tmp_path):
    fig = timeline(GT, DETS, label_names=LABELS)
    path = export_html({"first <video>": fig, "second": fig}, tmp_path / "out" / "timelines.html", title="demo")
    text = path.read_text(encoding="utf8")
    assert text.count("Plotly.newPlot(") >= 2 and text.count('class="tal-figure"') == 2
    assert "first &lt;video&gt;" in text
    assert "cdn.plot.ly" not in text.split("<body>")[1] and 'src="http' not in text  # nothing fetched
    assert text.count("plotly.js v") <= 2  # the library's banner once (it mentions the version twice at most)
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
    with pytest.raises(ValueError, match="no figure"):
        export_html([], tmp_path / "x.html")


# ---- candidates and NMS replay ----------------------------------------------------------------------------------

def identity_candidates(segments, scores, labels, duration=100.0):
    return VideoCandidates("vid", np.asarray(segments, np.float32), np.asarray(scores, np.float32),
                           np.asarray(labels, np.int64), fps=1.0, feat_stride=1.0, num_frames=0.0, duration=duration)


def test_apply_nms_hand_worked_hard_soft_and_none():
    cand = identity_candidates([[0, 10], [1, 10], [20, 30]], [0.9, 0.8, 0.7], [0, 0, 0])
    hard = apply_nms(cand, nms_settings(method="hard", iou_threshold=0.5))
    np.testing.assert_allclose(hard.scores, [0.9, 0.7], rtol=1e-6)
    none = apply_nms(cand, nms_settings(method="none"))
    assert len(none) == 3
    soft = apply_nms(cand, nms_settings(method="soft", sigma=0.5))
    # Gaussian soft-NMS: the second candidate (IoU 0.9 with the first) decays to 0.8 * exp(-0.81 / 0.5).
    np.testing.assert_allclose(sorted(soft.scores), sorted([0.9, 0.7, 0.8 * math.exp(-0.81 / 0.5)]), rtol=1e-5)
    top1 = apply_nms(cand, nms_settings(method="hard", iou_threshold=0.5, max_seg_num=1))
    np.testing.assert_allclose(top1.scores, [0.9], rtol=1e-6)


def test_apply_nms_converts_grid_units_to_seconds_and_clips():
    # THUMOS grid: seconds = (4 g + 8) / 30; g = 43 -> 6.0 s, g = 73 -> 10.0 s; g = -10 -> clipped to 0.
    cand = VideoCandidates("vid", np.array([[43, 73], [-10, 5]], np.float32), np.array([0.9, 0.5], np.float32),
                           np.array([0, 1]), fps=30.0, feat_stride=4.0, num_frames=16.0, duration=8.0)
    det = apply_nms(cand, nms_settings(method="none"))
    np.testing.assert_allclose(det.segments, [[6.0, 8.0], [0.0, 28 / 30]], rtol=1e-6)


def test_candidates_round_trip_and_clear_errors(tmp_path):
    cache = synthetic_candidates([GT], num_classes=3, seed=1)
    path = save_candidates(tmp_path / "candidates.npz", cache)
    back = load_candidates(path)
    assert list(back) == ["vid"]
    for field in ("segments", "scores", "labels"):
        np.testing.assert_array_equal(getattr(back["vid"], field), getattr(cache["vid"], field))
    assert back["vid"].duration == 60.0
    np.savez(tmp_path / "bad.npz", video_ids=np.array(["a"]))
    with pytest.raises(ValueError, match=r"bad\.npz.*offsets"):
        load_candidates(tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_candidates(tmp_path / "missing.npz")


def test_synthetic_candidates_cluster_around_actions():
    cache = synthetic_candidates([GT], num_classes=3, seed=0, miss_rate=0.0, background_per_minute=0.0,
                                 wrong_label_rate=0.0, copies_per_action=5)
    cand = cache["vid"]
    assert len(cand) == 15
    # Every copy overlaps the action it was made from, with that action's label.
    from tal_kit.evaluation.detad import pairwise_tiou

    tiou = pairwise_tiou(cand.segments, GT.segments)
    assert (tiou.argmax(axis=1) == np.repeat([0, 1, 2], 5)).all()
    assert (cand.labels == np.repeat(GT.labels, 5)).all()


# ---- explorer ---------------------------------------------------------------------------------------------------

def shown(panel):
    return panel.figure.layout.meta["num_shown"]


def test_explorer_reruns_nms_when_the_controls_change():
    cand = {"vid": identity_candidates([[5, 10], [5.5, 10], [21, 29], [45, 50]], [0.9, 0.6, 0.8, 0.3], [0, 0, 1, 0])}
    panel = explorer([GT], label_names=LABELS, candidates=cand, score_threshold=0.0)
    panel.nms_method.value = "none"
    assert shown(panel) == 4
    panel.nms_method.value = "hard"  # IoU of the two jump candidates is 0.9 >= 0.1 (default threshold)
    assert shown(panel) == 3 and not panel.iou_threshold.disabled and panel.sigma.disabled
    panel.iou_threshold.value = 0.95  # now nothing overlaps enough to be suppressed
    assert shown(panel) == 4
    panel.max_seg_num.value = 2
    assert shown(panel) == 2
    panel.nms_method.value = "none"  # keeps every candidate: top-k does not apply
    assert shown(panel) == 4 and panel.max_seg_num.disabled
    panel.nms_method.value = "hard"
    panel.max_seg_num.value = 1000
    panel.score_threshold.value = 0.5
    assert shown(panel) == 3
    panel.class_filter.value = 1
    assert shown(panel) == 1
    assert "4 candidates" in panel.status.value


def test_explorer_with_detections_only_disables_nms():
    table = Detections.from_video_dicts([dict(DETS, video_id="vid")])
    panel = explorer([GT], label_names=LABELS, detections=table, score_threshold=0.0)
    assert panel.nms_method.disabled and panel.sigma.disabled and panel.max_seg_num.disabled
    assert shown(panel) == 6
    panel.tiou_threshold.value = 0.85
    tp = [tr for tr in panel.figure.data if tr.name.startswith("true positive")][0]
    assert len(tp.x) == 1
    with pytest.raises(ValueError, match="candidates"):
        explorer([GT], label_names=LABELS)
