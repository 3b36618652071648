"""Building blocks shared by the backbone, neck and heads (SPEC §D.1, §D.4).

Tensors are laid out as [batch, channels, time] and every sequence comes with a boolean mask [batch, 1, time] that
is True on real time steps and False on padding. The masked layers keep padding at zero where the published model
does, and leave it alone where it does not: after a LayerNorm, a padded step holds the norm's bias, which the next
kernel-3 convolution sees at the last real step. That small boundary effect is part of the reference numbers, so it
is reproduced rather than "fixed".
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MaskedConv1d(nn.Conv1d):
    """A 1-D convolution whose output is zeroed on padded steps; returns ``(output, output_mask)``.

    ``mask_output=False`` skips the zeroing, for callers whose padded outputs can never reach a real step.

    Only "same" convolutions (odd kernel, padding kernel//2) are supported, so output step i is centred on input
    step i*stride. With stride s > 1 the output mask is the input mask at steps 0, s, 2s, ... (the input length must
    be divisible by s, which the model guarantees by padding to a multiple of the pyramid's total stride).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, *,
                 groups: int = 1, bias: bool = True, mask_output: bool = True):
        if kernel_size % 2 != 1:
            raise ValueError(f"MaskedConv1d needs an odd kernel size, got {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2,
                         groups=groups, bias=bias)
        if bias:
            nn.init.zeros_(self.bias)
        self.mask_output = mask_output

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        stride = self.stride[0]
        if x.shape[-1] % stride != 0:
            raise ValueError(f"MaskedConv1d with stride {stride} needs a length divisible by it, got {x.shape[-1]}")
        out_mask = mask[:, :, ::stride] if stride > 1 else mask
        out = super().forward(x)
        return (out * out_mask if self.mask_output else out), out_mask


class _ChannelLayerNormFunction(torch.autograd.Function):
    """LayerNorm along dim 1 of [B, C, T] with a hand-written backward that keeps only the input and the per-step
    statistics (autograd through the formula would keep two more full-size tensors per norm)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
        mean = x.mean(dim=1, keepdim=True)
        normed = x - mean
        rstd = torch.rsqrt(normed.square().mean(dim=1, keepdim=True) + eps)
        normed.mul_(rstd)
        ctx.save_for_backward(x, mean, rstd, weight)
        return torch.addcmul(bias[:, None], normed, weight[:, None])

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, mean, rstd, weight = ctx.saved_tensors
        normed = (x - mean).mul_(rstd)
        grad_weight = (grad * normed).sum(dim=(0, 2)) if ctx.needs_input_grad[1] else None
        grad_bias = grad.sum(dim=(0, 2)) if ctx.needs_input_grad[2] else None
        grad_x = None
        if ctx.needs_input_grad[0]:
            # d/dx of w * (x - mean) * rstd: rstd * (g' - mean_C(g') - normed * mean_C(g' * normed)), g' = g * w
            scaled = grad * weight[:, None]
            correction = normed * (scaled * normed).mean(dim=1, keepdim=True)
            grad_x = (scaled - scaled.mean(dim=1, keepdim=True)).sub_(correction).mul_(rstd)
        return grad_x, grad_weight, grad_bias, None


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of a [B, C, T] tensor, separately at every time step (eps 1e-5, affine).

    ``fused`` (default: on GPUs) runs it as ``F.layer_norm`` on the time-major view: one fused kernel, and the result
    is a [B, C, T] view with time-major strides. Otherwise (default on CPUs, where transposing copies cost more than
    the arithmetic they save) it normalizes along dim 1 directly. Both equal the reference's mean/variance chain to
    float rounding.
    """

    def __init__(self, num_channels: int, eps: float = 1e-5, fused: bool | None = None):
        super().__init__()
        self.num_channels = num_channels
        self.eps = eps
        self.fused = fused
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 3 or x.shape[1] != self.num_channels:
            raise ValueError(f"ChannelLayerNorm({self.num_channels}) expects [B, {self.num_channels}, T], "
                             f"got {tuple(x.shape)}")
        if self.fused if self.fused is not None else x.is_cuda:
            return F.layer_norm(x.transpose(1, 2), (self.num_channels,), self.weight, self.bias,
                                self.eps).transpose(1, 2)
        return _ChannelLayerNormFunction.apply(x, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_channels}, eps={self.eps}"


def drop_path_factor(x: Tensor, drop_prob: float) -> Tensor:
    """Per-sample stochastic-depth factor [B, 1, ..., 1]: 0 with probability drop_prob, else 1 / (1 - drop_prob),
    so the expected output is unchanged. One uniform draw per sample; u >= drop_prob keeps it (the reference's
    draw-to-decision rule, so the same seed drops the same samples)."""
    keep = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device) >= drop_prob
    return keep.to(x.dtype) / (1.0 - drop_prob)


class LayerScaleDropPath(nn.Module):
    """A learnable per-channel gain (LayerScale, initialised small so each residual branch starts near zero) followed
    by stochastic depth. ActionFormer calls this ``AffineDropPath``."""

    def __init__(self, num_channels: int, drop_prob: float = 0.0, init_scale: float = 1e-4):
        super().__init__()
        self.scale = nn.Parameter(torch.full((num_channels,), float(init_scale)))
        self.drop_prob = float(drop_prob)

    def forward(self, x: Tensor) -> Tensor:
        gain = self.scale[:, None]
        if self.drop_prob > 0.0 and self.training:  # fold the per-sample factor into the gain: one pass over x
            gain = gain * drop_path_factor(x, self.drop_prob)
        return x * gain

    def extra_repr(self) -> str:
        return f"{self.scale.numel()}, drop_prob={self.drop_prob}"


def sinusoid_position_table(length: int, dim: int) -> Tensor:
    """The Transformer's sinusoidal position table as [1, dim, length] float32:
    PE[pos, j] = sin(pos / 10000^(2*floor(j/2)/dim)) for even j, cos(...) for odd j (computed in float64)."""
    position = np.arange(length, dtype=np.float64)[:, None]
    exponent = 2 * (np.arange(dim) // 2) / dim
    angles = position / np.power(10000.0, exponent)[None, :]
    table = np.empty_like(angles)
    table[:, 0::2] = np.sin(angles[:, 0::2])
    table[:, 1::2] = np.cos(angles[:, 1::2])
    return torch.from_numpy(table).float().T.unsqueeze(0).contiguous()


def prior_bias(prior_prob: float) -> float:
    """The logit b with sigmoid(b) = prior_prob, used to start the classifier at a low foreground probability."""
    if not 0.0 < prior_prob < 1.0:
        raise ValueError(f"train_cfg.cls_prior_prob must lie in (0, 1), got {prior_prob}")
    return -math.log((1.0 - prior_prob) / prior_prob)
