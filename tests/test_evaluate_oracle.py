"""The vectorised evaluator against independent references: the literal transcription of the official algorithm
(tests/official_anet_eval.py) on random and real inputs, and ActionFormer's ANETdetection (PyPI oracle)."""
from __future__ import annotations

import numpy as np
import pytest

from tal_kit.data.annotations import VideoRecord, load_annotations
from tal_kit.detections import Detections
from tal_kit.evaluate import evaluate_detections, match_detections
from tests import official_anet_eval as official

THUMOS_TIOU = [0.3, 0.4, 0.5, 0.6, 0.7]
ANET_TIOU = np.linspace(0.5, 0.95, 10)


def _records(gt_rows: list[tuple], videos: list[str]) -> list[VideoRecord]:
    """VideoRecords from (video, start, end, label) rows, listing every video in ``videos``."""
    out = []
    for v in videos:
        rows = [r for r in gt_rows if r[0] == v]
        out.append(VideoRecord(v, "test", 100.0, 30.0, np.array([[r[1], r[2]] for r in rows]).reshape(-1, 2),
                               np.array([r[3] for r in rows], dtype=np.int64)))
    return out


def _gt_rows(records: list[VideoRecord]) -> list[tuple]:
    """(video, start, end, label, index in the video) rows in annotation order."""
    return [(r.video_id, float(s), float(e), int(lab), i)
            for r in records for i, ((s, e), lab) in enumerate(zip(r.segments.tolist(), r.labels.tolist()))]


def _pred_rows(dets: Detections) -> list[tuple]:
    """(video, start, end, label, score, row) in table order."""
    return [(v, s, e, lab, sc, i) for i, (v, s, e, lab, sc) in enumerate(zip(
        dets.video_ids.tolist(), dets.starts.tolist(), dets.ends.tolist(), dets.labels.tolist(),
        dets.scores.tolist()))]


def _random_case(seed: int, num_videos: int = 12, num_classes: int = 4, num_gt: int = 50, num_dets: int = 250):
    """Coarse random segments on a 0.5 s lattice, so tIoU ties, score ties, zero-length segments (ground truth and
    detections, including zero-length on zero-length), duplicate ground truth, videos without ground truth and
    classes without detections all occur."""
    rng = np.random.default_rng(seed)
    videos = [f"v{i:02d}" for i in range(num_videos)]
    gt_videos = videos[: num_videos - 2]  # the last two videos have detections but no ground truth at all
    gt_rows = []
    for _ in range(num_gt):
        start = rng.integers(0, 40) / 2
        length = rng.choice([0.0, 0.5, 1.0, 2.0, 4.0, 8.0])
        gt_rows.append((str(rng.choice(gt_videos)), start, start + length, int(rng.integers(0, num_classes - 1))))
    for row in gt_rows[:5]:  # exact and near duplicates
        gt_rows.append(row)
        gt_rows.append((row[0], row[1] + 0.0005, row[2] + 0.0009, row[3]))
    records = _records(gt_rows, gt_videos + ["empty_video"])
    starts = rng.integers(0, 40, num_dets) / 2
    lengths = rng.choice([0.0, 0.5, 1.0, 2.0, 4.0, 8.0], num_dets)
    scores = rng.integers(1, 30, num_dets) / 30  # many ties
    dets = Detections(np.array(rng.choice(videos, num_dets)), starts, starts + lengths,
                      rng.integers(0, num_classes - 1, num_dets), scores)
    return records, dets


def _assert_same_as_official(records, dets, thresholds, dedup: str, top_k=(1, 5)) -> None:
    ref = official.evaluate(_gt_rows(records), _pred_rows(dets), list(thresholds), dedup=dedup, top_k=top_k)
    got = evaluate_detections(records, dets, thresholds, dedup_gt=dedup, top_k=top_k)
    assert sorted(got.class_ids.tolist()) == sorted(ref["classes"])
    for c in ref["classes"]:
        np.testing.assert_allclose(got.ap[c], ref["ap"][c], rtol=0, atol=1e-12, err_msg=f"class {c}")
        np.testing.assert_allclose(got.recall[c], ref["recall"][c], rtol=0, atol=1e-12, err_msg=f"class {c}")
    np.testing.assert_allclose(got.mAP, ref["mAP"], rtol=0, atol=1e-12)
    assert got.average_mAP == pytest.approx(ref["average_mAP"], abs=1e-12)
    assert got.num_gt.sum() == len(ref["gt_rows"])

    # The matching itself: every detection's matched segment at every threshold.
    matches = match_detections(records, dets, thresholds, dedup_gt=dedup)
    expected = np.full((len(dets), len(thresholds)), -1)
    preds = _pred_rows(dets)
    for c in ref["classes"]:
        _, matched = official.average_precision_one_class([r for r in ref["gt_rows"] if r[3] == c],
                                                          [p for p in preds if p[3] == c], list(thresholds))
        class_preds = [p for p in preds if p[3] == c]
        ranked = [class_preds[i] for i in official.descending([p[4] for p in class_preds])]
        class_gt = [r for r in ref["gt_rows"] if r[3] == c]
        for t in range(len(thresholds)):
            for idx, j in enumerate(matched[t]):
                if j >= 0:
                    expected[ranked[idx][5], t] = class_gt[j][4]
    np.testing.assert_array_equal(matches.gt_index, expected)
    np.testing.assert_array_equal(matches.is_tp, expected >= 0)


