"""tal_kit's NMS against ActionFormer's own: ``nms_cpu.cpp`` from the ``actionformer==1.5.0`` sdist, compiled here.

The oracle package follows upstream HEAD: its ``nms.py`` weights voting by score x IoU (the fork by score alone), so
voting is compared with voting_weight="score_iou"; the fork's score weights are covered by the hand-worked tests.
Hard NMS is compared on tie-free scores (the oracle orders ties by ATen's unstable sort; tal_kit by a stable one).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests import oracle
from tal_kit.ops import batched_nms, hard_nms, soft_nms
from tal_kit.ops.build import extension_for
from tests.test_nms_backends import make_case


def build_oracle_nms(verbose: bool = False):
    """Compile the oracle's nms_cpu.cpp (module name ``nms_1d_cpu``, as its nms.py imports it); None if impossible.

    The build is cached under .cache/oracle (ninja recompiles only when the source or torch changes).
    """
    src = oracle.source_dir()
    if src is None:
        return None
    source = Path(src) / "actionformer" / "utils" / "csrc" / "nms_cpu.cpp"
    if not source.exists():
        return None
    from torch.utils.cpp_extension import load

    folder = oracle.CACHE_DIR / f"nms_1d_cpu-torch{torch.__version__.replace('+', '_')}"
    folder.mkdir(parents=True, exist_ok=True)
    from tal_kit.ops.build import _compiler_problem

    if _compiler_problem():
        return None
    return load("nms_1d_cpu", [str(source)], build_directory=str(folder), extra_cflags=["-O3"], verbose=verbose)


@pytest.fixture(scope="module")
def oracle_cpp():
    try:
        module = build_oracle_nms()
    except Exception as error:  # a compiler failure: the parity tests cannot run here
        pytest.skip(f"cannot compile the oracle nms_cpu.cpp: {str(error).splitlines()[0]}")
    if module is None:
        pytest.skip("actionformer==1.5.0 (oracle) or a C++ compiler is unavailable")
    return module


@pytest.fixture(scope="module")
def oracle_nms_py(oracle_cpp):
    """The oracle's nms.py, wired to the compiled nms_cpu.cpp."""
    try:
        module = oracle.import_module("utils.nms")
    except ImportError as error:
        pytest.skip(f"oracle nms.py unavailable: {error}")
    module.nms_1d_cpu = oracle_cpp
    module.HAS_CPP_NMS = True
    return module


def available_backends():
    return ["reference", "torch"] + (["cpp"] if extension_for("cpp") is not None else [])


def oracle_soft(oracle_cpp, segs, scores, kind, iou_threshold, sigma, min_score):
    dets = torch.empty(len(scores), 3)
    method = {"gaussian": 2, "linear": 1}[kind]
    inds = oracle_cpp.softnms(segs.contiguous(), scores.contiguous(), dets, iou_threshold=iou_threshold, sigma=sigma,
                              min_score=min_score, method=method)
    return inds, dets[:len(inds), 2]


@pytest.mark.parametrize("case", ["random", "ties", "identical", "zero_length", "nested", "large", "single"])
@pytest.mark.parametrize("kind, iou_threshold, sigma, min_score",
                         [("gaussian", 0.1, 0.5, 0.001), ("gaussian", 0.1, 0.75, 0.2), ("linear", 0.3, 0.5, 0.01)])
def test_soft_nms_matches_actionformer_cpp(oracle_cpp, case, kind, iou_threshold, sigma, min_score):
    """The selection sort is deterministic, ties included, so indices must agree on adversarial inputs too."""
    segs, scores, _ = make_case(case, seed=11)
    expected_inds, expected_scores = oracle_soft(oracle_cpp, segs, scores, kind, iou_threshold, sigma, min_score)
    for backend in available_backends():
        for cap in (None, 7):
            inds, kept_scores = soft_nms(segs, scores, sigma=sigma, min_score=min_score, soft_kind=kind,
                                         iou_threshold=iou_threshold, max_seg_num=cap, backend=backend)
            k = len(expected_inds) if cap is None else min(cap, len(expected_inds))
            assert torch.equal(inds, expected_inds[:k]), f"{backend}, cap {cap}"
            torch.testing.assert_close(kept_scores, expected_scores[:k], atol=1e-6, rtol=0)


