"""Backbone presets and local checkpoint loading (the original VideoMAE/VideoMAEv2 layout and Hugging Face dirs).

* **Original layout** (``vit_g_hybrid_pt_1200e_k710_ft.pth`` and friends, EXTRACTION.md §2.2): a torch pickle whose
  state dict sits under ``model`` or ``module`` (or is the top level), keys ``patch_embed.proj.*``,
  ``blocks.N.{norm1, attn.qkv.weight, attn.q_bias, attn.v_bias, attn.proj, norm2, mlp.fc1, mlp.fc2}.*``,
  ``fc_norm.*``, ``head.*``; fp16 storage is cast to the model's dtype on load.
* **Hugging Face** ``VideoMAEForVideoClassification`` directory: ``config.json`` plus ``model.safetensors`` or
  ``pytorch_model.bin``; keys are mapped onto the original names (the ``query/key/value`` rows concatenated into
  ``qkv``), the eps values come from ``config.json`` and HF's fixed fc_norm eps of 1e-5 (§2.3), so the features equal
  that model's pooled, normalised output.

The architecture is read from tensor shapes where they tell (width, depth, patch, tubelet, MLP, q/v bias) and from
the named preset for the rest (heads, input size); every field can be overridden. A checkpoint that does not fit
the model raises :class:`CheckpointError` listing missing, unexpected and mis-shaped keys.
"""
from __future__ import annotations

import hashlib
import json
import re
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from tal_kit.extraction.vit import VideoViT, ViTArch

__all__ = ["CheckpointError", "BACKBONES", "backbone_for_dim", "LoadedBackbone", "load_backbone",
           "random_backbone", "read_state_dict", "hf_to_original", "infer_arch", "file_sha256"]

