"""Learning-rate schedule stepped once per iteration: linear warmup, then cosine (or multi-step) decay (SPEC §D.9).

With n iterations per epoch, W = warmup_epochs·n warmup steps and M = (epochs + warmup_epochs)·n steps in all,
the lr used at iteration k (0-based) is

    k = 0          : warmup_start_lr (0: the very first update is a no-op step)
    1 <= k < W     : warmup_start_lr + k·(base − warmup_start_lr)/(W − 1)     (base is reached at k = W − 1)
    k >= W, cosine : eta_min + ½·(base − eta_min)·(1 + cos(π·(k − W)/(M − W)))
    k >= W, steps  : base · gamma^(number of milestones <= k − W), milestones in iterations after warmup

Upstream computes the same values with a chainable (incremental) update; here the closed form is used so that
the lr depends only on k, which makes resuming from a checkpoint exact.
"""
from __future__ import annotations

import bisect
import math
from typing import Sequence

import torch
from torch.optim.lr_scheduler import LRScheduler

from tal_kit.config import OptConfig


def learning_rate_at(step: int, *, base_lr: float, warmup_steps: int, total_steps: int,
                     schedule_type: str = "cosine", eta_min: float = 1e-8, milestones: Sequence[int] = (),
                     gamma: float = 0.1, warmup_start_lr: float = 0.0) -> float:
    """The learning rate used by the update at iteration ``step`` (0-based); see the module docstring."""
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if warmup_steps > 0 and step < warmup_steps:
        if step == 0:
            return warmup_start_lr
        return warmup_start_lr + step * (base_lr - warmup_start_lr) / (warmup_steps - 1)
    after_warmup = step - warmup_steps
    if schedule_type == "cosine":
        decay_steps = total_steps - warmup_steps
        return eta_min + 0.5 * (base_lr - eta_min) * (1.0 + math.cos(math.pi * after_warmup / decay_steps))
    if schedule_type == "multistep":
        return base_lr * gamma ** bisect.bisect_right(sorted(milestones), after_warmup)
    raise ValueError(f"opt.schedule_type: unsupported schedule {schedule_type!r} (expected 'cosine' or 'multistep')")


class IterationSchedule(LRScheduler):
    """A torch LR scheduler that sets every group's lr to :func:`learning_rate_at` of its base lr.

    Call ``step()`` after every optimizer step. Its state is the iteration counter plus the plain schedule
    parameters, so ``state_dict()`` round-trips through a ``weights_only`` checkpoint.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, *, warmup_steps: int, total_steps: int,
                 schedule_type: str = "cosine", eta_min: float = 1e-8, milestones: Sequence[int] = (),
                 gamma: float = 0.1, warmup_start_lr: float = 0.0, last_epoch: int = -1):
        if schedule_type == "cosine" and total_steps <= warmup_steps:
            raise ValueError(f"the cosine schedule needs more total steps ({total_steps}) than warmup steps "
                             f"({warmup_steps}); check opt.epochs")
        self.warmup_steps = int(warmup_steps)
        self.total_steps = int(total_steps)
        self.schedule_type = schedule_type
        self.eta_min = float(eta_min)
        self.milestones = [int(m) for m in milestones]
        self.gamma = float(gamma)
        self.warmup_start_lr = float(warmup_start_lr)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, step: int, base_lr: float) -> float:
        return learning_rate_at(step, base_lr=base_lr, warmup_steps=self.warmup_steps, total_steps=self.total_steps,
                                schedule_type=self.schedule_type, eta_min=self.eta_min, milestones=self.milestones,
                                gamma=self.gamma, warmup_start_lr=self.warmup_start_lr)

    def get_lr(self) -> list[float]:
        return [self.lr_at(self.last_epoch, base_lr) for base_lr in self.base_lrs]


def schedule_settings(opt_cfg: OptConfig, iters_per_epoch: int) -> dict:
    """The keyword arguments of :func:`learning_rate_at` (bar ``base_lr``) for ``cfg.opt`` at ``iters_per_epoch``
    iterations per epoch (``len(train_loader)``): training lasts ``opt_cfg.total_epochs`` epochs, ``epochs`` plus
    ``warmup_epochs`` when ``opt.warmup`` is on; milestones are epochs, counted in iterations."""
    if iters_per_epoch < 1:
        raise ValueError("the training loader yields no batch per epoch: fewer training videos than loader.batch_size?")
    warmup_epochs = int(opt_cfg.warmup_epochs) if opt_cfg.warmup else 0
    return dict(warmup_steps=warmup_epochs * iters_per_epoch, total_steps=opt_cfg.total_epochs * iters_per_epoch,
                schedule_type=opt_cfg.schedule_type, eta_min=float(opt_cfg.eta_min),
                milestones=[iters_per_epoch * int(s) for s in opt_cfg.schedule_steps],
                gamma=float(opt_cfg.schedule_gamma))


def make_scheduler(optimizer: torch.optim.Optimizer, opt_cfg: OptConfig, iters_per_epoch: int) -> IterationSchedule:
    """The schedule of ``cfg.opt`` for ``iters_per_epoch`` iterations per epoch (see :func:`schedule_settings`)."""
    return IterationSchedule(optimizer, **schedule_settings(opt_cfg, iters_per_epoch))
