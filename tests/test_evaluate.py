"""Hand-worked cases of the ActivityNet detection mAP (each computed by hand in the comments), the tie rule, the
ground-truth variants, recall at k x #GT, errors, and the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tal_kit.__main__ import main
from tal_kit.data.annotations import VideoRecord
from tal_kit.detections import Detections
from tal_kit.evaluate import (EvaluationError, cli_evaluate, evaluate_detections, interpolated_average_precision,
                              match_detections, parse_tiou_thresholds, segment_tiou)


def video(video_id: str, segments: list, labels: list) -> VideoRecord:
    return VideoRecord(video_id, "test", 100.0, 30.0, np.array(segments, dtype=float).reshape(-1, 2),
                       np.array(labels, dtype=np.int64))


def dets(rows: list[tuple]) -> Detections:
    """rows of (video, start, end, label, score)"""
    v, s, e, lab, sc = zip(*rows)
    return Detections(np.array(v), np.array(s, float), np.array(e, float), np.array(lab), np.array(sc, float))


def test_segment_tiou_by_hand():
    # [0, 10] vs [5, 15]: intersection 5, union 15 -> 1/3; disjoint -> 0; zero-length inside -> 0; zero on zero -> NaN
    got = segment_tiou(np.array([0.0, 0.0, 0.0, 3.0]), np.array([10.0, 10.0, 10.0, 3.0]),
                       np.array([5.0, 20.0, 4.0, 7.0]), np.array([15.0, 30.0, 4.0, 7.0]))
    np.testing.assert_allclose(got[:3], [1 / 3, 0.0, 0.0])
    assert np.isnan(got[3])


def test_segment_tiou_pairwise_and_zero_union_by_hand():
    # broadcast to every pair; DETAD's rule: two zero-length segments do not overlap (0, not NaN)
    a = np.array([[0.0, 10.0], [3.0, 3.0]])
    b = np.array([[5.0, 15.0], [3.0, 3.0]])
    got = segment_tiou(a[:, None, 0], a[:, None, 1], b[None, :, 0], b[None, :, 1], zero_union=0.0)
    np.testing.assert_allclose(got, [[1 / 3, 0.0], [0.0, 0.0]])
    official = segment_tiou(a[:, None, 0], a[:, None, 1], b[None, :, 0], b[None, :, 1])
    assert np.isnan(official[1, 1]) and official[0, 0] == pytest.approx(1 / 3)


def test_interpolated_ap_by_hand():
    # precision [0, 1/2, 2/3], recall [0, 1/2, 1]: envelope after recall 0 is 2/3 -> AP = 1/2*2/3 + 1/2*2/3 = 2/3
    ap = interpolated_average_precision(np.array([[0.0, 0.5, 2 / 3]]), np.array([[0.0, 0.5, 1.0]]))
    assert ap[0] == pytest.approx(2 / 3, abs=1e-15)


def test_hand_worked_single_class():
    # Ground truth g0 = [0, 10], g1 = [20, 30].
    # p1 [0, 10]  s .9: tIoU 1 with g0                     -> TP at every threshold.
    # p2 [21, 31] s .8: tIoU 9/11 = .818 with g1            -> TP at .5, FP at .85.
    # p3 [0, 9]   s .7: tIoU .9 with g0 (locked), 0 with g1 -> FP.
    # tIoU .5 : precision 1, 1, 2/3; recall .5, 1, 1  -> AP = .5*1 + .5*1 = 1.
    # tIoU .85: precision 1, 1/2, 1/3; recall .5, .5, .5 -> AP = .5*1 = .5.
    gt = [video("a", [[0, 10], [20, 30]], [0, 0])]
    d = dets([("a", 0, 10, 0, 0.9), ("a", 21, 31, 0, 0.8), ("a", 0, 9, 0, 0.7)])
    result = evaluate_detections(gt, d, [0.5, 0.85])
    np.testing.assert_allclose(result.ap[0], [1.0, 0.5])
    np.testing.assert_allclose(result.mAP, [1.0, 0.5])
    assert result.average_mAP == pytest.approx(0.75)
    curve = result.pr_curves[0]
    np.testing.assert_allclose(curve.precision, [[1, 1, 2 / 3], [1, 1 / 2, 1 / 3]])
    np.testing.assert_allclose(curve.recall, [[0.5, 1, 1], [0.5, 0.5, 0.5]])
    np.testing.assert_allclose(curve.scores, [0.9, 0.8, 0.7])
    m = match_detections(gt, d, [0.5, 0.85])
    np.testing.assert_array_equal(m.gt_index, [[0, 0], [1, -1], [-1, -1]])


def test_false_positive_first_and_two_classes_with_an_empty_one():
    # Class 0: p [40, 50] s .9 (FP), then TPs on g0 and g1: precision 0, 1/2, 2/3; recall 0, 1/2, 1 -> AP 2/3.
    # Class 1 has ground truth but no detection: AP 0, and it still counts: mAP = (2/3 + 0) / 2 = 1/3.
    gt = [video("a", [[0, 10], [20, 30], [60, 70]], [0, 0, 1])]
    d = dets([("a", 40, 50, 0, 0.9), ("a", 0, 10, 0, 0.8), ("a", 20, 30, 0, 0.7)])
    result = evaluate_detections(gt, d, [0.5], label_names=["run", "jump", "swim"])
    np.testing.assert_allclose(result.ap[:2, 0], [2 / 3, 0.0])
    assert np.isnan(result.ap[2, 0])  # no ground truth: not a class of this evaluation
    np.testing.assert_allclose(result.mAP, [1 / 3])
    assert result.class_ids.tolist() == [0, 1]
    assert result.to_dict()["per_class_ap"] == {"run": [pytest.approx(2 / 3)], "jump": [0.0]}


def test_detections_on_videos_without_ground_truth_are_false_positives():
    # "b" is not an evaluated video: its detection (ranked first) is an FP: precision 0, 1/2; recall 0, 1 -> AP 1/2.
    gt = [video("a", [[0, 10]], [0])]
    result = evaluate_detections(gt, dets([("b", 0, 10, 0, 0.9), ("a", 0, 10, 0, 0.8)]), [0.5])
    np.testing.assert_allclose(result.mAP, [0.5])
    assert result.num_detections_outside_gt == 1


def test_score_ties_keep_table_order():
    # Equal scores: the row listed first ranks first.
    # FP listed first: precision 0, 1/2; recall 0, 1 -> AP 1/2.  TP listed first: precision 1, 1/2 -> AP 1.
    gt = [video("a", [[0, 10]], [0])]
    fp, tp = ("a", 20, 30, 0, 0.5), ("a", 0, 10, 0, 0.5)
    assert evaluate_detections(gt, dets([fp, tp]), [0.5]).mAP[0] == pytest.approx(0.5)
    assert evaluate_detections(gt, dets([tp, fp]), [0.5]).mAP[0] == pytest.approx(1.0)


def test_tiou_ties_keep_annotation_order():
    # p1 [0, 10] has tIoU .5 with both g0 [0, 5] and g1 [5, 10]; it takes g0 (listed first). p2 [5, 10] then finds
    # g1 free (tIoU 1): both TP, AP 1. Had p1 taken g1, p2 would be an FP (AP 1/2).
    gt = [video("a", [[0, 5], [5, 10]], [0, 0])]
    d = dets([("a", 0, 10, 0, 0.9), ("a", 5, 10, 0, 0.8)])
    assert evaluate_detections(gt, d, [0.5]).mAP[0] == pytest.approx(1.0)
    np.testing.assert_array_equal(match_detections(gt, d, [0.5]).gt_index[:, 0], [0, 1])


def test_greedy_matching_by_score_not_best_tiou():
    # p1 (s .9, tIoU .8) takes the only segment; p2 (s .8, tIoU 1) is an FP: precision 1, 1/2; recall 1, 1 -> AP 1,
    # but at tIoU .9 p1 is FP and p2 TP: precision 0, 1/2; recall 0, 1 -> AP 1/2.
    gt = [video("a", [[0, 10]], [0])]
    d = dets([("a", 0, 8, 0, 0.9), ("a", 0, 10, 0, 0.8)])
    np.testing.assert_allclose(evaluate_detections(gt, d, [0.5, 0.9]).mAP, [1.0, 0.5])


def test_zero_length_and_duplicate_ground_truth_variants():
    # Ground truth: g0 [0, 10], g1 = [5, 5] (zero length), g2 = duplicate of g0. One detection [0, 10].
    # official ("none"): 3 positives, 1 TP -> recall 1/3, precision 1 -> AP 1/3.
    # "duplicates" (InternVideo fork): g2 dropped -> AP 1/2.   True/"actionformer": g1 too -> AP 1.
    gt = [video("a", [[0, 10], [5, 5], [0.0005, 10.0009]], [0, 0, 0])]
    d = dets([("a", 0, 10, 0, 0.9)])
    assert evaluate_detections(gt, d, [0.5]).mAP[0] == pytest.approx(1 / 3)
    assert evaluate_detections(gt, d, [0.5], dedup_gt="duplicates").mAP[0] == pytest.approx(1 / 2)
    result = evaluate_detections(gt, d, [0.5], dedup_gt=True)
    assert result.mAP[0] == pytest.approx(1.0) and result.dedup_gt == "actionformer"
    # Duplicates are only those of the same label.
    other_label = [video("a", [[0, 10], [0, 10]], [0, 1])]
    assert evaluate_detections(other_label, d, [0.5], dedup_gt="duplicates").num_gt.tolist() == [1, 1]


def test_zero_length_detection_on_zero_length_ground_truth_matches_like_the_official_code():
    # Both lengths 0 -> union 0 -> official tIoU NaN, which passes every threshold: a TP even though the two points
    # differ (3 s vs 7 s). Kept for identical numbers; documented in tal_kit.evaluation.matching.
    gt = [video("a", [[7, 7]], [0])]
    assert evaluate_detections(gt, dets([("a", 3, 3, 0, 0.9)]), [0.5, 0.95]).mAP.tolist() == [1.0, 1.0]


def test_recall_at_k_by_hand():
    # Video a, class 0: 2 segments -> top 1x = 2 detections, top 5x = 10. The two best detections miss; the third
    # hits g0. R@1x = 0/2 = 0, R@5x = 1/2. Recall does not need one-to-one matching: a 4th detection on g0 adds 0.
    gt = [video("a", [[0, 10], [50, 60]], [0, 0])]
    d = dets([("a", 20, 30, 0, 0.9), ("a", 30, 40, 0, 0.8), ("a", 0, 10, 0, 0.7), ("a", 0, 10, 0, 0.6)])
    result = evaluate_detections(gt, d, [0.5], top_k=(1, 5))
    assert result.recall_at_k[1].tolist() == [0.0]
    assert result.recall_at_k[5].tolist() == [0.5]


def test_unknown_labels_error_or_ignore():
    gt = [video("a", [[0, 10]], [0])]
    d = dets([("a", 0, 10, 0, 0.9), ("a", 0, 10, 3, 0.95), ("a", 0, 10, 3, 0.5)])
    with pytest.raises(EvaluationError, match=r"2 detection\(s\).*label 3 \('c3'\).*video 'a'.*ignore"):
        evaluate_detections(gt, d, [0.5], label_names=["c0", "c1", "c2", "c3"])
    result = evaluate_detections(gt, d, [0.5], unknown_labels="ignore")
    assert result.num_ignored_detections == 2
    assert result.mAP[0] == 1.0


def test_bad_inputs_are_clear_errors():
    gt = [video("a", [[0, 10]], [0])]
    with pytest.raises(EvaluationError, match="video 'a'.*start <= end"):
        evaluate_detections(gt, dets([("a", 10, 5, 0, 0.9)]), [0.5])
    with pytest.raises(EvaluationError, match="finite"):
        evaluate_detections(gt, dets([("a", 0, 5, 0, float("nan"))]), [0.5])
    with pytest.raises(EvaluationError, match="no segments"):
        evaluate_detections([video("a", [], [])], dets([("a", 0, 5, 0, 0.9)]), [0.5])
    with pytest.raises(EvaluationError, match="tiou_thresholds"):
        evaluate_detections(gt, dets([("a", 0, 5, 0, 0.9)]), [])
    with pytest.raises(ValueError, match="dedup_gt"):
        evaluate_detections(gt, dets([("a", 0, 5, 0, 0.9)]), [0.5], dedup_gt="sometimes")


def test_no_detections_at_all():
    result = evaluate_detections([video("a", [[0, 10]], [0])], Detections.empty(), [0.5, 0.7])
    assert result.mAP.tolist() == [0.0, 0.0] and result.average_mAP == 0.0


def test_parse_tiou_thresholds():
    assert parse_tiou_thresholds("0.3:0.7:0.1") == [0.3, 0.4, 0.5, 0.6, 0.7]
    assert parse_tiou_thresholds("0.5:0.95:0.05") == [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]
    assert parse_tiou_thresholds("0.5,0.75,0.95") == [0.5, 0.75, 0.95]
    with pytest.raises(ValueError, match="whole steps"):
        parse_tiou_thresholds("0.3:0.75:0.1")


def _write_small_files(tmp_path):
    gt = {"version": "x", "database": {
        "a": {"subset": "Test", "duration": 100.0, "fps": 30.0, "annotations": [
            {"label": "Run", "label_id": 0, "segment": [0.0, 10.0]},
            {"label": "Run", "label_id": 0, "segment": [20.0, 30.0]}]},
        "b": {"subset": "Validation", "duration": 50.0, "fps": 30.0, "annotations": [
            {"label": "Jump", "label_id": 1, "segment": [1.0, 2.0]}]}}}
    pred = {"version": "x", "external_data": {}, "results": {"a": [
        {"label": "Run", "score": 0.9, "segment": [0.0, 10.0]},
        {"label": "Run", "score": 0.8, "segment": [21.0, 31.0]},
        {"label": "Run", "score": 0.7, "segment": [0.0, 9.0]}]}}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text(json.dumps(pred))
    return str(tmp_path / "gt.json"), str(tmp_path / "pred.json")


def test_cli_json_output(tmp_path, capsys):
    gt, pred = _write_small_files(tmp_path)
    # Same detections as test_hand_worked_single_class: AP 1 at .5, 1/2 at .85.
    assert cli_evaluate(["--gt", gt, "--pred", pred, "--subset", "test", "--tiou", "0.5,0.85", "--json",
                         "--output", str(tmp_path / "m.json")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == {"tiou_thresholds": [0.5, 0.85], "mAP": [1.0, 0.5], "average_mAP": 0.75}
    full = json.loads((tmp_path / "m.json").read_text())
    assert full["per_class_ap"] == {"Run": [1.0, 0.5]} and full["num_gt"] == 2


def test_cli_table_and_errors(tmp_path, capsys):
    gt, pred = _write_small_files(tmp_path)
    assert cli_evaluate(["--gt", gt, "--pred", pred, "--subset", "Test", "--tiou", "0.5", "--per-class"]) == 0
    out = capsys.readouterr().out
    assert "100.00" in out and "Run" in out
    assert main(["evaluate", "--gt", gt, "--pred", pred, "--subset", "training"]) == 2
    assert "'training'" in capsys.readouterr().err
    # Jump exists in the file but has no ground truth in the Test subset: official behaviour is an error.
    data = json.loads(open(pred).read())
    data["results"]["a"].append({"label": "Jump", "score": 0.1, "segment": [1.0, 2.0]})
    (tmp_path / "pred2.json").write_text(json.dumps(data))
    args = ["--gt", gt, "--pred", str(tmp_path / "pred2.json"), "--subset", "Test", "--json"]
    assert main(["evaluate", *args]) == 2
    assert "Jump" in capsys.readouterr().err
    assert cli_evaluate(args + ["--unknown-labels", "ignore"]) == 0


def test_cli_on_real_rc3d(thumos_json, rc3d_predictions, capsys):
    assert cli_evaluate(["--gt", str(thumos_json), "--pred", str(rc3d_predictions), "--subset", "Test",
                         "--tiou", "0.3:0.7:0.1", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["tiou_thresholds"] == [0.3, 0.4, 0.5, 0.6, 0.7]
    np.testing.assert_allclose(printed["mAP"], [0.5363, 0.4837, 0.4045, 0.2904, 0.1686], atol=5e-5)


def test_cli_official_activitynet_format(tmp_path, capsys):
    # Official layout: label names only (ids assigned by the annotations module), subset "validation" (the
    # default). Class "b" has two segments, "a" one. Detections: "a" exact (AP 1); "b": an FP ranked first, then
    # one TP -> precision 0, 1/2; recall 0, 1/2 -> AP 1/4. mAP = (1 + 1/4) / 2 = 5/8.
    gt = {"version": "VERSION 1.3", "taxonomy": [], "database": {
        "x1": {"subset": "validation", "duration": 60.0, "url": "", "annotations": [
            {"label": "b", "segment": [0.0, 10.0]}, {"label": "a", "segment": [20.0, 30.0]}]},
        "x2": {"subset": "validation", "duration": 60.0, "url": "", "annotations": [
            {"label": "b", "segment": [5.0, 6.0]}]},
        "x3": {"subset": "training", "duration": 60.0, "url": "", "annotations": [
            {"label": "c", "segment": [5.0, 6.0]}]}}}
    pred = {"version": "VERSION 1.3", "external_data": {}, "results": {
        "x1": [{"label": "a", "score": 0.5, "segment": [20.0, 30.0]},
               {"label": "b", "score": 0.9, "segment": [40.0, 50.0]},
               {"label": "b", "score": 0.8, "segment": [0.0, 10.0]}]}}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text(json.dumps(pred))
    assert cli_evaluate(["--gt", str(tmp_path / "gt.json"), "--pred", str(tmp_path / "pred.json"),
                         "--tiou", "0.5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mAP"] == [pytest.approx(5 / 8)]
