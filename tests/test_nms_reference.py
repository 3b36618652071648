"""The NMS semantics (SPEC §E) on hand-worked cases, for every backend available here.

Expected values are computed by hand (float64 math below), never by the code under test.
"""
from __future__ import annotations

import math

import pytest
import torch

from tal_kit import ops
from tal_kit.ops import nms_packed, params_from_test_cfg
from tal_kit.ops.build import extension_for

BACKENDS = ["reference", "torch", "cpp", "cuda"]


@pytest.fixture(params=BACKENDS)
def backend(request):
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("no GPU visible")
    if request.param in ("cpp", "cuda") and extension_for(request.param) is None:
        pytest.skip(f"the {request.param} backend is not built here")
    return request.param


# The API, with inputs moved to the backend's device and results brought back to the CPU.
def _to(value, backend):
    return value.to("cuda" if backend == "cuda" else "cpu") if isinstance(value, torch.Tensor) else value


def _back(result):
    return tuple(x.cpu() for x in result) if isinstance(result, tuple) else result.cpu()


def batched_nms(segs, scores, labels, *, backend="auto", **settings):
    return _back(ops.batched_nms(_to(segs, backend), _to(scores, backend), _to(labels, backend), backend=backend,
                                 **settings))


def soft_nms(segs, scores, *, backend="auto", **settings):
    return _back(ops.soft_nms(_to(segs, backend), _to(scores, backend), backend=backend, **settings))


def hard_nms(segs, scores, *, backend="auto", **settings):
    return _back(ops.hard_nms(_to(segs, backend), _to(scores, backend), backend=backend, **settings))


def nms_videos(videos, *, backend="auto", **settings):
    moved = [tuple(_to(x, backend) for x in video) for video in videos]
    return [_back(result) for result in ops.nms_videos(moved, backend=backend, **settings)]


def t(values, dtype=torch.float32):
    return torch.tensor(values, dtype=dtype)


def eps_iou(a, b):
    """SPEC §E.2 IoU, each length + 1e-6."""
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / ((a[1] - a[0] + 1e-6) + (b[1] - b[0] + 1e-6) - inter)


def test_gaussian_soft_nms_decays_by_exp_iou_squared_over_sigma(backend):
    segs = t([[0.0, 10.0], [5.0, 15.0], [30.0, 40.0]])
    scores = t([0.9, 0.8, 0.7])
    kept, kept_scores = soft_nms(segs, scores, sigma=0.5, min_score=0.001, backend=backend)
    decayed = 0.8 * math.exp(-eps_iou([0, 10], [5, 15]) ** 2 / 0.5)  # 0.8 * exp(-(1/3)^2 / 0.5) = 0.6406
    assert kept.tolist() == [0, 2, 1]  # 0.64 falls below the untouched 0.7
    assert kept_scores.tolist() == pytest.approx([0.9, 0.7, decayed], abs=1e-6)


def test_linear_soft_nms_uses_iou_threshold(backend):
    segs = t([[0.0, 10.0], [5.0, 15.0], [9.0, 19.0]])
    scores = t([0.9, 0.8, 0.85])
    kept, kept_scores = soft_nms(segs, scores, soft_kind="linear", iou_threshold=0.2, min_score=0.0, backend=backend)
    # pick 0; seg 1 overlaps by IoU 1/3 >= 0.2 -> 0.8 * (2/3); seg 2 by 1/19 < 0.2 -> unchanged.
    # pick 2 (0.85); seg 1 vs seg 2: inter 6, IoU 6/14 -> 0.5333 * (1 - 3/7).
    first = 0.8 * (1 - eps_iou([0, 10], [5, 15]))
    assert kept.tolist() == [0, 2, 1]
    assert kept_scores.tolist() == pytest.approx([0.9, 0.85, first * (1 - eps_iou([9, 19], [5, 15]))], abs=1e-6)


