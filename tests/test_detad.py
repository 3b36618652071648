"""DETAD error analysis on hand-built cases whose outcomes are known, and ordinary AP against the oracle package."""
from __future__ import annotations

import numpy as np
import pytest

from tal_kit.data.annotations import VideoRecord
from tal_kit.detections import Detections
from tal_kit.evaluation.detad import (
    BACKGROUND, CONFUSION, DOUBLE_DETECTION, LOCALIZATION, TRUE_POSITIVE, WRONG_LABEL, _bin_index,
    classify_false_positives, false_positive_analysis, match_table, normalized_average_precision, pairwise_tiou,
    sensitivity_analysis,
)


def record(video_id, segments, labels, duration=100.0):
    return VideoRecord(video_id, "test", duration, 30.0, np.asarray(segments, np.float64).reshape(-1, 2),
                       np.asarray(labels, np.int64))


def table(rows):
    """rows: (video, start, end, label, score)."""
    v, s, e, lab, sc = zip(*rows)
    return Detections(np.array(v), np.array(s, float), np.array(e, float), np.array(lab), np.array(sc, float))


def test_pairwise_tiou_hand_values():
    a = np.array([[0.0, 10.0], [5.0, 5.0]])
    b = np.array([[5.0, 15.0], [20.0, 30.0], [5.0, 5.0]])
    expected = np.array([[5 / 15, 0.0, 0.0], [0.0, 0.0, 0.0]])  # zero-length vs zero-length: 0, not NaN
    np.testing.assert_allclose(pairwise_tiou(a, b), expected)


# One video: A = class 0 [10, 20], B = class 1 [30, 40]. Each detection's outcome at tIoU 0.5 is worked out by hand.
GT_VIDEO = record("v", [[10, 20], [30, 40]], [0, 1])
CASES = [  # (start, end, label, score, expected outcome, why)
    (10.0, 20.0, 0, 0.95, TRUE_POSITIVE, "tIoU 1 with A"),
    (11.0, 20.0, 0, 0.90, DOUBLE_DETECTION, "tIoU 0.9 with A, which the 0.95 detection took"),
    (30.0, 40.0, 0, 0.85, WRONG_LABEL, "tIoU 1 with B, a class-1 segment"),
    (10.0, 13.0, 0, 0.80, LOCALIZATION, "tIoU 3/10 = 0.3 with A"),
    (19.0, 20.0, 0, 0.75, LOCALIZATION, "tIoU exactly 0.1 with A (the lower bound is inclusive)"),
    (30.0, 33.0, 0, 0.70, CONFUSION, "tIoU 0.3 with B only"),
    (50.0, 60.0, 0, 0.65, BACKGROUND, "overlaps nothing"),
    (19.5, 29.0, 0, 0.60, BACKGROUND, "tIoU 0.5/19 < 0.1 with A"),
    (30.0, 40.5, 1, 0.55, TRUE_POSITIVE, "tIoU 10/10.5 with B"),
]


def test_each_false_positive_category_on_a_hand_built_video():
    cases = list(CASES)
    # The nearest segment decides, whatever its class. A detection of class 0 at [24, 40]: tIoU with A = 0, with B = 10/16 = 0.625 >= 0.5 -> wrong label.
    cases.append((24.0, 40.0, 0, 0.50, WRONG_LABEL, "tIoU 0.625 with B"))
    # Class 0 at [14, 31]: tIoU with A = 6/21 = 0.29, with B = 1/26 -> nearest is A, own class -> localization.
    cases.append((14.0, 31.0, 0, 0.45, LOCALIZATION, "tIoU 0.29 with A beats 0.04 with B"))
    # Class 1 at [12, 22]: tIoU 8/12 = 0.67 with A (class 0) -> wrong label even though B is its own class.
    cases.append((12.0, 22.0, 1, 0.40, WRONG_LABEL, "tIoU 0.67 with A, another class"))
    dets = table([("v", s, e, lab, sc) for s, e, lab, sc, _, _ in cases])
    matches = match_table([GT_VIDEO], dets, [0.5])
    got = matches.error_type[0]
    expected = np.array([c[4] for c in cases])
    for i, case in enumerate(cases):
        assert got[i] == expected[i], f"detection {i} ({case[5]}): got {got[i]}, expected {expected[i]}"
    # The true positives are matched to the right rows.
    assert matches.matched_gt[0, 0] == 0 and matches.matched_gt[0, 8] == 1


def test_videos_without_ground_truth_make_background_false_positives():
    gt = [record("a", [[0, 10]], [0]), record("empty", np.zeros((0, 2)), [])]
    dets = table([("a", 0, 10, 0, 0.9), ("empty", 0, 10, 0, 0.8), ("unknown", 0, 10, 0, 0.7)])
    got = match_table(gt, dets, [0.5]).error_type[0]
    assert got.tolist() == [TRUE_POSITIVE, BACKGROUND, BACKGROUND]


