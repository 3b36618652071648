"""ActionFormer's convTransformer backbone (SPEC §D.1): convolutional embedding, then a stem of transformer blocks
at full resolution and a branch of stride-2 blocks that builds the feature pyramid."""
from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from .attention import MaskedMHCA
from .layers import ChannelLayerNorm, LayerScaleDropPath, MaskedConv1d, sinusoid_position_table


class FeedForward(nn.Module):
    """The transformer MLP as 1x1 convolutions: expand D -> 4D, GELU, dropout, project back, dropout."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.0):
        super().__init__()
        self.expand = nn.Conv1d(dim, hidden_dim, 1)
        self.project = nn.Conv1d(hidden_dim, dim, 1)
        self.dropout = nn.Dropout(dropout)
        nn.init.zeros_(self.expand.bias)
        nn.init.zeros_(self.project.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.project(self.dropout(F.gelu(self.expand(x)))))


class TransformerBlock(nn.Module):
    """Pre-LN transformer block; with stride 2 it also halves the sequence (attention convs + max-pooled skip).

    y = pool(x) * mask' + layer_scale(attention(LN(x)));  z = y + layer_scale(MLP(LN(y)) * mask').
    Without drop-path (droppath = 0) the branches are added as they are, with no LayerScale gain, as upstream.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int, stride: int = 1, *, dropout: float = 0.0,
                 droppath: float = 0.0, attn_pdrop: float = 0.0, use_rel_pe: bool = False):
        super().__init__()
        self.norm_attn = ChannelLayerNorm(dim)
        self.attn = MaskedMHCA(dim, num_heads, window_size, stride, attn_pdrop=attn_pdrop, proj_pdrop=dropout,
                               use_rel_pe=use_rel_pe)
        # skip path downsampling: the max over the same 3-step neighbourhood the strided convs see
        self.pool_skip = nn.MaxPool1d(stride + 1, stride, (stride + 1) // 2) if stride > 1 else nn.Identity()
        self.norm_mlp = ChannelLayerNorm(dim)
        self.mlp = FeedForward(dim, 4 * dim, dropout)
        if droppath > 0.0:
            self.drop_path_attn = LayerScaleDropPath(dim, droppath)
            self.drop_path_mlp = LayerScaleDropPath(dim, droppath)
        else:
            self.drop_path_attn = nn.Identity()
            self.drop_path_mlp = nn.Identity()

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        out, out_mask = self.attn(self.norm_attn(x), mask)
        out = self.pool_skip(x) * out_mask + self.drop_path_attn(out)
        out = out + self.drop_path_mlp(self.mlp(self.norm_mlp(out)) * out_mask)
        return out, out_mask


class ConvTransformerBackbone(nn.Module):
    """Embedding convs -> (optional absolute position embedding) -> stem blocks -> stride-2 branch blocks.

    forward(x [B, C_in, T], mask [B, 1, T]) -> (features, masks), one per pyramid level (the stem output, then each
    branch block's output), level l having T / 2^l steps.
    """

    def __init__(self, input_dim: int, embd_dim: int, num_heads: int, embd_kernel_size: int, max_seq_len: int,
                 arch: Sequence[int] = (2, 2, 5), window_sizes: Sequence[int] = (-1,) * 6, scale_factor: int = 2,
                 embd_with_ln: bool = True, dropout: float = 0.0, droppath: float = 0.0, use_abs_pe: bool = False,
                 use_rel_pe: bool = False):
        super().__init__()
        num_embd, num_stem, num_branch = arch
        if len(window_sizes) != num_branch + 1:
            raise ValueError(f"need {num_branch + 1} attention window sizes (one per pyramid level), "
                             f"got {len(window_sizes)}")
        self.max_seq_len = max_seq_len
        self.use_abs_pe = use_abs_pe

        self.embedding = nn.ModuleList(
            MaskedConv1d(input_dim if i == 0 else embd_dim, embd_dim, embd_kernel_size, bias=not embd_with_ln)
            for i in range(num_embd))
        self.embedding_norms = nn.ModuleList(
            ChannelLayerNorm(embd_dim) if embd_with_ln else nn.Identity() for _ in range(num_embd))
        if use_abs_pe:
            # a fixed table scaled by 1/sqrt(D); a buffer, not saved in checkpoints
            self.register_buffer("pos_embd", sinusoid_position_table(max_seq_len, embd_dim) / embd_dim ** 0.5,
                                 persistent=False)

        block_args = dict(dropout=dropout, droppath=droppath, use_rel_pe=use_rel_pe)
        self.stem = nn.ModuleList(
            TransformerBlock(embd_dim, num_heads, window_sizes[0], 1, **block_args) for _ in range(num_stem))
        self.branch = nn.ModuleList(
            TransformerBlock(embd_dim, num_heads, window_sizes[1 + i], scale_factor, **block_args)
            for i in range(num_branch))

    def position_embedding(self, length: int) -> Tensor:
        """[1, D, length]: the table in training (length must fit); in evaluation, a sequence at least as long as
        the table gets the table linearly stretched to its length, as upstream."""
        if self.training:
            if length > self.max_seq_len:
                raise ValueError(f"training sequence of {length} steps is longer than max_seq_len {self.max_seq_len}")
            return self.pos_embd[:, :, :length]
        if length >= self.max_seq_len:
            return F.interpolate(self.pos_embd, size=length, mode="linear", align_corners=False)
        return self.pos_embd[:, :, :length]

    def forward(self, x: Tensor, mask: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        for conv, norm in zip(self.embedding, self.embedding_norms):
            x, mask = conv(x, mask)
            x = F.relu(norm(x))
        if self.use_abs_pe:
            x = x + self.position_embedding(x.shape[-1]) * mask
        for block in self.stem:
            x, mask = block(x, mask)
        feats, masks = [x], [mask]
        for block in self.branch:
            x, mask = block(x, mask)
            feats.append(x)
            masks.append(mask)
        return feats, masks
