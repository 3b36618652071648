"""Necks between the backbone pyramid and the heads (SPEC §D.2): ``identity`` (a LayerNorm per level; every
published recipe) and ``fpn`` (a top-down feature pyramid network)."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .layers import ChannelLayerNorm, MaskedConv1d


class IdentityNeck(nn.Module):
    """A separate LayerNorm on each pyramid level (or nothing, with ``with_ln=False``); masks pass through."""

    def __init__(self, num_levels: int, dim: int, with_ln: bool = True):
        super().__init__()
        self.norms = nn.ModuleList(ChannelLayerNorm(dim) if with_ln else nn.Identity() for _ in range(num_levels))

    def forward(self, feats: list[Tensor], masks: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        return [norm(x) for norm, x in zip(self.norms, feats)], list(masks)


class FPNNeck(nn.Module):
    """Feature pyramid network: 1x1 lateral convs, top-down nearest-neighbour upsampling (x scale_factor) added
    level by level, then a depthwise 3-tap conv and LayerNorm per level."""

    def __init__(self, num_levels: int, in_dim: int, out_dim: int, scale_factor: int = 2, with_ln: bool = True):
        super().__init__()
        self.scale_factor = scale_factor
        self.lateral_convs = nn.ModuleList(
            MaskedConv1d(in_dim, out_dim, 1, bias=not with_ln) for _ in range(num_levels))
        self.fpn_convs = nn.ModuleList(
            MaskedConv1d(out_dim, out_dim, 3, groups=out_dim, bias=not with_ln) for _ in range(num_levels))
        self.fpn_norms = nn.ModuleList(
            ChannelLayerNorm(out_dim) if with_ln else nn.Identity() for _ in range(num_levels))

    def forward(self, feats: list[Tensor], masks: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        laterals = [conv(x, mask)[0] for conv, x, mask in zip(self.lateral_convs, feats, masks)]
        for level in range(len(laterals) - 1, 0, -1):
            laterals[level - 1] = laterals[level - 1] + F.interpolate(
                laterals[level], scale_factor=self.scale_factor, mode="nearest")
        outs = []
        for conv, norm, x, mask in zip(self.fpn_convs, self.fpn_norms, laterals, masks):
            outs.append(norm(conv(x, mask)[0]))
        return outs, list(masks)
