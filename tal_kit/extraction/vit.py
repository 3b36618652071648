"""The video ViT of VideoMAE / VideoMAEv2 as a feature extractor, with VideoMAEv2's parameter names.

Written here rather than taken from ``transformers``: the model is ~100 lines, the parameter names then *are* the
original checkpoint layout (strict loading, no renaming for the common case), every LayerNorm eps is explicit
(VideoMAEv2 uses 1e-6 everywhere, HF's ``fc_norm`` is fixed at 1e-5, EXTRACTION.md §2.3), and no heavy runtime
dependency is pulled in. Hugging Face checkpoints are loaded by key mapping (:mod:`.checkpoints`).

Architecture (EXTRACTION.md §2.1): Conv3d tubelet patch embedding (kernel = stride = (tubelet, patch, patch), with
bias), plus a fixed sinusoid position table (not a parameter), then pre-norm blocks (LayerNorm, attention with one
bias-free ``qkv`` projection and separate ``q_bias``/``v_bias``, the k bias being zero; LayerNorm, GELU MLP), no layer
scale, no class token. Features are ``fc_norm(mean over tokens)``. Attention runs through
``F.scaled_dot_product_attention`` (same maths as the reference's explicit softmax, less memory).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["ViTArch", "VideoViT", "sinusoid_table"]


@dataclass(frozen=True)
class ViTArch:
    """Everything that fixes a backbone's shapes and arithmetic."""

    embed_dim: int
    depth: int
    num_heads: int
    mlp_dim: int
    patch_size: int
    tubelet_size: int = 2
    in_chans: int = 3
    img_size: int = 224
    num_frames: int = 16
    qkv_bias: bool = True  # q_bias / v_bias parameters (k bias fixed at 0)
    norm_eps: float = 1e-6  # block LayerNorms
    fc_norm_eps: float = 1e-6  # the LayerNorm after mean pooling

    def __post_init__(self) -> None:
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.img_size % self.patch_size or self.num_frames % self.tubelet_size:
            raise ValueError(f"input {self.num_frames}x{self.img_size}^2 is not a whole number of "
                             f"{self.tubelet_size}x{self.patch_size}^2 tubelets")

    @property
    def num_tokens(self) -> int:
        return (self.num_frames // self.tubelet_size) * (self.img_size // self.patch_size) ** 2

    def with_overrides(self, **fields: Any) -> "ViTArch":
        return replace(self, **{k: v for k, v in fields.items() if v is not None})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def sinusoid_table(num_positions: int, dim: int) -> torch.Tensor:
    """[1, N, dim] fixed table: angle(p, j) = p / 10000^(2·⌊j/2⌋/dim); sin on even channels, cos on odd ones."""
    position = torch.arange(num_positions, dtype=torch.float64)[:, None]
    exponent = 2 * (torch.arange(dim) // 2).to(torch.float64) / dim
    angles = position / torch.pow(10000.0, exponent)[None, :]
    table = torch.empty_like(angles)
    table[:, 0::2] = torch.sin(angles[:, 0::2])
    table[:, 1::2] = torch.cos(angles[:, 1::2])
    return table.float()[None]


class PatchEmbed(nn.Module):
    def __init__(self, arch: ViTArch):
        super().__init__()
        kernel = (arch.tubelet_size, arch.patch_size, arch.patch_size)
        self.proj = nn.Conv3d(arch.in_chans, arch.embed_dim, kernel_size=kernel, stride=kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # [B, C, T', H', W'] -> [B, N, C], N in (t, h, w) order


class Attention(nn.Module):
    def __init__(self, arch: ViTArch):
        super().__init__()
        dim = arch.embed_dim
        self.num_heads = arch.num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        if arch.qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
        else:
            self.q_bias = self.v_bias = None
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        bias = None
        if self.q_bias is not None:
            bias = torch.cat([self.q_bias, torch.zeros_like(self.q_bias), self.v_bias])
        qkv = F.linear(x, self.qkv.weight, bias).reshape(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, heads, N, head_dim]
        out = F.scaled_dot_product_attention(q, k, v)  # scale head_dim^-0.5, as the reference applies to q
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, arch: ViTArch):
        super().__init__()
        self.fc1 = nn.Linear(arch.embed_dim, arch.mlp_dim)
        self.fc2 = nn.Linear(arch.mlp_dim, arch.embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))  # exact (erf) GELU


class Block(nn.Module):
    def __init__(self, arch: ViTArch):
        super().__init__()
        self.norm1 = nn.LayerNorm(arch.embed_dim, eps=arch.norm_eps)
        self.attn = Attention(arch)
        self.norm2 = nn.LayerNorm(arch.embed_dim, eps=arch.norm_eps)
        self.mlp = Mlp(arch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VideoViT(nn.Module):
    """``forward(x)`` with x [B, 3, num_frames, img_size, img_size] -> features [B, embed_dim]."""

    def __init__(self, arch: ViTArch):
        super().__init__()
        self.arch = arch
        self.patch_embed = PatchEmbed(arch)
        self.register_buffer("pos_embed", sinusoid_table(arch.num_tokens, arch.embed_dim), persistent=False)
        self.blocks = nn.ModuleList(Block(arch) for _ in range(arch.depth))
        self.fc_norm = nn.LayerNorm(arch.embed_dim, eps=arch.fc_norm_eps)

    @property
    def feature_dim(self) -> int:
        return self.arch.embed_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.arch
        expected = (a.in_chans, a.num_frames, a.img_size, a.img_size)
        if tuple(x.shape[1:]) != expected:
            raise ValueError(f"backbone expects clips [B, {', '.join(map(str, expected))}], got {tuple(x.shape)}")
        x = self.patch_embed(x)
        x = x + self.pos_embed.to(dtype=x.dtype)
        for block in self.blocks:
            x = block(x)
        return self.fc_norm(x.mean(dim=1))

    def randomize(self, seed: int = 0, std: float = 0.02) -> "VideoViT":
        """Random weights (every parameter, LayerNorms included, so nothing is trivially the identity): the
        pipeline can then be run and tested without a checkpoint. Random features carry no semantics."""
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name == "fc_norm.weight":
                    p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
                else:
                    p.copy_(std * torch.randn(p.shape, generator=gen))
        return self
