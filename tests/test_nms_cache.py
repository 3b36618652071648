"""A cached NMS build is checked before it is loaded (issue 15 item 2): a truncated .so used to kill `info`, `infer`
and per-epoch evaluation with SIGBUS (exit 135, no message). The suite's own cached build is copied into a temporary
cache and damaged there; loading runs in a subprocess, since a bad library kills the whole process."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from tal_kit.ops import build

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def good_build() -> Path:
    """The build load_extension uses here (compiled once; cached afterwards for the whole suite)."""
    if build._compiler_problem():
        pytest.skip("no compiler here")
    variant = "cuda" if build.cuda_build_possible()[0] else "cpu"
    _, record = build.compile_extension(variant)
    return Path(record["build_dir"])


def copy_cache(good: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A private cache holding a copy of the good build at the same relative place; returns (root, library)."""
    root = tmp_path / "ext"
    target = root / good.relative_to(build.cache_root())
    shutil.copytree(good, target)
    library = next(target.glob("tal_kit_nms_*.so"))
    if "sha256" not in json.loads((target / build.RECORD_NAME).read_text()):  # a build recorded by older code
        record = json.loads((target / build.RECORD_NAME).read_text())
        record.update(size=library.stat().st_size, sha256=build._sha256(library))
        (target / build.RECORD_NAME).write_text(json.dumps(record))
    return root, library


LOAD = textwrap.dedent("""
    import json, sys, warnings
    from tal_kit.ops import build
    if sys.argv[1] == "read-only":
        build._writable = lambda folder: False  # (the tests run as root, for whom chmod does not forbid writing)
    warnings.simplefilter("always")
    with warnings.catch_warnings(record=True) as caught:
        info = build.backend_info()
    ours = [str(w.message) for w in caught if "tal_kit NMS" in str(w.message)]
    print(json.dumps({"warnings": ours, "cpu_backend": info["cpu_backend"], "build_dir": info.get("build_dir")}))
""")


def run_load(root: Path, mode: str, **env: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", LOAD, mode], capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO), "TAL_KIT_EXT_DIR": str(root), **env})
    assert proc.returncode == 0, f"exit {proc.returncode} (135 = bus error): {proc.stderr[-2000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_truncated_library_in_a_read_only_cache_falls_back_with_one_warning(good_build, tmp_path):
    root, library = copy_cache(good_build, tmp_path)
    with open(library, "r+b") as handle:
        handle.truncate(library.stat().st_size // 3)
    out = run_load(root, "read-only")
    assert out["cpu_backend"] == "torch"
    assert len(out["warnings"]) == 1, out["warnings"]
    message = out["warnings"][0]
    assert str(library.parent) in message and "build-ext --force" in message and "damaged" in message


def test_valid_prebuilt_library_in_a_read_only_cache_without_compiler_is_used(good_build, tmp_path):
    root, library = copy_cache(good_build, tmp_path)
    out = run_load(root, "read-only", CXX=str(tmp_path / "no-such-compiler"))
    assert out == {"warnings": [], "cpu_backend": "cpp", "build_dir": str(library.parent)}


def test_damaged_library_in_a_writable_cache_is_rebuilt_with_one_warning(good_build, tmp_path, monkeypatch):
    """The rebuild itself is torch's compiler call, stood in for by copying the good library back (no compile)."""
    from torch.utils import cpp_extension

    root, library = copy_cache(good_build, tmp_path)
    good_bytes = library.read_bytes()
    library.write_bytes(good_bytes[:-100] + b"\0" * 100)  # same size, other content: the checksum catches it
    builds = []

    def fake_load(name, sources, build_directory, **kwargs):
        builds.append(build_directory)
        Path(build_directory, f"{name}.so").write_bytes(good_bytes)
        return build._import_library(name, Path(build_directory, f"{name}.so"))

    monkeypatch.setenv("TAL_KIT_EXT_DIR", str(root))
    monkeypatch.setattr(cpp_extension, "load", fake_load)
    variant = library.parent.name.split("-")[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module, record = build.compile_extension(variant)
    ours = [str(w.message) for w in caught if "tal_kit NMS" in str(w.message)]
    assert builds == [str(library.parent)] and len(ours) == 1
    assert "does not match the checksum" in ours[0] and str(library.parent) in ours[0] and "build-ext --force" in ours[0]
    assert record["cached"] is False and record["sha256"] == build._sha256(library)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, again = build.compile_extension(variant)  # now verified: loaded without a rebuild or a word
    assert again["cached"] is True and builds == [str(library.parent)]


def test_elf_check_against_hand_made_files(good_build, tmp_path):
    library = next(good_build.glob("tal_kit_nms_*.so"))
    assert build.elf_problem(library) is None
    cut = tmp_path / "cut.so"
    cut.write_bytes(library.read_bytes()[:4096])
    assert "truncated: 4096 bytes" in build.elf_problem(cut)
    text = tmp_path / "text.so"
    text.write_text("not a library")
    assert "not a shared library" in build.elf_problem(text)
