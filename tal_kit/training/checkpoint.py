"""Training checkpoints: what they hold, atomic saving, and loading with clear errors.

A checkpoint is a dict saved with ``torch.save`` and read back with ``weights_only=True`` (no arbitrary code runs
when loading a file someone sent you):

    format, format_version   "tal_kit.train_checkpoint", 1
    epoch                    index of the last completed epoch (0-based); resuming starts at epoch + 1
    global_step              optimizer steps taken so far
    config                   the run's config as a plain dict (checked on resume)
    world_size               number of training processes (checked on resume)
    model, ema               state dicts of the live model and of its EMA copy (the loss normalizer is a buffer)
    optimizer, scheduler     their state dicts
    rng                      one RNG state per training process (see seeding.capture_rng_state)
    metrics                  the epoch's evaluation summary, or None when it was not evaluated
    history                  one evaluation summary per evaluated epoch so far (best.pt is checked against it)
    log                      every metrics.jsonl line so far: on resume the log is rewritten from it, so it agrees
                             with the checkpoint after a kill at any moment
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from tal_kit.atomic import atomic_open

CHECKPOINT_FORMAT = "tal_kit.train_checkpoint"
CHECKPOINT_VERSION = 1
REQUIRED_KEYS = ("epoch", "global_step", "config", "model", "ema", "optimizer", "scheduler", "rng")

# Config sections whose values change the training trajectory: resuming under different values is refused.
TRAJECTORY_KEYS = ("init_rand_seed", "dataset_name", "train_split", "dataset", "model", "train_cfg", "opt",
                   "loader.batch_size", "trainer.ema_decay", "trainer.amp")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: missing, corrupt, not a tal_kit checkpoint, or made for another run."""


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> Path:
    """Write ``state`` (plus the format tag) to ``path`` atomically."""
    payload = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, **state}
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise ValueError(f"checkpoint state for {path} lacks {missing}")
    with atomic_open(path, "wb") as handle:
        writer = _ErrorKeepingWriter(handle)
        try:
            torch.save(payload, writer)
        except (RuntimeError, OSError) as exc:
            if writer.error is not None:  # torch reports a failed write as "unexpected pos N vs M": say what it was
                raise OSError(writer.error.errno, writer.error.strerror, str(path)) from exc
            raise
    return Path(path)


class _ErrorKeepingWriter:
    """A file wrapper that remembers the OSError of a failed write (e.g. ENOSPC: the disk is full), which torch's
    zip writer would otherwise replace by a message about stream positions."""

    def __init__(self, handle: Any):
        self.handle = handle
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.handle.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        self.handle.flush()


def read_checkpoint_file(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """``torch.load(weights_only=True)`` with every failure turned into a CheckpointError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    damaged_entry = _first_damaged_zip_entry(path)
    if damaged_entry is not None:
        raise CheckpointError(f"{path}: corrupt: the bytes of {damaged_entry!r} do not match their stored checksum")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - damaged bytes fail in many ways inside the unpickler
        raise CheckpointError(f"{path}: cannot be read as a checkpoint; it is corrupt or truncated "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc


def _first_damaged_zip_entry(path: Path) -> str | None:
    """torch.save writes a zip archive with a CRC32 per entry, which torch.load does not verify: a flipped bit in
    tensor data would load silently. Check every entry (fast: about a second per GB)."""
    if not zipfile.is_zipfile(path):
        return None  # not a zip (legacy format or garbage): torch.load decides
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        return f"<archive: {exc}>"


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a tal_kit training checkpoint and check its format; raises CheckpointError with the reason."""
    checkpoint = read_checkpoint_file(path, map_location)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a tal_kit training checkpoint (no format tag {CHECKPOINT_FORMAT!r}); "
                              "an upstream ActionFormer checkpoint loads with tal_kit.model.load_actionformer_checkpoint")
    if checkpoint.get("format_version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {checkpoint.get('format_version')} is not the "
                              f"supported version {CHECKPOINT_VERSION}")
    missing = [key for key in REQUIRED_KEYS if key not in checkpoint]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks the fields {missing}")
    return checkpoint


def _lookup(config: Mapping[str, Any], dotted: str) -> Any:
    value: Any = config
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return "<absent>"
        value = value[part]
    return value


