"""AdamW parameter groups (SPEC §D.8): a hand-enumerated model and the oracle's make_optimizer on its own model."""
from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from tal_kit.training.optim import make_optimizer, parameter_groups
from tests import oracle


class ChannelLayerNorm(nn.Module):
    """A custom norm named like ActionFormer's (its weight must not be decayed)."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1, channels, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1))


class MaskedConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 4, 3, padding=1, bias=False)


class Scale(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = MaskedConv()
        self.norm = ChannelLayerNorm(4)
        self.ln = nn.LayerNorm(4)
        self.proj = nn.Linear(4, 2)
        self.scales = nn.ModuleList([Scale(), Scale()])
        self.rel_pe = nn.Parameter(torch.zeros(1, 3))
        self.register_buffer("points", torch.zeros(5))  # buffers are not parameters
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)


def test_hand_enumerated_groups():
    decay, no_decay = parameter_groups(Tiny())
    assert decay == ["embed.conv.weight", "proj.weight"]
    assert no_decay == sorted(["norm.weight", "norm.bias", "ln.weight", "ln.bias", "proj.bias",
                               "scales.0.scale", "scales.1.scale", "rel_pe"])


def test_unclassifiable_parameter_is_named():
    model = Tiny()
    model.proj.alpha = nn.Parameter(torch.zeros(1))
    with pytest.raises(ValueError, match=r"proj\.alpha \(Linear\)"):
        parameter_groups(model)


def test_make_optimizer_groups_and_defaults():
    cfg = SimpleNamespace(type="AdamW", learning_rate=2e-4, weight_decay=0.05, momentum=0.9)
    model = Tiny()
    optimizer = make_optimizer(model, cfg)
    assert isinstance(optimizer, torch.optim.AdamW)
    decay_group, no_decay_group = optimizer.param_groups
    assert decay_group["weight_decay"] == 0.05 and no_decay_group["weight_decay"] == 0.0
    assert decay_group["betas"] == (0.9, 0.999) and decay_group["eps"] == 1e-8 and decay_group["lr"] == 2e-4
    ids = {id(p) for p in decay_group["params"]}
    assert ids == {id(model.embed.conv.weight), id(model.proj.weight)}
    assert len(no_decay_group["params"]) == 8
    with pytest.raises(ValueError, match="opt.type"):
        make_optimizer(model, SimpleNamespace(**{**vars(cfg), "type": "Adam"}))


def build_oracle_model():
    cfg_module = oracle.import_module("core.config")
    modeling = oracle.import_module("modeling")
    cfg = copy.deepcopy(cfg_module.DEFAULTS)
    cfg["dataset"].update(input_dim=16, num_classes=3, max_seq_len=128)
    cfg["model"].update(embd_dim=16, fpn_dim=16, head_dim=16, n_mha_win_size=5, use_rel_pe=True, use_abs_pe=True)
    cfg = cfg_module._update_config(cfg)
    return modeling.make_meta_arch("LocPointTransformer", **cfg["model"])


def test_matches_oracle_make_optimizer_on_actionformer():
    """On upstream's own ActionFormer (rel_pe on, so every corner case is present), the groups coincide."""
    try:
        train_utils = oracle.import_module("utils.train_utils")
        model = build_oracle_model()
    except ImportError as err:
        pytest.skip(f"oracle unavailable: {err}")
    theirs = train_utils.make_optimizer(model, {"type": "AdamW", "learning_rate": 1e-3, "weight_decay": 0.05,
                                                "momentum": 0.9})
    names = {id(p): n for n, p in model.named_parameters()}
    their_decay = sorted(names[id(p)] for p in theirs.param_groups[0]["params"])
    their_no_decay = sorted(names[id(p)] for p in theirs.param_groups[1]["params"])
    decay, no_decay = parameter_groups(model)
    assert (decay, no_decay) == (their_decay, their_no_decay)
    assert any(n.endswith("rel_pe") for n in no_decay) and any(n.endswith(".scale") for n in no_decay)
