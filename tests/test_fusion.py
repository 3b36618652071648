"""Score fusion with video-level class scores (SPEC §B.3): hand-worked cases, the real THUMOS-14 score file, and
ActionFormer's postprocess_results (PyPI oracle)."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from tal_kit.detections import Detections
from tal_kit.evaluate import FusionError, fuse_scores, load_class_scores


def test_hand_worked_fusion():
    # Video a: class scores [.1, .6, .3] -> top 2: class 1 (.6), class 2 (.3). Detections p = .9, .4 (num_pred 2
    # keeps both, the extra .1 row is dropped). Output, class-major: (1, sqrt(.6*.9)), (1, sqrt(.6*.4)),
    # (2, sqrt(.3*.9)), (2, sqrt(.3*.4)). Video b: scores [.5, .2, .5] -> tie: class 0 before class 2.
    d = Detections(np.array(["a", "a", "b", "a"]), np.array([0.0, 5.0, 1.0, 7.0]), np.array([1.0, 6.0, 2.0, 8.0]),
                   np.array([0, 0, 0, 0]), np.array([0.4, 0.1, 0.8, 0.9]))
    scores = {"a": np.array([0.1, 0.6, 0.3]), "b": [0.5, 0.2, 0.5], "unused": [1.0, 0.0, 0.0]}
    out = fuse_scores(d, scores, topk=2, num_pred=2)
    assert out.video_ids.tolist() == ["a"] * 4 + ["b"] * 2
    assert out.labels.tolist() == [1, 1, 2, 2, 0, 2]
    np.testing.assert_allclose(out.scores, np.sqrt([0.6 * 0.9, 0.6 * 0.4, 0.3 * 0.9, 0.3 * 0.4, 0.5 * 0.8,
                                                    0.5 * 0.8]))
    np.testing.assert_array_equal(out.starts, [7.0, 0.0, 7.0, 0.0, 1.0, 1.0])


def test_logits_get_a_softmax_and_nested_vectors_are_unwrapped():
    d = Detections(np.array(["a"]), np.array([0.0]), np.array([1.0]), np.array([0]), np.array([0.5]))
    logits = np.array([2.0, -1.0, 0.5])  # outside [0, 1] -> softmax, as InternVideo does
    probabilities = np.exp(logits) / np.exp(logits).sum()
    out = fuse_scores(d, {"a": [logits.tolist()]}, topk=1)
    assert out.labels.tolist() == [0]
    np.testing.assert_allclose(out.scores, [np.sqrt(probabilities[0] * 0.5)])


def test_missing_videos_are_listed():
    d = Detections(np.array(["a", "b", "c"]), np.zeros(3), np.ones(3), np.zeros(3, np.int64), np.ones(3))
    with pytest.raises(FusionError, match=r"scores.pkl: 2 video\(s\).*'a', 'c'"):
        fuse_scores(d, {"b": [0.5, 0.5]}, source="scores.pkl")


def test_load_class_scores_json_and_errors(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps({"results": {"a": [0.1, 0.9], "b": [[0.3, 0.7]]}}))
    scores = load_class_scores(tmp_path / "s.json")
    assert scores["a"].tolist() == [0.1, 0.9] and scores["b"].tolist() == [0.3, 0.7]
    (tmp_path / "bad.json").write_text(json.dumps({"a": [0.1, 0.9], "b": [0.1]}))
    with pytest.raises(FusionError, match="different lengths"):
        load_class_scores(tmp_path / "bad.json")
    (tmp_path / "nan.pkl").write_bytes(pickle.dumps({"a": np.array([np.nan, 1.0])}))
    with pytest.raises(FusionError, match=r"nan.pkl: video 'a'.*finite"):
        load_class_scores(tmp_path / "nan.pkl")
    with pytest.raises(FusionError, match="does not exist"):
        load_class_scores(tmp_path / "missing.pkl")
    (tmp_path / "s.txt").write_text("")
    with pytest.raises(FusionError, match=".json or .pkl"):
        load_class_scores(tmp_path / "s.txt")


def _rc3d_as_proposals(rc3d_predictions, names):
    d = Detections.from_results_json(rc3d_predictions, names)
    # distinct scores (rank order, ties in file order), so any sort agrees; labels dropped (class-agnostic)
    order = np.argsort(-d.scores, kind="stable")
    scores = np.empty(len(d))
    scores[order] = (len(d) - np.arange(len(d))) / len(d)
    return Detections(d.video_ids, d.starts, d.ends, np.zeros(len(d), np.int64), scores)


def test_real_thumos_scores(thumos_cls_scores, rc3d_predictions, thumos_json):
    from tal_kit.data.annotations import load_annotations
    with pytest.warns(UserWarning):
        names = load_annotations(thumos_json).label_names
    scores = load_class_scores(thumos_cls_scores)
    assert len(scores) == 212 and {len(v) for v in scores.values()} == {20}
    proposals = _rc3d_as_proposals(rc3d_predictions, names)
    # R-C3D has detections on video_test_0001292, which the score file (like the ground truth) lacks.
    with pytest.raises(FusionError, match="1 video.*'video_test_0001292'"):
        fuse_scores(proposals, scores, source=thumos_cls_scores)
    proposals = proposals.select(proposals.video_ids != "video_test_0001292")
    fused = fuse_scores(proposals, scores, topk=2, num_pred=100)
    # 155 of the vectors have a value above 1, so InternVideo's rule turns them into a softmax.
    out_of_range = [v for v, s in scores.items() if s.max() > 1 or s.min() < 0]
    assert len(out_of_range) == 155 and "video_test_0000211" in out_of_range
    assert "video_test_0000004" not in out_of_range
    # Independent check per video: top 2 classes of the vector, top 100 proposals, sqrt of products.
    for video in ["video_test_0000004", "video_test_0000211"]:
        vector = scores[video].astype(np.float64)
        if video in out_of_range:
            vector = np.exp(vector) / np.exp(vector).sum()
        top2 = np.argsort(vector)[::-1][:2]
        mine = proposals.for_video(video)
        best = np.sort(mine.scores)[::-1][:100]
        got = fused.for_video(video)
        assert got.labels.tolist() == [top2[0]] * len(best) + [top2[1]] * len(best)
        np.testing.assert_allclose(got.scores, np.sqrt(np.concatenate([vector[top2[0]] * best,
                                                                       vector[top2[1]] * best])), rtol=1e-15)


def test_matches_actionformer_postprocess_results(thumos_cls_scores, rc3d_predictions, thumos_json):
    try:
        from tests import oracle
        post = oracle.import_module("utils.postprocessing")
    except ImportError as err:
        pytest.skip(f"oracle unavailable: {err}")
    from tal_kit.data.annotations import load_annotations
    with pytest.warns(UserWarning):
        names = load_annotations(thumos_json).label_names
    proposals = _rc3d_as_proposals(rc3d_predictions, names)
    proposals = proposals.select(proposals.video_ids != "video_test_0001292")
    expected = post.postprocess_results({"video-id": proposals.video_ids.tolist(), "t-start": proposals.starts,
                                         "t-end": proposals.ends, "label": proposals.labels,
                                         "score": proposals.scores}, str(thumos_cls_scores), num_pred=100, topk=2)
    got = fuse_scores(proposals, load_class_scores(thumos_cls_scores), topk=2, num_pred=100,
                      softmax_out_of_range=False)  # ActionFormer uses the vectors as they are
    assert len(got) == len(expected["score"])
    # ActionFormer visits videos in sorted order; compare row sets sorted by (video, label, -score).
    ours = np.lexsort((-got.scores, got.labels, got.video_ids))
    theirs = np.lexsort((-expected["score"], expected["label"], np.array(expected["video-id"])))
    np.testing.assert_array_equal(got.video_ids[ours], np.array(expected["video-id"])[theirs])
    np.testing.assert_array_equal(got.labels[ours], expected["label"][theirs])
    np.testing.assert_allclose(got.scores[ours], expected["score"][theirs], rtol=1e-15)
    np.testing.assert_array_equal(got.starts[ours], expected["t-start"][theirs])


@pytest.mark.parametrize("softmax", [True, False])
def test_config_fusion_softmax_is_applied(softmax, thumos_cls_scores, rc3d_predictions, thumos_json):
    """test_cfg.fusion_softmax chooses the rule inference fuses with: InternVideo's softmax of out-of-range vectors
    (true) or the vectors as they are (false, ActionFormer); on the real score file the two give other scores."""
    from tal_kit.config import load_config
    from tal_kit.data.annotations import load_annotations
    from tal_kit.evaluation.protocol import to_detections

    with pytest.warns(UserWarning):
        names = load_annotations(thumos_json).label_names
    proposals = _rc3d_as_proposals(rc3d_predictions, names)
    proposals = proposals.select(proposals.video_ids != "video_test_0001292")
    outputs = [{"video_id": v, "segments": np.stack([p.starts, p.ends], axis=1), "scores": p.scores,
                "labels": p.labels} for v in proposals.videos() for p in [proposals.for_video(v)]]
    cfg = load_config("thumos14", [f"test_cfg.ext_score_file={thumos_cls_scores}",
                                   f"test_cfg.fusion_softmax={str(softmax).lower()}",
                                   f"test_cfg.fusion_num_pred=100"])
    got = to_detections(outputs, cfg, data_root=None)
    # Independent check on a video whose vector has values above 1 (a softmax changes it): top-2 classes of the
    # vector as the rule makes it, sqrt of class score x proposal score for the top 100 proposals.
    vector = load_class_scores(thumos_cls_scores)["video_test_0000211"].astype(np.float64)
    assert vector.max() > 1
    if softmax:
        vector = np.exp(vector) / np.exp(vector).sum()
    top2 = np.argsort(vector)[::-1][:2]
    best = np.sort(proposals.for_video("video_test_0000211").scores)[::-1][:100]
    mine = got.for_video("video_test_0000211")
    assert mine.labels.tolist() == [top2[0]] * len(best) + [top2[1]] * len(best)
    np.testing.assert_allclose(mine.scores, np.sqrt(np.concatenate([vector[top2[0]] * best, vector[top2[1]] * best])),
                               rtol=1e-12)
