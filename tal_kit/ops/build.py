"""Placeholder until the extension build lands: every call uses the pure-torch reference."""
from __future__ import annotations


def extension_for(backend: str):
    return None


def backend_info() -> dict:
    return {"backend": "torch", "reason": "the C++/CUDA extension is not built yet"}
