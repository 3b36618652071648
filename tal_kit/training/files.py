"""Atomic file writes for the training machinery; the implementation is :mod:`tal_kit.atomic` (torch-free)."""
from tal_kit.atomic import atomic_open, atomic_path, remove_stale_temporaries, write_json_atomic, write_text_atomic

__all__ = ["atomic_open", "atomic_path", "write_json_atomic", "write_text_atomic", "remove_stale_temporaries"]
