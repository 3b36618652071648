"""Model EMA against the formula e <- d·e + (1 − d)·m (SPEC §D.10), by hand and against the oracle's ModelEma."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from tal_kit.training.ema import ModelEMA, unwrap
from tests import oracle


class WithBuffers(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 2)
        self.register_buffer("normalizer", torch.tensor(100.0))
        self.register_buffer("counter", torch.tensor(0, dtype=torch.int64))


def test_exact_hand_worked_steps():
    # decay 0.5 and dyadic values: every intermediate is exactly representable
    model = WithBuffers()
    with torch.no_grad():
        model.linear.weight.fill_(1.0)
        model.normalizer.fill_(8.0)
    ema = ModelEMA(model, decay=0.5)
    with torch.no_grad():
        model.linear.weight.fill_(3.0)
        model.normalizer.fill_(4.0)
        model.counter.fill_(7)
    ema.update(model)
    assert torch.equal(ema.module.linear.weight, torch.full((2, 3), 2.0))   # 0.5·1 + 0.5·3
    assert ema.module.normalizer.item() == 6.0                              # buffers are averaged too
    assert ema.module.counter.item() == 7                                    # integer buffers are copied
    with torch.no_grad():
        model.linear.weight.fill_(4.0)
    ema.update(model)
    assert torch.equal(ema.module.linear.weight, torch.full((2, 3), 3.0))   # 0.5·2 + 0.5·4


def test_formula_in_float64_over_many_steps():
    torch.manual_seed(0)
    model = nn.Linear(5, 4).double()
    ema = ModelEMA(model, decay=0.999)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    for _ in range(50):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        ema.update(model)
        expected = {k: 0.999 * expected[k] + 0.001 * v for k, v in model.state_dict().items()}
    for key, value in ema.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=1e-12, atol=1e-14)


def test_frozen_copy_and_wrappers():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    ema = ModelEMA(nn.DataParallel(model), decay=0.9)
    assert unwrap(nn.DataParallel(model)) is model
    assert not ema.module.training
    assert all(not p.requires_grad for p in ema.module.parameters())
    assert ema.module[0].weight.data_ptr() != model[0].weight.data_ptr()  # a copy, not a view
    with pytest.raises(ValueError, match="ema_decay"):
        ModelEMA(model, decay=1.5)


def test_matches_oracle_model_ema():
    try:
        train_utils = oracle.import_module("utils.train_utils")
    except ImportError as err:
        pytest.skip(f"oracle unavailable: {err}")
    torch.manual_seed(1)
    model = WithBuffers()
    ours, theirs = ModelEMA(model), train_utils.ModelEma(model)
    for _ in range(20):
        with torch.no_grad():
            model.linear.weight.add_(torch.randn_like(model.linear.weight))
            model.normalizer.mul_(0.9).add_(5.0)
        ours.update(model)
        theirs.update(model)
    for key, value in theirs.module.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(ours.state_dict()[key], value, rtol=1e-6, atol=1e-7)
