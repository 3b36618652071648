"""The C++ and CUDA kernels and the vectorised torch fallback against the sequential pure-torch reference: random
and adversarial inputs, every mode.

Required: identical kept indices (and labels), scores within 1e-6, segments equal (within float rounding after voting,
whose sums run in a different order on each backend).
"""
from __future__ import annotations

import json

import pytest
import torch

from tal_kit.ops import nms_packed, nms_videos
from tal_kit.ops.build import extension_for

SETTINGS = {
    "thumos_soft_multiclass": dict(iou_threshold=0.1, min_score=0.001, max_seg_num=200, method="soft", sigma=0.5,
                                   multiclass=True),
    "anet_soft_voting": dict(iou_threshold=0.1, min_score=0.001, max_seg_num=100, method="soft", sigma=0.75,
                             multiclass=False, voting_thresh=0.9),
    "linear_voting_score_iou": dict(iou_threshold=0.3, min_score=0.01, max_seg_num=50, method="soft",
                                    soft_kind="linear", multiclass=False, voting_thresh=0.7, voting_weight="score_iou"),
    "soft_many_drops": dict(iou_threshold=0.1, min_score=0.3, max_seg_num=None, method="soft", sigma=0.3,
                            multiclass=True),
    "hard_multiclass": dict(iou_threshold=0.5, min_score=0.05, max_seg_num=20, method="hard", multiclass=True),
    "hard_voting_uncapped": dict(iou_threshold=0.1, min_score=0.0, max_seg_num=None, method="hard", multiclass=False,
                                 voting_thresh=0.5),
    "none": dict(iou_threshold=0.5, min_score=0.0, max_seg_num=10, method="none"),
}