def test_classify_on_one_video_uses_only_the_flags_given():
    codes = classify_false_positives(np.array([[0.0, 10.0], [0.0, 10.0]]), np.array([0, 0]), np.array([True, False]),
                                     np.array([[0.0, 10.0]]), np.array([0]), tiou_threshold=0.5)
    assert codes.tolist() == [TRUE_POSITIVE, DOUBLE_DETECTION]


def test_stricter_threshold_turns_a_hit_into_a_localization_error():
    dets = table([("v", 10.0, 16.0, 0, 0.9)])  # tIoU 0.6 with A
    got = match_table([GT_VIDEO], dets, [0.5, 0.7]).error_type
    assert got[:, 0].tolist() == [TRUE_POSITIVE, LOCALIZATION]


def test_normalized_ap_hand_values():
    # TP, FP, TP with 2 positives: ordinary AP = 0.5 * 1 + 0.5 * 2/3.
    assert normalized_average_precision(np.array([True, False, True]), 2) == pytest.approx(0.5 + 1 / 3)
    # FP, TP with 1 positive and N̄ = 2: precision_N at the TP = 1·2 / (1·2 + 1) = 2/3 (ordinary AP would be 1/2).
    assert normalized_average_precision(np.array([False, True]), 1, 2.0) == pytest.approx(2 / 3)
    assert normalized_average_precision(np.array([False, True]), 1) == pytest.approx(0.5)
    assert normalized_average_precision(np.zeros(0, bool), 3) == 0.0


def test_false_positive_profile_groups_of_g_by_class():
    # Class 0 has 2 segments (G = 2), class 1 has 1 (G = 1), in two videos.
    gt = [record("a", [[0, 10], [20, 30]], [0, 0]), record("b", [[0, 10]], [1])]
    dets = table([
        ("a", 0, 10, 0, 0.9),    # class 0 rank 0: TP                     -> 1G
        ("a", 60, 70, 0, 0.8),   # class 0 rank 1: background             -> 1G
        ("a", 20, 30, 0, 0.7),   # class 0 rank 2: TP                     -> 2G
        ("a", 0, 9, 0, 0.6),     # class 0 rank 3: double detection       -> 2G
        ("a", 20, 23, 0, 0.5),   # class 0 rank 4: localization           -> 3G
        ("b", 0, 10, 1, 0.95),   # class 1 rank 0: TP                     -> 1G
        ("b", 0, 4, 1, 0.85),    # class 1 rank 1: localization (0.4)     -> 2G
    ])
    analysis = false_positive_analysis(gt, dets, [0.5], num_groups=3)
    assert analysis.group_names == ["1G", "2G", "3G"]
    assert analysis.group_sizes.tolist() == [3, 3, 1]
    expected = np.zeros((3, 6))
    expected[0, TRUE_POSITIVE], expected[0, BACKGROUND] = 2 / 3, 1 / 3
    expected[1, TRUE_POSITIVE], expected[1, DOUBLE_DETECTION], expected[1, LOCALIZATION] = 1 / 3, 1 / 3, 1 / 3
    expected[2, LOCALIZATION] = 1.0
    np.testing.assert_allclose(analysis.profile, expected)
    # mAP_N by hand: N̄ = 3 segments / 2 classes = 1.5.
    # class 0 (G=2): TP, FP, TP, FP, FP -> R 0.5 at P_N 1; R 1 at P_N 1.5/(1.5+1) = 0.6 -> AP_N 0.5 + 0.5*0.6 = 0.8
    # class 1 (G=1): TP, FP -> AP_N 1.
    assert analysis.average_map_n == pytest.approx(0.9)
    # Without the background error, class 0 is TP, TP, FP, FP -> AP_N 1: gain (1 + 1) / 2 - 0.9 = 0.1.
    assert analysis.map_n_gain["background"] == pytest.approx(0.1)
    # Double detection and localization errors rank below the last TP: removing them changes nothing.
    assert analysis.map_n_gain["double detection"] == pytest.approx(0.0)
    assert analysis.map_n_gain["localization"] == pytest.approx(0.0)


def test_only_the_top_ten_g_detections_per_class_are_analysed():
    gt = [record("a", [[0, 10]], [0])]
    dets = table([("a", 50 + i, 51 + i, 0, 1.0 - i / 100) for i in range(15)])
    analysis = false_positive_analysis(gt, dets, [0.5])
    assert analysis.group_sizes.tolist() == [1] * 10
    assert len(analysis.table.det_scores) == 10


