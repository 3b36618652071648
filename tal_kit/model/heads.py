"""Classification and regression heads, shared across pyramid levels (SPEC §D.4).

Each head is a small conv net: (head_num_layers - 1) x [kernel-k MaskedConv1d -> LayerNorm -> ReLU], then a
kernel-k conv to K class logits or to 2 offsets. Because the weights are shared across levels, several levels can
run in one pass: they are laid end to end with k//2 zero steps between them (`PyramidLayout`), which is what a
convolution sees past the end of each level on its own, so the result is the per-level result, with one kernel
launch per layer instead of one per layer and level. (The model does this in training; in evaluation it runs the
levels one at a time, to keep peak memory low on long videos.)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import ChannelLayerNorm, MaskedConv1d, prior_bias


@dataclass
class PyramidLayout:
    """All pyramid levels joined along time, separated by ``gap`` zero steps.

    x: [B, C, S]; mask: [B, 1, S] (padding and gaps False); keep: [1, 1, S] (gaps False: re-zeroes the gaps after
    a layer); level: [S] level index of every step; steps: [sum T_l] index of every real (non-gap) step in S;
    lengths: T_l per level.
    """

    x: Tensor
    mask: Tensor
    keep: Tensor
    level: Tensor
    steps: Tensor
    lengths: list[int]

    @classmethod
    def join(cls, feats: Sequence[Tensor], masks: Sequence[Tensor], gap: int,
             first_level: int = 0) -> "PyramidLayout":
        """Join consecutive pyramid levels, the first of them being level ``first_level``."""
        lengths = [x.shape[-1] for x in feats]
        device = feats[0].device
        if gap > 0 and len(feats) > 1:
            zeros = feats[0].new_zeros(feats[0].shape[0], feats[0].shape[1], gap)
            no_mask = masks[0].new_zeros(masks[0].shape[0], 1, gap)
            x = torch.cat([t for f in feats for t in (f, zeros)][:-1], dim=-1)
            mask = torch.cat([t for m in masks for t in (m, no_mask)][:-1], dim=-1)
        else:
            x, mask = torch.cat(list(feats), dim=-1), torch.cat(list(masks), dim=-1)
        level = torch.cat([torch.full((n + gap,), first_level + i, dtype=torch.long, device=device)
                           for i, n in enumerate(lengths)])[:x.shape[-1]]
        starts = [sum(lengths[:i]) + gap * i for i in range(len(lengths))]
        steps = torch.cat([torch.arange(s, s + n, device=device) for s, n in zip(starts, lengths)])
        keep = torch.zeros(x.shape[-1], dtype=torch.bool, device=device)
        keep[steps] = True
        return cls(x, mask, keep.view(1, 1, -1), level, steps, lengths)

    def gather_steps(self, out: Tensor) -> Tensor:
        """[B, K, S] (head output, or the mask) -> [B, sum T_l, K]: the real steps, level after level."""
        return out.transpose(1, 2).index_select(1, self.steps)


class _ConvTrunk(nn.Module):
    """(num_layers - 1) x [MaskedConv1d(k) -> LayerNorm (or nothing) -> ReLU]."""

    def __init__(self, input_dim: int, feat_dim: int, num_layers: int, kernel_size: int, with_ln: bool):
        super().__init__()
        self.convs = nn.ModuleList(
            MaskedConv1d(input_dim if i == 0 else feat_dim, feat_dim, kernel_size, bias=not with_ln)
            for i in range(num_layers - 1))
        self.norms = nn.ModuleList(
            ChannelLayerNorm(feat_dim) if with_ln else nn.Identity() for _ in range(num_layers - 1))

    def forward(self, layout: PyramidLayout) -> Tensor:
        x = layout.x
        for conv, norm in zip(self.convs, self.norms):
            x, _ = conv(x, layout.mask)
            x = F.relu(norm(x)) * layout.keep
        return x


class ClassificationHead(nn.Module):
    """Per-step class logits [B, K, S]. The classifier bias starts at the logit of ``prior_prob`` (so training
    starts from a low foreground probability); classes in ``empty_cls`` start at the logit of 1e-6."""

    def __init__(self, input_dim: int, feat_dim: int, num_classes: int, *, prior_prob: float = 0.01,
                 num_layers: int = 3, kernel_size: int = 3, with_ln: bool = True, empty_cls: Sequence[int] = ()):
        super().__init__()
        self.trunk = _ConvTrunk(input_dim, feat_dim, num_layers, kernel_size, with_ln)
        self.classifier = MaskedConv1d(feat_dim, num_classes, kernel_size)
        with torch.no_grad():
            # the fork sets the prior unconditionally (and fails for 0); upstream skips it for prior_prob <= 0
            if prior_prob > 0:
                self.classifier.bias.fill_(prior_bias(prior_prob))
            for cls_id in empty_cls:
                self.classifier.bias[cls_id] = -math.log((1 - 1e-6) / 1e-6)

    def forward(self, layout: PyramidLayout) -> Tensor:
        return self.classifier(self.trunk(layout), layout.mask)[0]


class RegressionHead(nn.Module):
    """Per-step distances to the segment start and end [B, 2, S], in units of the level's stride: the regressor
    output times a learnable per-level scale (init 1), then ReLU so that distances are never negative."""

    def __init__(self, input_dim: int, feat_dim: int, num_levels: int, *, num_layers: int = 3,
                 kernel_size: int = 3, with_ln: bool = True):
        super().__init__()
        self.trunk = _ConvTrunk(input_dim, feat_dim, num_layers, kernel_size, with_ln)
        self.regressor = MaskedConv1d(feat_dim, 2, kernel_size)
        self.scale = nn.Parameter(torch.ones(num_levels))

    def forward(self, layout: PyramidLayout) -> Tensor:
        offsets = self.regressor(self.trunk(layout), layout.mask)[0]
        return F.relu(offsets * self.scale[layout.level])
