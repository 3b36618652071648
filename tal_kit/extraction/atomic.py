"""Atomic writes for the extraction stage: temp file beside the target, fsync, rename (never a half-written file).

Same semantics as ``tal_kit.training.files``; duplicated here because extraction is the first pipeline stage and
may not import ``tal_kit.training`` (the layer rule; importing that package also loads the training loop). The two
should become one shared utility module.
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

__all__ = ["atomic_open", "write_json_atomic"]


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp_name, 0o644)  # mkstemp creates 0600; outputs should be readable like any other file
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int | None = 1) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically; returns the path."""
    with atomic_open(path, "w") as handle:
        json.dump(obj, handle, indent=indent)
        handle.write("\n")
    return Path(path)
