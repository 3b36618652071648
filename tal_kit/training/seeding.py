"""Seeding, deterministic mode, and capturing/restoring every random number generator training touches.

A resumed run must draw exactly the same random numbers as an uninterrupted one: the crop windows of the
dataset (Python's ``random``/NumPy), drop-path masks (torch), the shuffling order (the loader's generator) and
CUDA kernels. Each generator's state goes into the checkpoint as plain tensors/ints so it loads with
``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import os
import random
import warnings
from typing import Any

import numpy as np
import torch

DETERMINISTIC_MODES = ("strict", "warn", "off")


def seed_everything(seed: int, deterministic: str = "strict") -> torch.Generator:
    """Seed torch (CPU and CUDA), NumPy and Python; set the deterministic mode; return a seeded torch.Generator.

    ``deterministic``: "strict" (InternVideo: ``torch.use_deterministic_algorithms(True)``, an op without a
    deterministic implementation raises), "warn" (upstream ActionFormer: such ops only warn) or "off" (fastest:
    cuDNN autotuning on, results may vary run to run on GPU).
    """
    if deterministic not in DETERMINISTIC_MODES:
        raise ValueError(f"trainer.deterministic must be one of {DETERMINISTIC_MODES}, got {deterministic!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    os.environ["PYTHONHASHSEED"] = str(seed)
    if deterministic == "off":
        torch.backends.cudnn.benchmark = True
        torch.use_deterministic_algorithms(False)
    else:
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        # cuBLAS needs a fixed workspace to be deterministic (CUDA >= 10.2); must be set before the first cuBLAS call.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=(deterministic == "warn"))
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def capture_rng_state(loader_generator: torch.Generator | None = None) -> dict[str, Any]:
    """Every generator's state, as tensors and ints (checkpoint-safe)."""
    numpy_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    if loader_generator is not None:
        state["loader"] = loader_generator.get_state()
    return state


def restore_rng_state(state: dict[str, Any], loader_generator: torch.Generator | None = None) -> None:
    """Inverse of :func:`capture_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state({
        "bit_generator": "MT19937",
        "state": {"key": numpy_state["key"].numpy().astype(np.uint32), "pos": numpy_state["pos"]},
        "has_gauss": numpy_state["has_gauss"],
        "gauss": numpy_state["gauss"],
    })
    torch.set_rng_state(state["torch"])
    cuda_states = state.get("cuda") or []
    if cuda_states and torch.cuda.is_available():
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        else:
            warnings.warn(f"checkpoint holds {len(cuda_states)} CUDA RNG states but {torch.cuda.device_count()} "
                          "devices are visible; CUDA random streams are not restored")
    if loader_generator is not None and "loader" in state:
        loader_generator.set_state(state["loader"])