def test_soft_nms_ties_follow_the_swap_perturbed_order(backend):
    # Step 0 picks #2 and swaps it with #0: the order becomes [2, 1, 0]; the tie 0.5/0.5 then goes to #1, the
    # earlier one in that order (a stable sort would say #0).
    segs = t([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    kept, _ = soft_nms(segs, t([0.5, 0.5, 0.9]), sigma=0.5, min_score=0.001, backend=backend)
    assert kept.tolist() == [2, 1, 0]


def test_soft_nms_drop_fills_the_hole_with_the_last_candidate(backend):
    # #1 (0.0005 < min_score) is dropped at step 0 and replaced by the last one, #3: order [3, 2], so the tie
    # between #2 and #3 goes to #3.
    segs = t([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0]])
    kept, kept_scores = soft_nms(segs, t([0.9, 0.0005, 0.5, 0.5]), sigma=0.5, min_score=0.001, backend=backend)
    assert kept.tolist() == [0, 3, 2]
    assert kept_scores.tolist() == pytest.approx([0.9, 0.5, 0.5])


def test_soft_nms_first_pick_is_never_tested_against_min_score(backend):
    kept, kept_scores = soft_nms(t([[0.0, 1.0], [5.0, 6.0]]), t([0.0004, 0.0002]), sigma=0.5, min_score=0.001,
                                 backend=backend)
    assert kept.tolist() == [0]
    assert kept_scores.tolist() == pytest.approx([0.0004])


def test_soft_nms_min_score_boundary_keeps_equal_scores(backend):
    # decayed < min_score drops; == min_score stays (no overlap: Gaussian weight exactly 1)
    kept, _ = soft_nms(t([[0.0, 1.0], [5.0, 6.0], [7.0, 8.0]]), t([0.9, 0.25, 0.2]), sigma=0.5, min_score=0.25,
                       backend=backend)
    assert kept.tolist() == [0, 1]


def test_soft_nms_max_seg_num_keeps_the_first_picks(backend):
    segs = t([[float(i), i + 0.5] for i in range(10)])
    scores = t([0.1 * i for i in range(10)])
    kept, _ = soft_nms(segs, scores, sigma=0.5, min_score=0.0, max_seg_num=3, backend=backend)
    assert kept.tolist() == [9, 8, 7]


def test_hard_nms_suppresses_iou_at_or_above_threshold(backend):
    # IoU([0,10],[0,5]) = 5 / 10.000001 just under 0.5 -> kept with threshold 0.5, suppressed with 0.4999
    segs = t([[0.0, 10.0], [0.0, 5.0], [20.0, 30.0], [21.0, 30.0]])
    scores = t([0.9, 0.8, 0.7, 0.95])
    assert hard_nms(segs, scores, iou_threshold=0.5, backend=backend).tolist() == [3, 0, 1]
    assert hard_nms(segs, scores, iou_threshold=0.4999, backend=backend).tolist() == [3, 0]


def test_hard_nms_min_score_is_strict_and_ties_are_stable(backend):
    segs = t([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0]])
    scores = t([0.5, 0.1, 0.5, 0.7])
    assert hard_nms(segs, scores, iou_threshold=0.5, min_score=0.1, backend=backend).tolist() == [3, 0, 2]


def test_zero_length_and_identical_segments(backend):
    # IoU of two identical zero-length segments is 0 / 2e-6 = 0: no suppression; identical proper segments: IoU 1.
    segs = t([[3.0, 3.0], [3.0, 3.0], [4.0, 6.0], [4.0, 6.0]])
    scores = t([0.6, 0.6, 0.9, 0.9])
    assert hard_nms(segs, scores, iou_threshold=0.5, backend=backend).tolist() == [2, 0, 1]
    # soft: picking #2 swaps it with #0 (order [2, 1, 0, 3]), so the 0.6 tie goes to #1; #3 decays by IoU ~1 with #2
    kept, kept_scores = soft_nms(segs, scores, sigma=0.5, min_score=0.001, backend=backend)
    assert kept.tolist() == [2, 1, 0, 3]
    decayed = 0.9 * math.exp(-eps_iou([4, 6], [4, 6]) ** 2 / 0.5)
    assert kept_scores.tolist() == pytest.approx([0.9, 0.6, 0.6, decayed], abs=1e-6)


