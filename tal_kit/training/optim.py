"""AdamW with ActionFormer's two parameter groups (SPEC §D.8).

Weight decay regularises the *weights* of linear and convolution layers only. Biases, normalisation weights,
learnable scalars (the per-level ``Scale``, the LayerScale of ``AffineDropPath``) and the relative position bias
are left undecayed: decaying them pulls a gain towards zero, which is not what a regulariser should do.
"""
from __future__ import annotations

import torch
from torch import nn

from tal_kit.config import OptConfig

# Parameters that are never decayed, matched by the parameter's own name (the last component of its dotted name).
NO_DECAY_NAMES = ("bias", "scale", "rel_pe")


def _is_norm(module: nn.Module) -> bool:
    """LayerNorm/GroupNorm/BatchNorm and custom norm layers (ActionFormer's channel-first ``LayerNorm``, ``RMSNorm``)."""
    norm_types = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm)
    return isinstance(module, norm_types) or type(module).__name__.endswith("Norm")


def parameter_groups(model: nn.Module) -> tuple[list[str], list[str]]:
    """Split the trainable parameter names of ``model`` into (decay, no_decay), each sorted.

    decay: every ``weight`` owned directly by an ``nn.Linear`` or a convolution (a masked convolution wraps an
    ``nn.Conv1d``, so its weight is found there). no_decay: biases, norm weights, ``scale`` and ``rel_pe``.
    Raises ValueError naming any parameter that fits neither rule, so a new layer type cannot slip through silently.
    """
    decay: list[str] = []
    no_decay: list[str] = []
    unknown: list[str] = []
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            full_name = f"{module_name}.{param_name}" if module_name else param_name
            if param_name in NO_DECAY_NAMES:
                no_decay.append(full_name)
            elif param_name == "weight" and isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)):
                decay.append(full_name)
            elif param_name == "weight" and _is_norm(module):
                no_decay.append(full_name)
            else:
                unknown.append(f"{full_name} ({type(module).__name__})")
    if unknown:
        raise ValueError("parameters fit neither the weight-decay nor the no-decay rule: " + ", ".join(unknown))
    return sorted(decay), sorted(no_decay)


def make_optimizer(model: nn.Module, opt_cfg: OptConfig) -> torch.optim.Optimizer:
    """AdamW (or SGD) over the two groups; ``opt_cfg`` is ``cfg.opt`` (type, learning_rate, weight_decay, momentum).

    Group 0 gets ``opt_cfg.weight_decay``, group 1 gets 0. AdamW keeps PyTorch's default betas and eps, as upstream.
    """
    decay, no_decay = parameter_groups(model)
    params = dict(model.named_parameters())
    groups = [
        {"params": [params[name] for name in decay], "weight_decay": float(opt_cfg.weight_decay), "name": "decay"},
        {"params": [params[name] for name in no_decay], "weight_decay": 0.0, "name": "no_decay"},
    ]
    if opt_cfg.type == "AdamW":
        return torch.optim.AdamW(groups, lr=float(opt_cfg.learning_rate))
    if opt_cfg.type == "SGD":
        return torch.optim.SGD(groups, lr=float(opt_cfg.learning_rate), momentum=float(opt_cfg.momentum))
    raise ValueError(f"opt.type: unsupported optimizer {opt_cfg.type!r} (expected 'AdamW' or 'SGD')")
