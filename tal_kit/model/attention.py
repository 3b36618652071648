"""Multi-head convolutional self-attention with masks: global, and local (windowed) as in ActionFormer (SPEC §D.1.6-7).

Local attention lets query i see keys i-h ... i+h (window w = 2h + 1). The published code computes this with
Longformer-style overlapping chunks, which needs every level's length divisible by 2h and builds its padding mask
with a second chunked matmul. Here it is computed in query blocks instead: a block of ``block_size`` queries meets
the strip of ``block_size + 2h`` keys around it in one batched matmul, entries outside each query's band are masked,
and the same strips of values are mixed by the probabilities. Any length works (only the strided convolutions need
divisibility), and the scores it softmaxes are exactly the band, so the output equals the reference's.

Masking follows the reference: a padded key gets a large negative score (-1e4) rather than -inf, so a row whose keys
are all padding still has a finite softmax (its output is discarded by the query mask). For a real query, a score of
-1e4 below the others underflows to exactly zero weight, the same as -inf.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import ChannelLayerNorm, MaskedConv1d

MASKED_SCORE = -1e4  # additive score of a padded key (the reference's value)


def default_block_size(half_window: int) -> int:
    """Query block length for local attention: large enough for efficient matmuls, small enough that the
    (block + 2h)-wide score strip wastes little work outside the band."""
    return max(32, 2 * half_window)


def local_window_attention(q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor, window_size: int, *,
                           rel_pe: Tensor | None = None, dropout_p: float = 0.0, training: bool = False,
                           block_size: int | None = None) -> Tensor:
    """Banded attention: query i attends to keys i-h ... i+h that exist and are not padding (h = window_size // 2).

    q, k, v: [B, H, T, d] (q already scaled); key_mask: [B, T] bool (True = real step);
    rel_pe: optional [H, window_size] bias added to the scores by relative offset (-h ... h).
    Returns [B, H, T, d].
    """
    batch, heads, length, head_dim = q.shape
    half = window_size // 2
    block = block_size or default_block_size(half)
    num_blocks = -(-length // block)
    padded = num_blocks * block
    strip = block + 2 * half

    # queries in blocks [B, H, nb, block, d]; keys/values padded by h on the left and h + (padded - T) on the right,
    # then cut into overlapping strips [B, H, nb, strip, d] (strip n covers keys n*block - h ... n*block + block + h)
    q_blocks = F.pad(q, (0, 0, 0, padded - length)).view(batch, heads, num_blocks, block, head_dim)
    k_strips = F.pad(k, (0, 0, half, half + padded - length)).unfold(2, strip, block)  # [B, H, nb, d, strip]
    v_strips = F.pad(v, (0, 0, half, half + padded - length)).unfold(2, strip, block).transpose(-1, -2)

    scores = torch.matmul(q_blocks, k_strips)  # [B, H, nb, block, strip]
    allowed = _band_and_key_mask(key_mask, half, block, num_blocks)  # [B, 1, nb, block, strip]
    if rel_pe is not None:
        scores = scores + _relative_bias(rel_pe, half, block)[None, :, None]
    scores = scores.masked_fill(~allowed, MASKED_SCORE)
    probs = torch.softmax(scores, dim=-1)
    if dropout_p > 0.0 and training:
        probs = F.dropout(probs, dropout_p, training=True)
    out = torch.matmul(probs, v_strips)  # [B, H, nb, block, d]
    return out.reshape(batch, heads, padded, head_dim)[:, :, :length]


def _band_and_key_mask(key_mask: Tensor, half: int, block: int, num_blocks: int) -> Tensor:
    """[B, 1, nb, block, strip] bool: strip column c is query row r's key at offset c - h - r, allowed when that
    offset lies in [-h, h] and the key is a real (unpadded, in-range) step."""
    batch, length = key_mask.shape
    strip = block + 2 * half
    rows = torch.arange(block, device=key_mask.device)[:, None]
    cols = torch.arange(strip, device=key_mask.device)[None, :]
    band = (cols >= rows) & (cols <= rows + 2 * half)  # [block, strip]
    keys = F.pad(key_mask, (half, half + num_blocks * block - length), value=False).unfold(1, strip, block)
    return (band[None, None] & keys[:, :, None, :]).unsqueeze(1)


def _relative_bias(rel_pe: Tensor, half: int, block: int) -> Tensor:
    """Spread a [H, 2h+1] relative-offset bias over the [H, block, strip] score layout (zero off the band)."""
    strip = block + 2 * half
    rows = torch.arange(block, device=rel_pe.device)[:, None]
    offset = torch.arange(strip, device=rel_pe.device)[None, :] - rows  # column index relative to the band start
    in_band = (offset >= 0) & (offset <= 2 * half)
    return rel_pe[:, offset.clamp(0, 2 * half)] * in_band


def global_attention(q: Tensor, k: Tensor, v: Tensor, key_mask: Tensor, *, dropout_p: float = 0.0,
                     training: bool = False) -> Tensor:
    """Full attention over the real keys. q [B, H, Tq, d] (already scaled), k/v [B, H, Tk, d], key_mask [B, Tk].

    Padded keys get MASKED_SCORE rather than the reference's -inf: the same weights (zero) whenever a real key
    exists, and no NaN for a sequence without any."""
    scores = torch.matmul(q, k.transpose(-1, -2))
    scores = scores.masked_fill(~key_mask[:, None, None, :], MASKED_SCORE)
    probs = torch.softmax(scores, dim=-1)
    if dropout_p > 0.0 and training:
        probs = F.dropout(probs, dropout_p, training=True)
    return torch.matmul(probs, v * key_mask[:, None, :, None])


class MaskedMHCA(nn.Module):
    """Multi-head *convolutional* self-attention (ActionFormer's MaskedMHCA / LocalMaskedMHCA).

    Queries, keys and values each go through a depthwise convolution (kernel 3, or stride + 1 when downsampling:
    this is where a stride-2 block halves the sequence), a LayerNorm and a 1x1 projection; heads attend globally
    (window_size <= 1) or within a local window; a 1x1 projection mixes the heads. forward(x [B, C, T],
    mask [B, 1, T]) -> (out [B, C, T / stride], mask at the output steps).
    """

    def __init__(self, embd_dim: int, num_heads: int, window_size: int = -1, stride: int = 1, *,
                 attn_pdrop: float = 0.0, proj_pdrop: float = 0.0, use_rel_pe: bool = False):
        super().__init__()
        if embd_dim % num_heads != 0:
            raise ValueError(f"embedding dim {embd_dim} is not divisible by {num_heads} heads")
        if stride != 1 and stride % 2 != 0:
            raise ValueError(f"attention stride must be 1 or even, got {stride}")
        if window_size > 1 and window_size % 2 == 0:
            raise ValueError(f"local attention windows must be odd (2h + 1 keys), got {window_size}")
        self.embd_dim = embd_dim
        self.num_heads = num_heads
        self.head_dim = embd_dim // num_heads
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.window_size = window_size
        self.stride = stride
        self.attn_pdrop = attn_pdrop

        kernel_size = stride + 1 if stride > 1 else 3
        # The projections need not zero their padded steps: padded keys get no weight and padded queries are
        # zeroed at the output, so nothing computed there reaches a real step.
        for name in ("query", "key", "value"):
            setattr(self, f"{name}_conv", MaskedConv1d(embd_dim, embd_dim, kernel_size, stride, groups=embd_dim,
                                                       bias=False, mask_output=False))
            setattr(self, f"{name}_norm", ChannelLayerNorm(embd_dim))
            setattr(self, name, nn.Conv1d(embd_dim, embd_dim, 1))
        self.proj = nn.Conv1d(embd_dim, embd_dim, 1)
        self.proj_drop = nn.Dropout(proj_pdrop)
        for conv in (self.query, self.key, self.value, self.proj):
            nn.init.zeros_(conv.bias)

        self.rel_pe = None
        if use_rel_pe and self.is_local:
            self.rel_pe = nn.Parameter(torch.zeros(num_heads, window_size))
            nn.init.trunc_normal_(self.rel_pe, std=(2.0 / embd_dim) ** 0.5, a=-2.0, b=2.0)

    @property
    def is_local(self) -> bool:
        return self.window_size > 1

    def _heads(self, x: Tensor) -> Tensor:
        """[B, C, T] -> [B, H, T, d]."""
        batch, _, length = x.shape
        return x.view(batch, self.num_heads, self.head_dim, length).transpose(2, 3)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        q, out_mask = self.query_conv(x, mask)
        k, _ = self.key_conv(x, mask)
        v, _ = self.value_conv(x, mask)
        q = self._heads(self.query(self.query_norm(q))) * self.scale
        k = self._heads(self.key(self.key_norm(k)))
        v = self._heads(self.value(self.value_norm(v)))

        key_mask = out_mask[:, 0]
        if self.is_local:
            out = local_window_attention(q, k, v, key_mask, self.window_size, rel_pe=self.rel_pe,
                                         dropout_p=self.attn_pdrop, training=self.training)
        else:
            out = global_attention(q, k, v, key_mask, dropout_p=self.attn_pdrop, training=self.training)
        batch, _, length, _ = out.shape
        out = out.transpose(2, 3).reshape(batch, self.embd_dim, length)
        return self.proj_drop(self.proj(out)) * out_mask, out_mask

    def extra_repr(self) -> str:
        kind = f"local window {self.window_size}" if self.is_local else "global"
        return f"{self.embd_dim}, heads={self.num_heads}, {kind}, stride={self.stride}"