@pytest.mark.parametrize("dedup", ["none", "duplicates", "actionformer"])
@pytest.mark.parametrize("seed", range(6))
def test_random_inputs_match_official_transcription(seed, dedup):
    records, dets = _random_case(seed)
    _assert_same_as_official(records, dets, [0.0, 0.1, 0.3, 0.5, 0.7, 0.95, 1.0], dedup)


def test_random_dense_groups_match_official_transcription():
    # Few videos and one class: long chains of competing detections (many matching rounds).
    records, dets = _random_case(99, num_videos=4, num_classes=2, num_gt=80, num_dets=600)
    _assert_same_as_official(records, dets, ANET_TIOU, "none", top_k=(1, 2, 5))


def test_real_thumos_rc3d_matches_official_transcription(thumos_json, rc3d_predictions):
    db = load_annotations(thumos_json)
    records = db.select(["Test"])
    dets = Detections.from_results_json(rc3d_predictions, db.label_names)
    _assert_same_as_official(records, dets, THUMOS_TIOU, "none")


def test_real_anet_validation_matches_official_transcription(anet_json):
    """The real ActivityNet validation ground truth (with its zero-length segments) and synthetic detections."""
    db = load_annotations(anet_json)
    records = db.select(["validation"])[:1500]
    rng = np.random.default_rng(5)
    vids, starts, ends, labels = [], [], [], []
    for r in records:  # jittered copies of the truth plus random segments, a few zero-length
        for (s, e), lab in zip(r.segments, r.labels):
            for _ in range(2):
                jitter = rng.normal(0, 0.1 * (e - s) + 0.5, 2)
                vids.append(r.video_id)
                starts.append(max(0.0, s + jitter[0]))
                ends.append(max(starts[-1], e + jitter[1]))
                labels.append(lab if rng.random() < 0.8 else rng.integers(0, db.num_classes))
        for _ in range(2):
            s = rng.uniform(0, r.duration)
            vids.append(r.video_id)
            starts.append(s)
            ends.append(s if rng.random() < 0.1 else min(r.duration, s + rng.uniform(0, 60)))
            labels.append(int(r.labels[0]) if len(r.labels) else 0)
    dets = Detections(np.array(vids), np.array(starts), np.array(ends), np.array(labels),
                      np.round(rng.random(len(vids)), 2))  # rounded: ties
    present = np.isin(dets.labels, np.unique(np.concatenate([r.labels for r in records])))
    _assert_same_as_official(records, dets.select(present), ANET_TIOU, "none")


def _rank_scores(dets: Detections) -> Detections:
    """Replace scores by distinct values in the tal_kit rank order (score desc, ties in table order), so that any
    sort -- ANETdetection's unstable argsort included -- sees the same order."""
    order = np.argsort(-dets.scores, kind="stable")
    scores = np.empty(len(dets))
    scores[order] = (len(dets) - np.arange(len(dets))) / len(dets)
    return Detections(dets.video_ids, dets.starts, dets.ends, dets.labels, scores)


@pytest.mark.parametrize("tie_broken", [True, False])
def test_real_thumos_rc3d_matches_actionformer_anetdetection(thumos_json, rc3d_predictions, tie_broken):
    """ActionFormer's ANETdetection (PyPI actionformer 1.5.0 = upstream HEAD: drops duplicate and < 1e-3 s ground
    truth, so dedup_gt=True) on the real R-C3D detections. With tie-broken scores the orders agree by construction;
    on the raw scores the file's 8 within-class ties of two happen not to change any AP, so it agrees too."""
    try:
        metrics = pytest.importorskip("tests.oracle").import_module("utils.metrics")
    except ImportError as err:
        pytest.skip(f"oracle unavailable: {err}")
    pd = pytest.importorskip("pandas")
    db = load_annotations(thumos_json)
    dets = Detections.from_results_json(rc3d_predictions, db.label_names)
    if tie_broken:
        dets = _rank_scores(dets)
    ours = evaluate_detections(db.select(["Test"]), dets, THUMOS_TIOU, label_names=db.label_names, dedup_gt=True)
    oracle = metrics.ANETdetection(str(thumos_json), "test", tiou_thresholds=np.array(THUMOS_TIOU), num_workers=1)
    frame = pd.DataFrame({"video-id": dets.video_ids, "t-start": dets.starts, "t-end": dets.ends,
                          "label": dets.labels, "score": dets.scores})
    mAP, average_mAP, recall = oracle.evaluate(frame, verbose=False)
    np.testing.assert_allclose(ours.ap, oracle.ap.T, rtol=0, atol=1e-12)  # all 20 classes have ground truth
    np.testing.assert_allclose(ours.mAP, mAP, rtol=0, atol=1e-12)
    assert ours.average_mAP == pytest.approx(average_mAP, abs=1e-12)
    np.testing.assert_allclose(np.stack([ours.recall_at_k[1], ours.recall_at_k[5]], axis=1), recall, atol=1e-12)
    # The published-style numbers for this file (percent): 53.63 48.37 40.45 29.04 16.86, average 37.67.
    np.testing.assert_allclose(100 * ours.mAP, [53.63, 48.37, 40.45, 29.04, 16.86], atol=0.005)
