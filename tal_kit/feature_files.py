"""The feature-file formats the kit reads and writes, and the one writer for them.

A shared utility: extraction writes feature files and the data stage reads them, so the format belongs to neither
(the layer rule lets both import shared utilities). Reading, with its checks, lives in :mod:`tal_kit.data.features`.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from tal_kit.atomic import atomic_open

__all__ = ["FEATURE_FORMATS", "write_features"]

FEATURE_FORMATS = (".npy", ".npz", ".pt", ".pth", ".pkl", ".csv")


def write_features(path: str | Path, features: np.ndarray) -> Path:
    """Write a [T, C] array in the format ``path``'s extension names, atomically (a kill leaves no half-written
    file). Raises ValueError naming the file for an extension outside :data:`FEATURE_FORMATS`."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in FEATURE_FORMATS:
        raise ValueError(f"{path}: cannot write features as {ext!r} (formats: {', '.join(FEATURE_FORMATS)})")
    features = np.asarray(features)
    with atomic_open(path, "w" if ext == ".csv" else "wb") as handle:
        if ext == ".npy":
            np.save(handle, features)
        elif ext == ".npz":
            np.savez(handle, feats=features)
        elif ext in (".pt", ".pth"):
            torch.save(torch.from_numpy(np.ascontiguousarray(features)), handle)
        elif ext == ".pkl":
            pickle.dump(features, handle, protocol=pickle.HIGHEST_PROTOCOL)
        else:
            np.savetxt(handle, features, delimiter=",", fmt="%.9g")
    return path
