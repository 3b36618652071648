"""Exponential moving average of the model's weights (SPEC §D.10).

After every optimizer step each entry e of the EMA copy's state_dict (parameters *and* buffers) moves towards the
live model's entry m: e <- decay·e + (1 − decay)·m. With decay 0.999 it averages over roughly the last 1000 steps,
which smooths out the noise of small-batch training; every evaluation uses the EMA weights.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside a DistributedDataParallel/DataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else model


class ModelEMA:
    """A frozen deep copy of a model whose state follows the live model by an exponential moving average."""

    def __init__(self, model: nn.Module, decay: float = 0.999):
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"trainer.ema_decay must lie in [0, 1], got {decay}")
        self.decay = float(decay)
        self.module = copy.deepcopy(unwrap(model))
        self.module.eval()
        self.module.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One EMA step towards ``model``; floating entries are averaged, integer ones (counters) copied."""
        live = unwrap(model).state_dict()
        for name, ema_value in self.module.state_dict().items():
            value = live[name].to(ema_value.device)
            if ema_value.is_floating_point():
                # lerp_(m, 1 - d) is e + (1 - d)(m - e) = d·e + (1 - d)·m in one fused pass.
                ema_value.lerp_(value, 1.0 - self.decay)
            else:
                ema_value.copy_(value)

    @torch.no_grad()
    def set(self, model: nn.Module) -> None:
        """Copy ``model``'s state into the EMA (used when loading weights that had no EMA)."""
        self.module.load_state_dict(unwrap(model).state_dict())

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)