def test_multiclass_runs_per_class_caps_per_class_then_merges(backend):
    segs = t([[0.0, 10.0], [0.0, 10.0], [0.0, 10.0], [50.0, 60.0], [0.0, 10.0]])
    scores = t([0.9, 0.8, 0.7, 0.6, 0.5])
    labels = torch.tensor([1, 0, 1, 1, 0])
    out_segs, out_scores, out_labels, idx = batched_nms(
        segs, scores, labels, iou_threshold=0.5, min_score=0.0, max_seg_num=2, method="hard", multiclass=True,
        backend=backend, return_indices=True)
    # class 0: #1 kept (#4 suppressed); class 1: #0 kept, #2 suppressed, #3 kept -> merge 0.9, 0.8, 0.6 -> top 2
    assert idx.tolist() == [0, 1]
    assert out_labels.tolist() == [1, 0]
    assert out_scores.tolist() == pytest.approx([0.9, 0.8])
    assert out_segs.tolist() == [[0.0, 10.0], [0.0, 10.0]]
    # class-agnostic: one run over everything
    *_, idx = batched_nms(segs, scores, labels, iou_threshold=0.5, min_score=0.0, max_seg_num=5, method="hard",
                          multiclass=False, backend=backend, return_indices=True)
    assert idx.tolist() == [0, 3]


def test_final_sort_ties_are_stable_by_class_then_pick(backend):
    segs = t([[0.0, 1.0], [5.0, 6.0], [10.0, 11.0]])
    scores = t([0.5, 0.5, 0.5])
    *_, idx = batched_nms(segs, scores, torch.tensor([2, 0, 1]), iou_threshold=0.5, min_score=0.0, max_seg_num=10,
                          backend=backend, return_indices=True)
    assert idx.tolist() == [1, 2, 0]


@pytest.mark.parametrize("weight, start", [("score", (0.9 * 0 + 0.6 * 1) / 1.5),
                                           ("score_iou", (0.9 * 0 + 0.6 * 0.9 * 1) / (0.9 + 0.6 * 0.9))])
def test_segment_voting_averages_neighbours(backend, weight, start):
    # kept: [0, 10]; neighbours with plain IoU >= 0.8: itself (IoU 1) and [1, 10] (IoU 0.9); [0, 20] has IoU 0.5
    segs = t([[0.0, 10.0], [1.0, 10.0], [0.0, 20.0]])
    scores = t([0.9, 0.6, 0.5])
    out_segs, out_scores, _ = batched_nms(segs, scores, None, iou_threshold=0.5, min_score=0.0, max_seg_num=1,
                                          method="hard", multiclass=False, voting_thresh=0.8, voting_weight=weight,
                                          backend=backend)
    assert out_segs.tolist() == [pytest.approx([start, 10.0], abs=1e-6)]
    assert out_scores.tolist() == pytest.approx([0.9])  # voting leaves scores alone


def test_voting_with_zero_length_segments_stays_finite(backend):
    segs = t([[3.0, 3.0], [3.0, 3.0], [5.0, 5.0]])
    out_segs, _, _ = batched_nms(segs, t([0.9, 0.8, 0.7]), None, iou_threshold=0.5, min_score=0.0, max_seg_num=3,
                                 method="hard", multiclass=False, voting_thresh=0.5, backend=backend)
    assert out_segs.tolist() == [[3.0, 3.0], [3.0, 3.0], [5.0, 5.0]]


def test_voting_is_off_in_multiclass_mode(backend):
    segs = t([[0.0, 10.0], [1.0, 10.0]])
    out_segs, _, _ = batched_nms(segs, t([0.9, 0.6]), torch.tensor([0, 1]), iou_threshold=0.5, min_score=0.0,
                                 max_seg_num=5, method="soft", multiclass=True, voting_thresh=0.5, backend=backend)
    assert out_segs.tolist() == [[0.0, 10.0], [1.0, 10.0]]


def test_method_none_keeps_everything_sorted(backend):
    segs = t([[0.0, 10.0], [0.0, 10.0], [0.0, 10.0]])
    *_, idx = batched_nms(segs, t([0.1, 0.3, 0.2]), None, iou_threshold=0.5, min_score=0.5, max_seg_num=1,
                          method="none", backend=backend, return_indices=True)
    assert idx.tolist() == [1, 2, 0]