def test_bins_are_closed_on_the_right_and_the_first_also_on_the_left():
    edges = np.array([0.0, 3.0, 6.0, np.inf])
    assert _bin_index(np.array([0.0, 3.0, 3.0001, 6.0, 100.0, -1.0]), edges).tolist() == [0, 0, 1, 1, 2, -1]


def test_sensitivity_to_length_hand_case():
    # One class: a 2 s segment (XS) and a 20 s segment (XL). N̄ = 2 segments / 1 class = 2.
    gt = [record("a", [[0, 2], [10, 30]], [0, 0])]
    dets = table([("a", 0, 2, 0, 0.9),      # TP on the XS segment
                  ("a", 60, 70, 0, 0.8),    # background: counts in every bin
                  ("a", 10, 30, 0, 0.7)])   # TP on the XL segment
    result = sensitivity_analysis(gt, dets, [0.5], characteristic="length", bins="thumos")
    # XS: TP (0.9) then FP -> AP_N 1. XL: FP then TP -> P_N = 1·2/(2+1) -> AP_N 2/3. Other bins empty.
    np.testing.assert_allclose(result.average_map_n, [1.0, np.nan, np.nan, np.nan, 2 / 3])
    assert result.num_segments.tolist() == [1, 0, 0, 0, 1]
    np.testing.assert_allclose(result.recall, [1.0, np.nan, np.nan, np.nan, 1.0])
    assert result.overall_average_map_n == pytest.approx(0.5 + 0.5 * 2 / 3)
    # Coverage: 2/100 -> XS (<= 0.02) and 20/100 -> XL (> 0.08) with THUMOS coverage bins.
    coverage = sensitivity_analysis(gt, dets, [0.5], characteristic="coverage", bins="thumos")
    assert coverage.num_segments.tolist() == [1, 0, 0, 0, 1]


def test_sensitivity_rejects_unknown_inputs():
    with pytest.raises(ValueError, match="characteristic"):
        sensitivity_analysis([GT_VIDEO], table([("v", 0, 1, 0, 0.5)]), characteristic="context")
    with pytest.raises(ValueError, match="bin set"):
        sensitivity_analysis([GT_VIDEO], table([("v", 0, 1, 0, 0.5)]), bins="epic")


def _random_split(seed: int, num_videos: int = 12, num_classes: int = 4):
    rng = np.random.default_rng(seed)
    gt, rows = [], []
    for v in range(num_videos):
        n = rng.integers(0, 6)
        starts = rng.uniform(0, 90, n)
        segs = np.stack([starts, starts + rng.uniform(0.5, 10, n)], 1)
        labels = rng.integers(0, num_classes, n)
        gt.append(record(f"v{v}", segs, labels))
        for (s, e), lab in zip(segs, labels):  # jittered hits, some relabelled
            for _ in range(rng.integers(0, 4)):
                d = rng.normal(0, 1.5, 2)
                rows.append((f"v{v}", s + d[0], max(e + d[1], s + d[0] + 0.1),
                             int(lab if rng.random() < 0.8 else rng.integers(0, num_classes)), rng.random()))
        for _ in range(rng.integers(0, 5)):  # background
            s = rng.uniform(0, 95)
            rows.append((f"v{v}", s, s + rng.uniform(0.5, 5), int(rng.integers(0, num_classes)), rng.random()))
    return gt, table(rows)


def test_ordinary_ap_from_the_match_table_equals_the_oracle():
    metrics = _oracle_metrics()
    pd = pytest.importorskip("pandas")

    gt, dets = _random_split(3)
    thresholds = np.array([0.3, 0.5, 0.7])
    matches = match_table(gt, dets, thresholds)
    gt_df = pd.DataFrame({"video-id": [gt[v].video_id for v in matches.gt_video], "t-start": matches.gt_segments[:, 0],
                          "t-end": matches.gt_segments[:, 1], "label": matches.gt_labels})
    pred_df = pd.DataFrame({"video-id": dets.video_ids, "t-start": dets.starts, "t-end": dets.ends,
                            "label": dets.labels, "score": dets.scores})
    for c in matches.classes:
        oracle = metrics.compute_average_precision_detection(
            gt_df[gt_df.label == c].reset_index(drop=True), pred_df[pred_df.label == c].reset_index(drop=True),
            tiou_thresholds=thresholds)
        members = np.flatnonzero(matches.det_labels == c)
        members = members[np.argsort(-matches.det_scores[members], kind="stable")]
        ours = [normalized_average_precision(matches.matched_gt[t, members] >= 0, int(np.sum(matches.gt_labels == c)))
                for t in range(len(thresholds))]
        np.testing.assert_allclose(ours, oracle, rtol=0, atol=1e-12, err_msg=f"class {c}")


def _oracle_metrics():
    from tests.oracle import import_module

    try:
        return import_module("utils.metrics")
    except ImportError as err:
        pytest.skip(f"oracle unavailable: {err}")
