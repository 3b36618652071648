"""The per-iteration LR schedule against SPEC §D.9's closed form (hand-computed) and the oracle's scheduler."""
from __future__ import annotations

import math

import pytest
import torch

from tal_kit.config import OptConfig
from tal_kit.training.schedule import IterationSchedule, learning_rate_at, make_scheduler
from tests import oracle


def opt_cfg(**overrides):
    values = dict(type="AdamW", learning_rate=1e-3, weight_decay=0.05, momentum=0.9, epochs=5, warmup=True,
                  warmup_epochs=5, schedule_type="cosine", schedule_steps=[], schedule_gamma=0.1, eta_min=1e-8)
    values.update(overrides)
    return OptConfig(**values)


def lrs_used(scheduler_factory, steps: int, base_lr: float = 1e-3) -> list[float]:
    """The lr each optimizer step runs with, when the scheduler is stepped after every optimizer step."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=base_lr)
    scheduler = scheduler_factory(optimizer)
    used = []
    for _ in range(steps):
        used.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return used


def test_hand_computed_values():
    # 2 iterations per epoch, 5 warmup epochs -> W = 10 warmup steps; 5 more epochs -> M = 20 steps in all.
    base, eta = 1e-3, 1e-8
    lr = lambda k: learning_rate_at(k, base_lr=base, warmup_steps=10, total_steps=20, eta_min=eta)  # noqa: E731
    assert lr(0) == 0.0                              # the first update runs at lr 0
    assert lr(1) == pytest.approx(base / 9, rel=1e-15)
    assert lr(5) == pytest.approx(5 * base / 9, rel=1e-15)
    assert lr(9) == pytest.approx(base, rel=1e-15)   # base is reached at W - 1 ...
    assert lr(10) == pytest.approx(base, rel=1e-15)  # ... and held at W
    assert lr(15) == pytest.approx(eta + 0.5 * (base - eta), rel=1e-15)  # cos(pi/2) = 0: halfway
    assert lr(20) == pytest.approx(eta, rel=1e-12)  # cos(pi) = -1: eta_min at the end
    assert lr(12) == pytest.approx(eta + 0.5 * (base - eta) * (1 + math.cos(math.pi * 0.2)), rel=1e-15)


def test_scheduler_drives_optimizer_with_closed_form():
    cfg = opt_cfg()
    used = lrs_used(lambda o: make_scheduler(o, cfg, iters_per_epoch=3), steps=30)
    expected = [learning_rate_at(k, base_lr=1e-3, warmup_steps=15, total_steps=30) for k in range(30)]
    assert used == expected
    assert used[0] == 0.0 and cfg.total_epochs == 10


def test_matches_oracle_cosine_scheduler():
    try:
        train_utils = oracle.import_module("utils.train_utils")
    except ImportError as err:
        pytest.skip(f"oracle unavailable: {err}")
    cfg = opt_cfg(epochs=7, warmup_epochs=5)
    n = 13
    steps = (7 + 5) * n
    ours = lrs_used(lambda o: make_scheduler(o, cfg, iters_per_epoch=n), steps)
    theirs = lrs_used(lambda o: train_utils.make_scheduler(o, vars(cfg), n), steps)
    assert ours[0] == theirs[0] == 0.0
    # The oracle updates incrementally (chainable form), so it drifts by rounding only.
    assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-15)


def test_matches_oracle_multistep_scheduler():
    try:
        train_utils = oracle.import_module("utils.train_utils")
    except ImportError as err:
        pytest.skip(f"oracle unavailable: {err}")
    cfg = opt_cfg(schedule_type="multistep", schedule_steps=[2, 4], schedule_gamma=0.5, epochs=6, warmup_epochs=2)
    n = 4
    ours = lrs_used(lambda o: make_scheduler(o, cfg, iters_per_epoch=n), 8 * n)
    theirs = lrs_used(lambda o: train_utils.make_scheduler(o, vars(cfg), n), 8 * n)
    assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-15)
    # hand check: after warmup (8 steps) milestones fall 8 and 16 steps later
    assert ours[8] == 1e-3 and ours[16] == 5e-4 and ours[24] == 2.5e-4


def test_state_dict_resume_continues_the_same_lrs():
    cfg = opt_cfg()
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1e-3)
    scheduler = make_scheduler(optimizer, cfg, iters_per_epoch=4)
    for _ in range(17):
        optimizer.step()
        scheduler.step()
    state = scheduler.state_dict()
    torch.save(state, buffer := __import__("io").BytesIO())
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)  # plain values only: loads without unpickling code

    optimizer2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    resumed = make_scheduler(optimizer2, cfg, iters_per_epoch=4)
    resumed.load_state_dict(loaded)
    for _ in range(10):
        optimizer.step()
        scheduler.step()
        optimizer2.step()
        resumed.step()
        assert optimizer2.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]
    assert resumed.last_epoch == 27


def test_single_warmup_step_and_errors():
    # W = 1: step 0 is the warmup start, step 1 already base (no division by W - 1 = 0)
    assert learning_rate_at(0, base_lr=1.0, warmup_steps=1, total_steps=3, eta_min=0.0) == 0.0
    assert learning_rate_at(1, base_lr=1.0, warmup_steps=1, total_steps=3, eta_min=0.0) == 1.0
    with pytest.raises(ValueError, match="no batch"):
        make_scheduler(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), opt_cfg(), 0)
    with pytest.raises(ValueError, match="schedule_type"):
        learning_rate_at(3, base_lr=1.0, warmup_steps=1, total_steps=5, schedule_type="linear")
    param = torch.nn.Parameter(torch.zeros(1))
    with pytest.raises(ValueError, match="opt.epochs"):
        IterationSchedule(torch.optim.SGD([param], lr=1.0), warmup_steps=5, total_steps=5)
