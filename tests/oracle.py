"""The test-only oracle: the PyPI sdist of ``actionformer==1.5.0``, unpacked under ``.cache/oracle``.

Tests import its modules from the unpacked source (never install it), and skip cleanly when it cannot be had.
``python -m tests.oracle --fetch`` downloads it ahead of time (``make test`` does this).
"""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tarfile
import types
import warnings
from pathlib import Path

ORACLE_VERSION = "1.5.0"
REPO_ROOT = Path(__file__).resolve().parents[1]
CACHE_DIR = Path(os.environ.get("TAL_KIT_ORACLE_DIR", REPO_ROOT / ".cache" / "oracle"))
SOURCE_DIR = CACHE_DIR / f"actionformer-{ORACLE_VERSION}"


def fetch() -> Path | None:
    """Download and unpack the sdist if it is not there yet; return the unpacked folder or None."""
    if (SOURCE_DIR / "actionformer").is_dir():
        return SOURCE_DIR
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    sdist = CACHE_DIR / f"actionformer-{ORACLE_VERSION}.tar.gz"
    if not sdist.exists():
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--no-build-isolation", "-q",
               "-d", str(CACHE_DIR), f"actionformer=={ORACLE_VERSION}"]
        if subprocess.run(cmd, capture_output=True).returncode != 0 or not sdist.exists():
            return None
    with tarfile.open(sdist) as tar:
        tar.extractall(CACHE_DIR, filter="data")
    return SOURCE_DIR if (SOURCE_DIR / "actionformer").is_dir() else None


def source_dir() -> Path | None:
    """The unpacked oracle source, fetching it on first use; None when it cannot be had."""
    return fetch()


def import_module(name: str) -> types.ModuleType:
    """Import ``actionformer.<name>`` from the unpacked sdist without running the package ``__init__``.

    The package ``__init__`` pulls in every optional dependency; the submodules we compare against do not.
    Raises ImportError when the oracle is unavailable (tests turn that into a skip).
    """
    src = source_dir()
    if src is None:
        raise ImportError(f"actionformer=={ORACLE_VERSION} could not be fetched")
    pkg_dir = src / "actionformer"
    if "actionformer" not in sys.modules:
        pkg = types.ModuleType("actionformer")
        pkg.__path__ = [str(pkg_dir)]
        sys.modules["actionformer"] = pkg
    with warnings.catch_warnings():
        # the oracle's losses are @torch.jit.script functions, and torch >= 2.10 warns about every one of them at
        # import: noise about the oracle's code, not ours
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script", category=FutureWarning)
        return importlib.import_module(f"actionformer.{name}")


if __name__ == "__main__":
    if "--fetch" in sys.argv:
        path = fetch()
        print(f"oracle: {path}" if path else "oracle: unavailable")
        sys.exit(0 if path else 1)