@pytest.mark.parametrize("case", ["random", "nested", "large", "zero_length"])
@pytest.mark.parametrize("iou_threshold", [0.1, 0.5, 0.9])
def test_hard_nms_matches_actionformer_cpp_on_tie_free_scores(oracle_cpp, case, iou_threshold):
    segs, _, _ = make_case(case, seed=5)
    scores = torch.randperm(len(segs), generator=torch.Generator().manual_seed(1)).float() / max(len(segs), 1)
    expected = oracle_cpp.nms(segs.contiguous(), scores.contiguous(), iou_threshold=iou_threshold)
    for backend in available_backends():
        assert torch.equal(hard_nms(segs, scores, iou_threshold=iou_threshold, backend=backend), expected), backend


def tie_free_videos(count: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    videos = []
    for _ in range(count):
        n = int(torch.randint(1, 400, (1,), generator=gen))
        start = torch.rand(n, generator=gen) * 300
        segs = torch.stack([start, start + 0.5 + torch.rand(n, generator=gen) * 20], 1)
        videos.append((segs, torch.rand(n, generator=gen) * 0.9 + 0.05, torch.randint(0, 20, (n,), generator=gen)))
    return videos


@pytest.mark.parametrize("setting", [
    dict(use_soft_nms=True, multiclass=True, sigma=0.5, voting_thresh=0.7, iou_threshold=0.1, min_score=0.001,
         max_seg_num=200),  # THUMOS
    dict(use_soft_nms=True, multiclass=False, sigma=0.75, voting_thresh=0.9, iou_threshold=0.1, min_score=0.001,
         max_seg_num=100),  # ActivityNet (voting)
    dict(use_soft_nms=False, multiclass=True, sigma=0.5, voting_thresh=0.0, iou_threshold=0.5, min_score=0.05,
         max_seg_num=30),
    dict(use_soft_nms=False, multiclass=False, sigma=0.5, voting_thresh=0.5, iou_threshold=0.3, min_score=0.0,
         max_seg_num=50),
])
def test_batched_nms_matches_actionformer(oracle_nms_py, setting):
    ours = dict(iou_threshold=setting["iou_threshold"], min_score=setting["min_score"],
                max_seg_num=setting["max_seg_num"], method="soft" if setting["use_soft_nms"] else "hard",
                sigma=setting["sigma"], multiclass=setting["multiclass"], voting_thresh=setting["voting_thresh"],
                voting_weight="score_iou")
    for segs, scores, labels in tie_free_videos(12, seed=len(json.dumps(setting))):
        e_segs, e_scores, e_labels = oracle_nms_py.batched_nms(segs, scores, labels, setting["iou_threshold"],
                                                               setting["min_score"], setting["max_seg_num"],
                                                               use_soft_nms=setting["use_soft_nms"],
                                                               multiclass=setting["multiclass"],
                                                               sigma=setting["sigma"],
                                                               voting_thresh=setting["voting_thresh"])
        for backend in available_backends():
            got_segs, got_scores, got_labels = batched_nms(segs, scores, labels, backend=backend, **ours)
            assert torch.equal(got_labels, e_labels), backend
            torch.testing.assert_close(got_scores, e_scores, atol=1e-6, rtol=0)
            # the oracle's voting normalises and multiplies in float32; tal_kit sums in float64
            torch.testing.assert_close(got_segs, e_segs, atol=1e-4, rtol=1e-5)


def test_real_rc3d_detections_match_actionformer_soft_nms(oracle_cpp, rc3d_predictions):
    """Per (video, class) Gaussian soft-NMS of R-C3D's THUMOS-14 detections (many tied scores), as THUMOS runs it."""
    results = json.loads(rc3d_predictions.read_text())["results"]
    checked = 0
    for video in sorted(results)[::10]:
        by_label: dict[str, list] = {}
        for det in results[video]:
            by_label.setdefault(det["label"], []).append(det)
        for dets in by_label.values():
            segs = torch.tensor([d["segment"] for d in dets], dtype=torch.float32).reshape(-1, 2)
            scores = torch.tensor([d["score"] for d in dets], dtype=torch.float32)
            expected_inds, expected_scores = oracle_soft(oracle_cpp, segs, scores, "gaussian", 0.1, 0.5, 0.001)
            for backend in available_backends():
                inds, kept_scores = soft_nms(segs, scores, sigma=0.5, min_score=0.001, backend=backend)
                assert torch.equal(inds, expected_inds), f"{video}: {backend}"
                torch.testing.assert_close(kept_scores, expected_scores, atol=1e-6, rtol=0)
            checked += 1
    assert checked > 20