def test_empty_and_single_candidate(backend):
    out = batched_nms(torch.zeros(0, 2), torch.zeros(0), torch.zeros(0, dtype=torch.long), iou_threshold=0.5,
                      min_score=0.001, max_seg_num=200, backend=backend)
    assert [tuple(x.shape) for x in out] == [(0, 2), (0,), (0,)]
    assert [x.dtype for x in out] == [torch.float32, torch.float32, torch.int64]
    segs, scores, labels = batched_nms(t([[1.0, 2.0]]), t([0.3]), torch.tensor([4]), iou_threshold=0.5,
                                       min_score=0.001, max_seg_num=200, backend=backend)
    assert segs.tolist() == [[1.0, 2.0]] and scores.tolist() == pytest.approx([0.3]) and labels.tolist() == [4]


def test_half_precision_inputs_are_computed_in_float32(backend):
    segs = t([[0.0, 10.0], [5.0, 15.0], [30.0, 40.0]])
    scores = t([0.875, 0.75, 0.625])  # exactly representable in float16 and bfloat16
    expected = soft_nms(segs, scores, sigma=0.5, min_score=0.001, backend=backend)
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        kept, kept_scores = soft_nms(segs.to(dtype), scores.to(dtype), sigma=0.5, min_score=0.001, backend=backend)
        assert kept_scores.dtype == torch.float32
        assert torch.equal(kept, expected[0]) and torch.equal(kept_scores, expected[1])


def test_nms_videos_equals_per_video_calls(backend):
    gen = torch.Generator().manual_seed(3)
    videos = []
    for n in (0, 1, 7, 40):
        start = torch.rand(n, generator=gen) * 50
        videos.append((torch.stack([start, start + torch.rand(n, generator=gen) * 8], 1), torch.rand(n, generator=gen),
                       torch.randint(0, 3, (n,), generator=gen)))
    settings = dict(iou_threshold=0.3, min_score=0.01, max_seg_num=5, sigma=0.5, multiclass=True, backend=backend)
    together = nms_videos(videos, return_indices=True, **settings)
    for video, result in zip(videos, together):
        alone = batched_nms(*video, return_indices=True, **settings)
        for a, b in zip(alone, result):
            assert torch.equal(a, b)


def test_bad_inputs_name_the_video_and_field():
    good = (t([[0.0, 1.0]]), t([0.5]), torch.tensor([0]))
    bad_end = (t([[0.0, 1.0], [3.0, 2.0]]), t([0.5, 0.4]), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match=r"video 'v2'.*candidate 1.*start <= end"):
        nms_videos([good, bad_end], video_ids=["v1", "v2"], iou_threshold=0.5, min_score=0.0, max_seg_num=5)
    with pytest.raises(ValueError, match="candidate 0"):
        batched_nms(t([[0.0, 1.0]]), t([float("nan")]), None, iou_threshold=0.5, min_score=0.0, max_seg_num=5)
    with pytest.raises(ValueError, match=r"segments: expected shape \[N, 2\]"):
        batched_nms(t([0.0, 1.0]), t([0.5, 0.5]), None, iou_threshold=0.5, min_score=0.0, max_seg_num=5)
    with pytest.raises(ValueError, match="scores: expected shape"):
        batched_nms(t([[0.0, 1.0]]), t([0.5, 0.5]), None, iou_threshold=0.5, min_score=0.0, max_seg_num=5)
    with pytest.raises(ValueError, match="method='greedy'"):
        batched_nms(*good, iou_threshold=0.5, min_score=0.0, max_seg_num=5, method="greedy")
    with pytest.raises(ValueError, match="max_seg_num=0"):
        batched_nms(*good, iou_threshold=0.5, min_score=0.0, max_seg_num=0)
    with pytest.raises(ValueError, match="video_offsets"):
        nms_packed(t([[0.0, 1.0]]), t([0.5]), None, [0, 2], iou_threshold=0.5, min_score=0.0, max_seg_num=5)


def test_params_from_test_cfg_matches_the_config_names():
    from types import SimpleNamespace

    cfg = SimpleNamespace(iou_threshold=0.1, min_score=0.001, max_seg_num=100, nms_method="soft",
                          soft_nms_kind="gaussian", nms_sigma=0.75, multiclass_nms=False, voting_thresh=0.9,
                          voting_weight="score")
    assert params_from_test_cfg(cfg) == dict(iou_threshold=0.1, min_score=0.001, max_seg_num=100, method="soft",
                                             soft_kind="gaussian", sigma=0.75, multiclass=False, voting_thresh=0.9,
                                             voting_weight="score")