def _differences(stored: Any, current: Any, prefix: str) -> list[str]:
    if isinstance(stored, Mapping) and isinstance(current, Mapping):
        out: list[str] = []
        for key in sorted(set(stored) | set(current)):
            out += _differences(stored.get(key, "<absent>"), current.get(key, "<absent>"), f"{prefix}.{key}")
        return out
    if isinstance(stored, (list, tuple)) and isinstance(current, (list, tuple)):
        stored, current = list(stored), list(current)
        # YAML gives lists where the defaults use tuples; compare element-wise, recursively.
        if len(stored) == len(current):
            return [d for i, (s, c) in enumerate(zip(stored, current)) for d in _differences(s, c, f"{prefix}[{i}]")]
    return [] if stored == current else [f"{prefix}: checkpoint {stored!r}, now {current!r}"]


def check_resume_compatible(checkpoint: Mapping[str, Any], config: Mapping[str, Any], world_size: int,
                            path: str | os.PathLike) -> None:
    """Refuse to resume when the config's trajectory-relevant values or the process count differ."""
    stored = checkpoint["config"]
    problems: list[str] = []
    for key in TRAJECTORY_KEYS:
        problems += _differences(_lookup(stored, key), _lookup(config, key), key)
    stored_world = checkpoint.get("world_size", 1)
    if stored_world != world_size:
        problems.append(f"world_size: checkpoint {stored_world}, now {world_size}")
    if problems:
        raise CheckpointError(f"{path}: cannot resume, the checkpoint was made with different settings:\n  "
                              + "\n  ".join(problems))


def load_state_strict(module: nn.Module, state: Mapping[str, torch.Tensor], path: str | os.PathLike,
                      what: str = "model") -> None:
    """``module.load_state_dict`` with a readable error listing missing, unexpected and mis-shaped entries."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mis_shaped = [f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or mis_shaped:
        def show(items: list[str]) -> str:
            return ", ".join(items[:6]) + (f" (+{len(items) - 6} more)" if len(items) > 6 else "")
        parts = [f"{len(missing)} missing: {show(missing)}" if missing else "",
                 f"{len(unexpected)} unexpected: {show(unexpected)}" if unexpected else "",
                 f"{len(mis_shaped)} with another shape: {show(mis_shaped)}" if mis_shaped else ""]
        raise CheckpointError(f"{path}: the {what} weights do not fit this model (was it trained with another "
                              "config?): " + "; ".join(p for p in parts if p))
    module.load_state_dict(state)


def checkpoint_contents(path: str | os.PathLike) -> list[tuple[str, str]]:
    """What a training checkpoint holds: (field, content) rows, one per top-level entry (for the tutorial;
    ``tal_kit.viz.tables.checkpoint_markdown`` writes them as a table)."""
    checkpoint = load_checkpoint(path)

    def tensors(state: Mapping[str, Any]) -> int:
        return sum(v.numel() for v in state.values() if torch.is_tensor(v))

    optimizer_state = checkpoint["optimizer"].get("state", {})
    moments = sum(tensors(s) for s in optimizer_state.values())
    metrics = checkpoint.get("metrics") or {}
    rows = [
        ("epoch", f"{checkpoint['epoch']} (last completed, 0-based); global step {checkpoint['global_step']}"),
        ("model", f"{len(checkpoint['model'])} tensors, {tensors(checkpoint['model']):,} values (incl. the loss "
                  f"normalizer {float(checkpoint['model'].get('loss_normalizer', float('nan'))):.2f})"),
        ("ema", f"the EMA copy: {tensors(checkpoint['ema']):,} values; evaluation uses these"),
        ("optimizer", f"AdamW moments: {moments:,} values"),
        ("scheduler", f"step {checkpoint['scheduler'].get('last_epoch')} of {checkpoint['scheduler'].get('total_steps')}"),
        ("rng", f"{len(checkpoint['rng'])} process(es): Python, NumPy, torch, CUDA and loader generators"),
        ("config", f"the full config of the run ({checkpoint['config'].get('name')})"),
        ("metrics", f"average mAP {100 * metrics['average_mAP']:.2f} %" if "average_mAP" in metrics
         else "not evaluated"),
    ]
    return rows
