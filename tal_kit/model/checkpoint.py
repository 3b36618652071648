"""Loading published ActionFormer / InternVideo checkpoints (and tal_kit's own) into `ActionFormer`.

Upstream saves ``{"epoch", "state_dict", "state_dict_ema", "optimizer", "scheduler"}`` from a model wrapped in
``nn.DataParallel`` (so every key starts with ``module.``), with its own module names and a few differently shaped
tensors (LayerNorm and LayerScale gains as [1, C, 1], six scalar level scales). `convert_actionformer_state_dict`
maps those names and shapes onto tal_kit's; tal_kit's own training checkpoints already use tal_kit's names.
"""
from __future__ import annotations

import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

# (upstream pattern, tal_kit replacement), applied in order to every key (after stripping "module.")
_RENAMES = [
    (r"^backbone\.embd\.(\d+)\.conv\.", r"backbone.embedding.\1."),
    (r"^backbone\.embd_norm\.(\d+)\.", r"backbone.embedding_norms.\1."),
    (r"\.ln1\.", ".norm_attn."),
    (r"\.ln2\.", ".norm_mlp."),
    (r"\.attn\.(query|key|value)_conv\.conv\.", r".attn.\1_conv."),
    (r"\.mlp\.0\.", ".mlp.expand."),
    (r"\.mlp\.3\.", ".mlp.project."),
    (r"^neck\.(lateral_convs|fpn_convs)\.(\d+)\.conv\.", r"neck.\1.\2."),
    (r"^(cls_head|reg_head)\.head\.(\d+)\.conv\.", r"\1.trunk.convs.\2."),
    (r"^(cls_head|reg_head)\.norm\.(\d+)\.", r"\1.trunk.norms.\2."),
    (r"^cls_head\.cls_head\.conv\.", "cls_head.classifier."),
    (r"^reg_head\.offset_head\.conv\.", "reg_head.regressor."),
]
_LEVEL_SCALE = re.compile(r"^reg_head\.scale\.(\d+)\.scale$")


class CheckpointReadError(ValueError):
    """A checkpoint file that cannot be read as model weights: the message names the file and the reason."""


class CheckpointMismatchError(ValueError):
    """The checkpoint's tensors do not fit the model: the message lists missing, unexpected and mis-shaped keys."""


def is_actionformer_state_dict(state: Mapping[str, Any]) -> bool:
    """True for upstream ActionFormer's key names (``backbone.embd.0.conv.weight`` ...), with or without module."""
    return any(re.match(r"^(module\.)?(backbone\.embd\.|cls_head\.cls_head\.)", key) for key in state)


def convert_actionformer_state_dict(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Upstream ActionFormer state dict -> tal_kit names and shapes (no model needed)."""
    state = {key[len("module."):] if key.startswith("module.") else key: value for key, value in state.items()}
    has_fpn = any(key.startswith("neck.lateral_convs.") for key in state)
    converted: dict[str, Tensor] = {}
    level_scales: dict[int, Tensor] = {}
    for key, value in state.items():
        match = _LEVEL_SCALE.match(key)
        if match:
            level_scales[int(match.group(1))] = value.reshape(())
            continue
        new_key = key
        for pattern, replacement in _RENAMES:
            new_key = re.sub(pattern, replacement, new_key)
        if not has_fpn:
            new_key = re.sub(r"^neck\.fpn_norms\.", "neck.norms.", new_key)
        # [1, C, 1] gains and biases of the channel LayerNorms and LayerScales, [1, 1, H, W] relative position bias
        is_gain = "norm" in new_key.rsplit(".", 1)[0] or new_key.endswith(".scale")
        if is_gain and value.dim() == 3 and value.shape[0] == 1 and value.shape[2] == 1:
            value = value.reshape(-1)
        elif new_key.endswith(".rel_pe") and value.dim() == 4:
            value = value.reshape(value.shape[-2], value.shape[-1])
        converted[new_key] = value
    if level_scales:
        if sorted(level_scales) != list(range(len(level_scales))):
            raise CheckpointMismatchError(f"regression-head level scales {sorted(level_scales)} are not numbered "
                                          f"0..{len(level_scales) - 1}")
        converted["reg_head.scale"] = torch.stack([level_scales[i] for i in range(len(level_scales))])
    return converted


def read_state_dict(path_or_state_dict: str | os.PathLike | Mapping[str, Any], use_ema: bool = True
                    ) -> dict[str, Tensor]:
    """The model weights from a checkpoint file or dict, in tal_kit's names.

    Accepts an upstream ``.pth.tar`` (``state_dict`` / ``state_dict_ema``), a tal_kit training checkpoint
    (``model`` / ``ema``) or a bare state dict. With use_ema the EMA weights are taken when present (upstream
    evaluates those).
    """
    source = "state dict"
    checkpoint: Any = path_or_state_dict
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        path = Path(path_or_state_dict)
        source = str(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such checkpoint file")
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as exc:
            raise CheckpointReadError(f"{path}: cannot be read as a checkpoint ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
    if not isinstance(checkpoint, Mapping):
        raise CheckpointReadError(f"{source}: expected a dict of tensors, got {type(checkpoint).__name__}")

    for raw, ema in (("state_dict", "state_dict_ema"), ("model", "ema")):
        if raw in checkpoint or ema in checkpoint:
            chosen = ema if (use_ema and ema in checkpoint) or raw not in checkpoint else raw
            checkpoint = checkpoint[chosen]
            source = f"{source} [{chosen}]"
            break
    bad = [key for key, value in checkpoint.items() if not isinstance(value, Tensor)]
    if bad:
        raise CheckpointReadError(f"{source}: not a state dict; these entries are not tensors: {bad[:10]}")
    state = dict(checkpoint)
    if is_actionformer_state_dict(state):
        return convert_actionformer_state_dict(state)
    return {key[len("module."):] if key.startswith("module.") else key: value for key, value in state.items()}


def load_actionformer_checkpoint(path_or_state_dict: str | os.PathLike | Mapping[str, Any],
                                 model: nn.Module | None = None,
                                 use_ema: bool = True) -> nn.Module | dict[str, torch.Tensor]:
    """Load an official ActionFormer / InternVideo checkpoint (or a tal_kit one) into ``model``.

    Returns the model with the weights loaded, or, without a model, the converted state dict. Raises
    CheckpointMismatchError listing every missing, unexpected or mis-shaped tensor. The loss normalizer (not part
    of upstream checkpoints) keeps its current value when absent.
    """
    state = read_state_dict(path_or_state_dict, use_ema=use_ema)
    if model is None:
        return state
    expected = model.state_dict()
    optional = {"loss_normalizer"}
    missing = sorted(key for key in expected if key not in state and key not in optional)
    unexpected = sorted(key for key in state if key not in expected)
    mismatched = [f"{key}: checkpoint {list(state[key].shape)}, model {list(expected[key].shape)}"
                  for key in sorted(state) if key in expected and state[key].shape != expected[key].shape]
    if missing or unexpected or mismatched:
        lines = []
        for title, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if items:
                lines.append(f"{title} ({len(items)}): " + ", ".join(items[:20]) + (" ..." if len(items) > 20 else ""))
        raise CheckpointMismatchError("checkpoint does not fit the model (is the config the one it was trained "
                                      "with?)\n  " + "\n  ".join(lines))
    model.load_state_dict(state, strict=False)
    return model