# Named presets (EXTRACTION.md §2.1): what the shapes cannot say (heads) and the published input (16 x 224^2).
BACKBONES: dict[str, ViTArch] = {
    "vit-g/14": ViTArch(embed_dim=1408, depth=40, num_heads=16, mlp_dim=6144, patch_size=14),
    "vit-h/16": ViTArch(embed_dim=1280, depth=32, num_heads=16, mlp_dim=5120, patch_size=16),
    "vit-l/16": ViTArch(embed_dim=1024, depth=24, num_heads=16, mlp_dim=4096, patch_size=16),
    "vit-b/16": ViTArch(embed_dim=768, depth=12, num_heads=12, mlp_dim=3072, patch_size=16),
}
# keys a feature extractor does not use: the classifier, and the pre-pooling norm of non-mean-pooling variants
_IGNORED = re.compile(r"^(head|norm|fc_dropout)\.")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the backbone; the message names the file and the keys."""


def backbone_for_dim(dim: int) -> str | None:
    """The preset whose feature width is ``dim`` (1408 -> vit-g/14, 1280 -> vit-h/16, ...), or None."""
    return next((name for name, arch in BACKBONES.items() if arch.embed_dim == dim), None)


def file_sha256(path: str | Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------- reading files
_SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                       "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                       "U8": torch.uint8, "BOOL": torch.bool}


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """The safetensors format is an 8-byte little-endian header length, a JSON header (dtype, shape, byte offsets
    per tensor), then the raw bytes; reading it needs no extra package."""
    data = path.read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_len])
    base = 8 + header_len
    out: dict[str, torch.Tensor] = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        begin, end = meta["data_offsets"]
        dtype = _SAFETENSORS_DTYPES[meta["dtype"]]
        buffer = bytearray(data[base + begin:base + end])
        tensor = torch.frombuffer(buffer, dtype=dtype) if buffer else torch.empty(0, dtype=dtype)
        out[name] = tensor.reshape(meta["shape"])
    return out


def _torch_load(path: Path, trust: bool) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # legacy (non-zip) files cannot be memory-mapped
        pass
    except Exception as err:  # pickles holding more than tensors (e.g. argparse.Namespace of training args)
        if not trust:
            raise CheckpointError(f"{path}: holds Python objects besides tensors ({type(err).__name__}); loading it "
                                  "runs code from the file: pass --trust-checkpoint if you trust its source") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust)
    except Exception as err:
        raise CheckpointError(f"{path}: cannot be read as a torch checkpoint ({type(err).__name__}: {err})") from None


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    for key in ("model", "module", "state_dict"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(torch.is_tensor(v) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a state dict (optionally under 'model' or 'module')")
    return {re.sub(r"^(module\.|model\.)", "", k): v for k, v in obj.items()}


def read_state_dict(checkpoint: str | Path, *, trust: bool = False) -> tuple[dict[str, torch.Tensor], dict | None,
                                                                                 Path]:
    """(state dict in the original layout, HF config.json or None, the weights file) of a file or HF directory."""
    path = Path(checkpoint)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    hf_config = None
    if path.is_dir():
        config_file = path / "config.json"
        if not config_file.exists():
            raise CheckpointError(f"{path}: a checkpoint directory needs a Hugging Face config.json")
        try:
            hf_config = json.loads(config_file.read_text())
        except json.JSONDecodeError as err:
            raise CheckpointError(f"{config_file}: not valid JSON ({err})") from None
        weights = next((path / n for n in ("model.safetensors", "pytorch_model.bin") if (path / n).exists()), None)
        if weights is None:
            raise CheckpointError(f"{path}: holds neither model.safetensors nor pytorch_model.bin")
        path = weights
    try:
        raw = _read_safetensors(path) if path.suffix == ".safetensors" else _torch_load(path, trust)
    except CheckpointError:
        raise
    except Exception as err:
        raise CheckpointError(f"{path}: cannot be read ({type(err).__name__}: {err})") from None
    state = _unwrap(raw, path)
    if hf_config is not None or any(k.startswith(("videomae.", "encoder.layer.", "embeddings.")) for k in state):
        state = hf_to_original(state)
    return state, hf_config, path


def hf_to_original(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename Hugging Face VideoMAE keys onto VideoMAEv2's (EXTRACTION.md §2.3); unknown keys pass through."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    renames = [
        (r"^embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
        (r"^encoder\.layer\.(\d+)\.layernorm_before\.", r"blocks.\1.norm1."),
        (r"^encoder\.layer\.(\d+)\.layernorm_after\.", r"blocks.\1.norm2."),
        (r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"blocks.\1.attn.proj."),
        (r"^encoder\.layer\.(\d+)\.intermediate\.dense\.", r"blocks.\1.mlp.fc1."),
        (r"^encoder\.layer\.(\d+)\.output\.dense\.", r"blocks.\1.mlp.fc2."),
        (r"^encoder\.layer\.(\d+)\.attention\.attention\.(query\.bias|q_bias)$", r"blocks.\1.attn.q_bias"),
        (r"^encoder\.layer\.(\d+)\.attention\.attention\.(value\.bias|v_bias)$", r"blocks.\1.attn.v_bias"),
        (r"^classifier\.", "head."),
        (r"^layernorm\.", "norm."),
    ]
    for key, value in state.items():
        key = re.sub(r"^videomae\.", "", key)
        m = re.match(r"^encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.weight$", key)
        if m:
            qkv.setdefault(m.group(1), {})[m.group(2)] = value
            continue
        for pattern, target in renames:
            new = re.sub(pattern, target, key)
            if new != key:
                key = new
                break
        out[key] = value
    for layer, parts in qkv.items():
        if set(parts) != {"query", "key", "value"}:
            missing = {"query", "key", "value"} - set(parts)
            raise CheckpointError(f"layer {layer}: attention weights lack {sorted(missing)}")
        out[f"blocks.{layer}.attn.qkv.weight"] = torch.cat([parts["query"], parts["key"], parts["value"]], dim=0)
    return out


# ------------------------------------------------------------------------------------------ architecture
def infer_arch(state: Mapping[str, torch.Tensor], preset: ViTArch, hf_config: dict | None = None,
               **overrides: Any) -> ViTArch:
    """The preset, corrected by what the tensor shapes (and an HF config.json) say, then the explicit overrides."""
    fields: dict[str, Any] = {}
    proj = state.get("patch_embed.proj.weight")
    if proj is not None and proj.ndim == 5:
        fields.update(embed_dim=proj.shape[0], in_chans=proj.shape[1], tubelet_size=proj.shape[2],
                      patch_size=proj.shape[3])
    depths = {int(m.group(1)) for k in state if (m := re.match(r"^blocks\.(\d+)\.", k))}
    if depths:
        fields["depth"] = max(depths) + 1
    fc1 = state.get("blocks.0.mlp.fc1.weight")
    if fc1 is not None:
        fields["mlp_dim"] = fc1.shape[0]
    if depths:
        fields["qkv_bias"] = "blocks.0.attn.q_bias" in state
    if hf_config is not None:
        c = hf_config
        fields.update({k: v for k, v in (("num_heads", c.get("num_attention_heads")),
                                         ("img_size", c.get("image_size")), ("num_frames", c.get("num_frames")))
                       if v is not None})
        fields["norm_eps"] = float(c.get("layer_norm_eps", 1e-12))  # HF's default when the file omits it
        fields["fc_norm_eps"] = 1e-5  # HF's fc_norm is nn.LayerNorm(hidden) with torch's default eps
    try:
        return preset.with_overrides(**{**fields, **{k: v for k, v in overrides.items() if v is not None}})
    except ValueError as err:
        raise CheckpointError(f"cannot build the backbone: {err}") from None


def _check_fit(model: VideoViT, state: Mapping[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    expected = model.state_dict()
    used = {k: v for k, v in state.items() if not _IGNORED.match(k)}
    missing = sorted(set(expected) - set(used))
    unexpected = sorted(set(used) - set(expected))
    misshaped = sorted(f"{k} {tuple(used[k].shape)} vs model {tuple(expected[k].shape)}"
                       for k in set(used) & set(expected) if used[k].shape != expected[k].shape)
    if missing or unexpected or misshaped:
        def show(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f" ... (+{len(keys) - 8})" if len(keys) > 8 else "") if keys else "none"
        raise CheckpointError(f"{where} does not fit the backbone {model.arch.embed_dim}-d x {model.arch.depth} "
                              f"blocks: missing keys: {show(missing)}; unexpected keys: {show(unexpected)}; "
                              f"mis-shaped keys: {show(misshaped)}")
    return used


@dataclass
class LoadedBackbone:
    """A ready backbone and what the manifest records about it."""

    model: VideoViT
    name: str
    checkpoint: str  # the weights file, or "random(seed=N)"
    checkpoint_sha256: str | None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "checkpoint": self.checkpoint, "checkpoint_sha256": self.checkpoint_sha256,
                "arch": self.model.arch.as_dict()}


def _preset(name: str) -> ViTArch:
    if name not in BACKBONES:
        raise CheckpointError(f"unknown backbone {name!r} (choose from {', '.join(BACKBONES)})")
    return BACKBONES[name]


def load_backbone(checkpoint: str | Path, backbone: str = "vit-g/14", *, trust: bool = False,
                  hash_file: bool = True, **overrides: Any) -> LoadedBackbone:
    """Build the backbone a local checkpoint describes and load its weights (fp32, CPU, eval mode)."""
    state, hf_config, weights = read_state_dict(checkpoint, trust=trust)
    arch = infer_arch(state, _preset(backbone), hf_config, **overrides)
    model = VideoViT(arch)
    used = _check_fit(model, state, str(weights))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mmap'd fp16 storage is copied (and cast) into fp32 parameters
        model.load_state_dict(used, strict=True)
    return LoadedBackbone(model.eval(), backbone, str(weights), file_sha256(weights) if hash_file else None)


def random_backbone(backbone: str = "vit-g/14", *, seed: int = 0, **overrides: Any) -> LoadedBackbone:
    """A random-weight backbone (for demos and tests: it shows the pipeline, not semantics)."""
    try:
        arch = _preset(backbone).with_overrides(**overrides)
    except ValueError as err:
        raise CheckpointError(f"cannot build the backbone: {err}") from None
    return LoadedBackbone(VideoViT(arch).randomize(seed).eval(), backbone, f"random(seed={seed})", None)
