"""Building the NMS extension: the CUDA kernels compile wherever nvcc and a CUDA torch exist (GPU or not), the cache
is keyed by versions and sources, and a machine without a compiler falls back to pure torch with one warning."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tal_kit.ops import build
from tal_kit.ops import cli_build_ext, cli_info_lines

REPO = Path(__file__).resolve().parents[1]


def test_cuda_extension_compiles():
    """CI has nvcc and a CUDA build of torch but no GPU: the .cu file must still compile (and keep compiling)."""
    possible, why = build.cuda_build_possible()
    if not possible:
        pytest.skip(f"cannot compile CUDA here: {why}")
    module, record = build.compile_extension("cuda")
    assert module.has_cuda()
    assert record["variant"] == "cuda" and Path(record["build_dir"]).is_dir()
    # the device code was assembled for each requested architecture (ptxas leaves its options in the fatbinary)
    library = next(Path(record["build_dir"]).glob("*.so")).read_bytes()
    for arch in build.cuda_arch_list().split(";"):
        sm = "sm_" + arch.replace("+PTX", "").replace(".", "")
        assert f"-arch {sm} ".encode() in library, f"no device code for {sm}"
    # and the module's CPU kernels work: 3 segments, hand-checked greedy NMS
    segs = torch.tensor([[0.0, 10.0], [1.0, 10.0], [20.0, 30.0]])
    rows, scores, kept_segs, counts = module.nms_packed(segs, torch.tensor([0.9, 0.8, 0.7]),
                                                        torch.zeros(3, dtype=torch.long), torch.tensor([0, 3]),
                                                        1, 0, 0.5, 0.5, 0.0, 10, False, 0.0, 0, 1)
    assert rows.tolist() == [0, 2] and counts.tolist() == [2] and kept_segs.tolist() == [[0.0, 10.0], [20.0, 30.0]]


def test_build_dir_is_keyed_by_versions_and_sources(monkeypatch, tmp_path):
    monkeypatch.setenv("TAL_KIT_EXT_DIR", str(tmp_path))
    folder = build.build_dir("cpu")
    assert folder.parent.parent == tmp_path
    assert torch.__version__.replace("+", "_") in folder.parent.name
    assert f"py{sys.version_info.major}.{sys.version_info.minor}" in folder.parent.name
    assert (f"cu{torch.version.cuda}" if torch.version.cuda else "cpu") in folder.parent.name
    assert folder.name.startswith("cpu-")
    key = build.build_key("cpu")
    monkeypatch.setattr(build, "CXX_FLAGS", build.CXX_FLAGS + ["-DSOMETHING_ELSE"])
    assert build.build_key("cpu") != key  # flags (like sources) are part of the key
    monkeypatch.delenv("TAL_KIT_EXT_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert build.cache_root() == tmp_path / "xdg" / "tal_kit" / "ext"


def test_default_arch_list_without_gpu(monkeypatch):
    monkeypatch.delenv("TORCH_CUDA_ARCH_LIST", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert build.cuda_arch_list() == build.DEFAULT_CUDA_ARCH_LIST == "8.0;9.0+PTX"
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "8.6")
    assert build.cuda_arch_list() == "8.6"


def test_no_compiler_means_one_warning_and_the_torch_fallback(tmp_path):
    script = textwrap.dedent("""
        import warnings, torch
        warnings.simplefilter("always")
        with warnings.catch_warnings(record=True) as caught:
            from tal_kit.ops import batched_nms, backend_info
            for _ in range(3):
                segs, scores, labels = batched_nms(torch.tensor([[0., 10.], [1., 10.], [20., 30.]]),
                                                   torch.tensor([.9, .8, .7]), None, iou_threshold=.5, min_score=0.,
                                                   max_seg_num=10, method="hard")
            info = backend_info()
        ours = [str(w.message) for w in caught if "tal_kit NMS" in str(w.message)]
        print(len(ours)); print(ours[0]); print(info["backend"]); print(segs.tolist())
    """)
    env = dict(os.environ, CXX=str(tmp_path / "no-such-compiler"), TAL_KIT_EXT_DIR=str(tmp_path / "ext"),
               PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    count, message, backend, segs = out.stdout.strip().splitlines()[-4:]
    assert count == "1"
    assert "no C++ compiler" in message and "pure-torch" in message
    assert backend == "torch"
    assert segs == "[[0.0, 10.0], [20.0, 30.0]]"


def test_cli_reports_the_backend_and_builds_ahead_of_time(capsys):
    if build._compiler_problem():
        pytest.skip("no compiler here")
    assert cli_build_ext([]) == 0  # the build the rest of the suite uses: cached after the first test that needs it
    printed = capsys.readouterr().out
    assert "cached build loaded" in printed or "compiled in" in printed
    lines = cli_info_lines()
    assert lines[0].startswith("NMS backend: ")
    assert any(line.startswith("NMS build: ") for line in lines)
    assert build.backend_info()["cpu_backend"] == "cpp"


def test_repeated_loads_reuse_one_build():
    """torch appends to the flag lists it is given; the cache key must not drift between loads in one process."""
    if build._compiler_problem():
        pytest.skip("no compiler here")
    variant = "cuda" if build.cuda_build_possible()[0] else "cpu"
    before = build.build_key(variant)
    _, first = build.compile_extension(variant)
    _, second = build.compile_extension(variant)
    assert build.build_key(variant) == before
    assert second["cached"] and second["build_dir"] == first["build_dir"]
