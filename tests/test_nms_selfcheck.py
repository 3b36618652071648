"""The CUDA NMS self-check (tal_kit/ops/selfcheck.py): the fixed batch separates right kernels from wrong ones, and
a wrong kernel stand-in on a "GPU" makes backend="auto" warn once and take the pure-torch path. No GPU is needed:
the device is only inspected, the kernels are stand-ins."""
from __future__ import annotations

import warnings

import pytest
import torch

from tal_kit.ops import nms as nms_module
from tal_kit.ops import selfcheck

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def fresh_cache():
    selfcheck.clear_cache()
    yield
    selfcheck.clear_cache()


def _wrong_kernel(segments, scores, labels, offsets, settings):
    """The vectorised torch path with one bug a kernel could have: the last video's scores are not decayed."""
    out = list(nms_module.packed_kernel("torch", CPU)(segments, scores, labels, offsets, settings))
    out[1] = out[1].clone()
    out[1][-1] += 0.01
    return tuple(out)


def test_the_fixed_batch_agrees_across_correct_backends():
    # the readable one-detection-at-a-time reference is the oracle of every backend (tests/test_nms_reference.py)
    torch_path, reference = nms_module.packed_kernel("torch", CPU), nms_module.packed_kernel("reference", CPU)
    assert selfcheck.first_difference(torch_path, reference) is None
    segments, scores, labels, offsets = selfcheck.fixed_batch()
    assert len(offsets) == 8 and offsets[-1] == len(scores) and len(set(labels.tolist())) == 3


def test_a_wrong_kernel_is_caught():
    problem = selfcheck.first_difference(_wrong_kernel, nms_module.packed_kernel("reference", CPU))
    assert problem is not None and "scores differ by up to 0.01" in problem


@pytest.fixture
def fake_gpu(monkeypatch):
    """backend="auto" on a cuda device finds a CUDA-capable extension whose kernels are stand-ins."""
    from tal_kit.ops import build

    monkeypatch.setattr(build, "extension_for", lambda backend: object())
    monkeypatch.setattr(build, "backend_info", lambda: {"build_dir": "/stand-in/build"})
    kernels = {"cuda": _wrong_kernel}
    real_kernel = nms_module.packed_kernel
    monkeypatch.setattr(nms_module, "packed_kernel",
                        lambda backend, device: kernels.get(backend) or real_kernel("torch", CPU))
    return kernels


def test_a_wrong_kernel_makes_auto_warn_once_and_use_torch(fake_gpu):
    device = torch.device("cuda", 0)
    with pytest.warns(RuntimeWarning, match=r"CUDA kernels disagree with the CPU path on cuda:0 .*pure-torch"):
        assert nms_module._resolve_backend("auto", device) == "torch"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # checked once per device and build: no second warning
        assert nms_module._resolve_backend("auto", device) == "torch"


def test_an_explicit_cuda_backend_is_not_redirected(fake_gpu):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert nms_module._resolve_backend("cuda", torch.device("cuda", 0)) == "cuda"


def test_agreeing_kernels_are_used_and_each_device_is_checked(fake_gpu):
    calls = []

    def counting_kernel(*args):
        calls.append(1)
        return nms_module.packed_kernel("reference", CPU)(*args)

    fake_gpu["cuda"] = counting_kernel
    assert nms_module._resolve_backend("auto", torch.device("cuda", 0)) == "cuda"
    checked = len(calls)
    assert nms_module._resolve_backend("auto", torch.device("cuda", 0)) == "cuda"
    assert len(calls) == checked == len(selfcheck.SETTINGS)  # cached for this device and build
    assert nms_module._resolve_backend("auto", torch.device("cuda", 1)) == "cuda"
    assert len(calls) == 2 * checked  # another device is checked on its own


def test_a_crashing_kernel_counts_as_a_mismatch(fake_gpu):
    def crashing(*args):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    fake_gpu["cuda"] = crashing
    with pytest.warns(RuntimeWarning, match="illegal memory access"):
        assert nms_module._resolve_backend("auto", torch.device("cuda", 0)) == "torch"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_the_real_kernels_pass_their_self_check():
    from tal_kit.ops.build import extension_for

    if extension_for("cuda") is None:
        pytest.skip("the CUDA kernels are not built here")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        cpu_backend = "cpp" if extension_for("cpp") is not None else "torch"
        gpu = torch.device("cuda", 0)
        assert selfcheck.cuda_kernels_ok(gpu, nms_module.packed_kernel("cuda", gpu),
                                         nms_module.packed_kernel(cpu_backend, CPU), build="gpu-test")