def make_case(kind: str, seed: int = 0):
    """(segments [N, 2], scores [N], labels [N]) for one adversarial or random pattern."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.rand(*shape, generator=gen)

    if kind == "empty":
        return torch.zeros(0, 2), torch.zeros(0), torch.zeros(0, dtype=torch.long)
    if kind == "single":
        return torch.tensor([[2.0, 5.0]]), torch.tensor([0.4]), torch.tensor([3])
    if kind == "random":
        n = 300
        start = rand(n) * 100
        return torch.stack([start, start + rand(n) * 10], 1), rand(n), torch.randint(0, 5, (n,), generator=gen)
    if kind == "ties":  # integer grid, four score levels: exact ties, duplicates and zero-length segments
        n = 250
        start = torch.randint(0, 20, (n,), generator=gen).float()
        length = torch.randint(0, 5, (n,), generator=gen).float()
        scores = torch.randint(1, 5, (n,), generator=gen).float() * 0.2
        return torch.stack([start, start + length], 1), scores, torch.randint(0, 3, (n,), generator=gen)
    if kind == "identical":
        n = 60
        scores = torch.where(rand(n) < 0.5, torch.tensor(0.5), rand(n))
        return torch.tensor([[1.0, 5.0]]).repeat(n, 1), scores, torch.zeros(n, dtype=torch.long)
    if kind == "zero_length":
        n = 120
        start = torch.randint(0, 30, (n,), generator=gen).float()
        length = torch.where(rand(n) < 0.5, torch.tensor(0.0), rand(n) * 3)
        return torch.stack([start, start + length], 1), rand(n), torch.randint(0, 2, (n,), generator=gen)
    if kind == "nested":  # one centre, growing lengths: long chains of overlaps
        n = 200
        half = rand(n) * 50
        return torch.stack([50 - half, 50 + half], 1), rand(n), torch.randint(0, 2, (n,), generator=gen)
    if kind == "large":  # thousands of candidates, THUMOS-like grid units
        n = 3000
        start = rand(n) * 2000
        return torch.stack([start, start + rand(n) * 64], 1), rand(n), torch.randint(0, 20, (n,), generator=gen)
    raise ValueError(kind)


CASES = ["empty", "single", "random", "ties", "identical", "zero_length", "nested", "large"]


# (backend, device) pairs checked against the sequential reference
UNDER_TEST = ["cpp", "cuda", "torch", "torch-on-gpu"]


def backend_under_test(name: str) -> str:
    if name in ("cuda", "torch-on-gpu") and not torch.cuda.is_available():
        pytest.skip("no GPU visible")
    if name in ("cpp", "cuda") and extension_for(name) is None:
        pytest.skip(f"the {name} backend is not built here")
    return name


def run(backend: str, videos, settings):
    device = "cuda" if backend in ("cuda", "torch-on-gpu") else "cpu"
    backend = "torch" if backend == "torch-on-gpu" else backend
    moved = [tuple(x.to(device) for x in video) for video in videos]
    return [tuple(x.cpu() for x in out) for out in nms_videos(moved, backend=backend, return_indices=True, **settings)]


def assert_same(got, expected, settings, where: str):
    for (segs, scores, labels, idx), (e_segs, e_scores, e_labels, e_idx) in zip(got, expected, strict=True):
        assert torch.equal(idx, e_idx), f"{where}: kept indices differ"
        assert torch.equal(labels, e_labels), f"{where}: labels differ"
        torch.testing.assert_close(scores, e_scores, atol=1e-6, rtol=0, msg=f"{where}: scores differ")
        if settings.get("voting_thresh", 0) > 0 and not settings.get("multiclass", True):
            torch.testing.assert_close(segs, e_segs, atol=1e-6, rtol=1e-6, msg=f"{where}: voted segments differ")
        else:
            assert torch.equal(segs, e_segs), f"{where}: segments differ"


@pytest.mark.parametrize("backend", UNDER_TEST)
@pytest.mark.parametrize("name", list(SETTINGS))
def test_kernels_match_reference_on_adversarial_inputs(backend, name):
    backend = backend_under_test(backend)
    settings = SETTINGS[name]
    for case in CASES:
        videos = [make_case(case)]
        assert_same(run(backend, videos, settings), run("reference", videos, settings), settings, f"{name}/{case}")


@pytest.mark.parametrize("backend", UNDER_TEST)
@pytest.mark.parametrize("name", ["thumos_soft_multiclass", "anet_soft_voting", "hard_multiclass"])
def test_batched_call_matches_reference_over_many_videos(backend, name):
    backend = backend_under_test(backend)
    settings = SETTINGS[name]
    kinds = ["random", "ties", "empty", "zero_length", "single", "identical", "nested"]
    videos = [make_case(kinds[v % len(kinds)], seed=v) for v in range(28)]
    batched = run(backend, videos, settings)
    assert_same(batched, run("reference", videos, settings), settings, name)
    # the per-video API is the same computation, one video at a time
    for video, result in zip(videos, batched):
        assert_same([result], run(backend, [video], settings), settings, f"{name} per video")


@pytest.mark.parametrize("backend", UNDER_TEST)
def test_packed_inputs_with_empty_videos_between(backend):
    backend = backend_under_test(backend)
    device = "cuda" if backend in ("cuda", "torch-on-gpu") else "cpu"
    backend = "torch" if backend == "torch-on-gpu" else backend
    segs, scores, labels = make_case("random")
    offsets = [0, 0, 100, 100, 100, 300, 300]
    settings = SETTINGS["thumos_soft_multiclass"]
    got = nms_packed(segs.to(device), scores.to(device), labels.to(device), offsets, backend=backend, **settings)
    expected = nms_packed(segs, scores, labels, offsets, backend="reference", **settings)
    assert got.counts.tolist() == expected.counts.tolist()
    assert expected.counts.tolist()[0] == 0 and expected.counts.tolist()[2] == 0 and expected.counts.tolist()[1] > 0
    assert torch.equal(got.indices.cpu(), expected.indices)
    assert got.segments.device.type == device


@pytest.mark.parametrize("backend", UNDER_TEST)
def test_real_rc3d_detections_with_many_ties(backend, rc3d_predictions):
    """R-C3D's THUMOS-14 test detections (30k, many tied scores) as candidates, in seconds."""
    backend = backend_under_test(backend)
    results = json.loads(rc3d_predictions.read_text())["results"]
    names = sorted({d["label"] for dets in results.values() for d in dets})
    videos = []
    for video in sorted(results)[:20]:
        dets = results[video]
        videos.append((torch.tensor([d["segment"] for d in dets], dtype=torch.float32).reshape(-1, 2),
                       torch.tensor([d["score"] for d in dets], dtype=torch.float32),
                       torch.tensor([names.index(d["label"]) for d in dets])))
    assert any(len(v[1].unique()) < len(v[1]) for v in videos), "expected tied scores in the R-C3D file"
    for name in ("thumos_soft_multiclass", "anet_soft_voting", "hard_multiclass"):
        settings = SETTINGS[name]
        assert_same(run(backend, videos, settings), run("reference", videos, settings), settings, f"rc3d/{name}")
