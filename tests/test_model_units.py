"""The model's parts against hand-worked cases and plain dense reimplementations written here (no oracle needed)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tal_kit.config import load_config
from tal_kit.model import ActionFormer, CheckpointMismatchError, load_actionformer_checkpoint, postprocess
from tal_kit.model.assignment import assign_targets
from tal_kit.model.attention import global_attention, local_window_attention
from tal_kit.model.decode import decode_candidates
from tal_kit.model.heads import PyramidLayout
from tal_kit.model.layers import (ChannelLayerNorm, LayerScaleDropPath, MaskedConv1d, _ChannelLayerNormFunction,
                                  sinusoid_position_table)
from tal_kit.model.losses import diou_loss_1d, sigmoid_focal_loss, smooth_labels, updated_loss_normalizer
from tal_kit.model.points import pyramid_points


# ---------------------------------------------------------------------------------------------------------------------
# attention
# ---------------------------------------------------------------------------------------------------------------------

def dense_band_attention(q, k, v, key_mask, window, rel_pe=None):
    """Full T x T scores, then everything outside |i - j| <= h, or on a padded key, masked: the definition."""
    T = q.shape[2]
    half = window // 2
    scores = q @ k.transpose(-1, -2)
    offset = torch.arange(T)[None, :] - torch.arange(T)[:, None]  # j - i
    if rel_pe is not None:
        scores = scores + rel_pe[:, (offset + half).clamp(0, 2 * half)][None]
    allowed = (offset.abs() <= half)[None, None] & key_mask[:, None, None, :]
    return torch.softmax(scores.masked_fill(~allowed, -1e4), -1) @ v


@pytest.mark.parametrize("T,window,block", [(50, 19, None), (37, 7, 8), (64, 25, None), (5, 9, None), (96, 3, 4)])
def test_local_attention_equals_dense_band(T, window, block):
    gen = torch.Generator().manual_seed(T)
    B, H, d = 2, 3, 8
    q, k, v = (torch.randn(B, H, T, d, generator=gen, dtype=torch.float64) for _ in range(3))
    key_mask = torch.arange(T)[None] < torch.tensor([T, max(1, T // 2)])[:, None]
    rel_pe = torch.randn(H, window, generator=gen, dtype=torch.float64)
    for bias in (None, rel_pe):
        expected = dense_band_attention(q, k, v, key_mask, window, bias)
        got = local_window_attention(q, k, v, key_mask, window, rel_pe=bias, block_size=block)
        valid = key_mask[:, None, :, None].expand_as(got)  # rows of padded queries are discarded by the model
        assert torch.allclose(got[valid], expected[valid], atol=1e-12)


def test_local_attention_gradients():
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 11, 4, generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(3))
    rel_pe = torch.randn(2, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    key_mask = torch.arange(11)[None] < 9
    torch.autograd.gradcheck(lambda *a: local_window_attention(*a[:3], key_mask, 5, rel_pe=a[3], block_size=4),
                             (q, k, v, rel_pe))


def test_global_attention_ignores_padded_keys():
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 2, 6, 4, generator=gen) for _ in range(3))
    key_mask = torch.tensor([[True, True, True, False, False, False]])
    out = global_attention(q, k, v, key_mask)
    expected = torch.softmax(q @ k[:, :, :3].transpose(-1, -2), -1) @ v[:, :, :3]
    assert torch.allclose(out, expected, atol=1e-6)
    v2 = v.clone()
    v2[:, :, 3:] = 1e6  # whatever sits on padding does not leak
    assert torch.allclose(global_attention(q, k, v2, key_mask), out)


# ---------------------------------------------------------------------------------------------------------------------
# layers
# ---------------------------------------------------------------------------------------------------------------------

def test_masked_conv_and_layer_norm():
    conv = MaskedConv1d(4, 4, 3, stride=2, groups=4, bias=False)
    x = torch.randn(2, 4, 8)
    mask = (torch.arange(8)[None] < torch.tensor([8, 5])[:, None])[:, None]
    out, out_mask = conv(x, mask)
    assert out_mask[:, 0].tolist() == [[True] * 4, [True, True, True, False]]  # steps 0, 2, 4, 6 of the input mask
    assert torch.all(out[1, :, 3] == 0)
    with pytest.raises(ValueError, match="divisible"):
        conv(torch.randn(1, 4, 7), torch.ones(1, 1, 7, dtype=torch.bool))

    norm = ChannelLayerNorm(4)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
        norm.bias.fill_(0.5)
    mu = x.mean(1, keepdim=True)
    var = ((x - mu) ** 2).mean(1, keepdim=True)
    expected = (x - mu) / torch.sqrt(var + 1e-5) * norm.weight[None, :, None] + 0.5
    for fused in (False, True):  # the CPU formula and the fused kernel used on GPUs
        norm.fused = fused
        assert torch.allclose(norm(x), expected, atol=1e-5)
    # the CPU path's hand-written backward, against finite differences
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 7, dtype=torch.float64, generator=gen, requires_grad=True)
    weight = (0.5 + torch.rand(5, dtype=torch.float64, generator=gen)).requires_grad_()
    bias = torch.randn(5, dtype=torch.float64, generator=gen).requires_grad_()
    torch.autograd.gradcheck(lambda *a: _ChannelLayerNormFunction.apply(*a, 1e-5), (x, weight, bias))


def test_drop_path_statistics_and_layer_scale():
    torch.manual_seed(0)
    x = torch.ones(20000, 3, 2)
    unit_gain = LayerScaleDropPath(3, drop_prob=0.25, init_scale=1.0)  # a gain of 1: stochastic depth alone
    out = unit_gain.train()(x)
    kept = out[:, 0, 0] != 0
    assert abs(kept.float().mean().item() - 0.75) < 0.02  # a whole sample is dropped with probability 0.25
    assert torch.allclose(out[kept], torch.full_like(out[kept], 1 / 0.75))  # kept ones rescaled
    assert torch.equal(unit_gain.eval()(x), x)  # identity in evaluation
    layer = LayerScaleDropPath(3, drop_prob=0.5).eval()
    assert torch.allclose(layer(torch.ones(1, 3, 2)), torch.full((1, 3, 2), 1e-4))


def test_sinusoid_table_values():
    table = sinusoid_position_table(5, 6)[0]  # [D, T]
    assert table.shape == (6, 5)
    assert table[0, 1].item() == pytest.approx(math.sin(1.0))
    assert table[1, 1].item() == pytest.approx(math.cos(1.0))
    assert table[2, 3].item() == pytest.approx(math.sin(3 / 10000 ** (2 / 6)))
    assert table[5, 4].item() == pytest.approx(math.cos(4 / 10000 ** (4 / 6)))


# ---------------------------------------------------------------------------------------------------------------------
# points and label assignment
# ---------------------------------------------------------------------------------------------------------------------

def test_pyramid_points():
    points = pyramid_points([4, 2], [1, 2], [[0, 4], [4, 8]])
    assert points.tolist() == [[0, 0, 4, 1], [1, 0, 4, 1], [2, 0, 4, 1], [3, 0, 4, 1], [0, 4, 8, 2], [2, 4, 8, 2]]


def three_level_points():
    return pyramid_points([16, 8, 4], [1, 2, 4], [[0, 4], [4, 8], [8, 16]])


def test_assignment_hand_worked():
    """Segment [2, 6]: level 0 centre region (2.5, 5.5) holds t = 3, 4, 5 (reach 3, 2, 3 within [0, 4]); the
    level-1 point t = 4 is inside but its reach 2 is below [4, 8]. Segment [0, 16]: only level 1 t = 8 (reach 8)
    and level 2 t = 4, 8, 12 (reach 12, 8, 12 within [8, 16]) qualify."""
    points = three_level_points()
    cls, reg = assign_targets(points, torch.tensor([[2.0, 6.0], [0.0, 16.0]]), torch.tensor([1, 2]), 3)
    positives = {int(i): (points[i, 0].item(), points[i, 3].item(), cls[i].tolist(), reg[i].tolist())
                 for i in torch.nonzero(cls.sum(1)).flatten()}
    assert positives == {
        3: (3.0, 1.0, [0, 1, 0], [1.0, 3.0]), 4: (4.0, 1.0, [0, 1, 0], [2.0, 2.0]),
        5: (5.0, 1.0, [0, 1, 0], [3.0, 1.0]),
        16 + 4: (8.0, 2.0, [0, 0, 1], [4.0, 4.0]),
        24 + 1: (4.0, 4.0, [0, 0, 1], [1.0, 3.0]), 24 + 2: (8.0, 4.0, [0, 0, 1], [2.0, 2.0]),
        24 + 3: (12.0, 4.0, [0, 0, 1], [3.0, 1.0]),
    }


def test_assignment_shortest_wins_and_multilabel():
    """[2, 6] and [1, 7] both cover t = 3..5 at level 0: the shorter one gives the regression target; a copy of
    [2, 6] with another label, and a segment within 1e-3 of its length, add their labels (multi-label)."""
    points = three_level_points()
    segments = torch.tensor([[1.0, 7.0], [2.0, 6.0], [2.0, 6.0], [2.0, 6.0005], [2.0, 6.01]])
    cls, reg = assign_targets(points, segments, torch.tensor([4, 1, 0, 3, 2]), 5)
    for t in (3, 4, 5):
        assert cls[t].tolist() == [1, 1, 0, 1, 0]
        assert reg[t].tolist() == [t - 2.0, 6.0 - t]
    # without centre sampling the whole interior counts, still bounded by the regression range
    cls, _ = assign_targets(points, torch.tensor([[2.0, 6.0]]), torch.tensor([0]), 1, center_sample="none")
    assert torch.nonzero(cls[:16, 0]).flatten().tolist() == [3, 4, 5]
    cls, reg = assign_targets(points, torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), 2)
    assert cls.abs().sum() == 0 and reg.abs().sum() == 0


# ---------------------------------------------------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------------------------------------------------

def test_focal_and_diou_hand_worked():
    # logit 0 (p = 0.5), target 1: alpha_t 0.25, (1 - p_t)^2 = 0.25, CE = log 2
    loss = sigmoid_focal_loss(torch.tensor([0.0, 0.0, 2.0]), torch.tensor([1.0, 0.0, 0.95]))
    p = 1 / (1 + math.exp(-2.0))
    ce = -(0.95 * math.log(p) + 0.05 * math.log(1 - p))
    p_t = p * 0.95 + (1 - p) * 0.05
    alpha_t = 0.25 * 0.95 + 0.75 * 0.05
    assert loss.tolist() == pytest.approx([0.0625 * math.log(2), 0.1875 * math.log(2), alpha_t * (1 - p_t) ** 2 * ce],
                                          rel=1e-6)
    # pred (1, 3) vs target (2, 2): I = 3, U = 5, IoU 0.6; enclosing 5, centre gap 1 -> 1 - 0.6 + 0.04
    assert diou_loss_1d(torch.tensor([[1.0, 3.0]]), torch.tensor([[2.0, 2.0]])).item() == pytest.approx(0.44)
    assert diou_loss_1d(torch.tensor([[2.0, 2.0]]), torch.tensor([[2.0, 2.0]])).item() == pytest.approx(0.0)
    assert smooth_labels(torch.tensor([1.0, 0.0]), 0.1, 1).tolist() == pytest.approx([0.95, 0.05])
    assert updated_loss_normalizer(torch.tensor(100.0, dtype=torch.float64), torch.tensor(0)).item() == 90.1
    assert updated_loss_normalizer(torch.tensor(100.0, dtype=torch.float64), torch.tensor(30)).item() == 93.0


@pytest.fixture(scope="module")
def demo_model():
    torch.manual_seed(0)
    return ActionFormer(load_config("demo", overrides=["model.embd_dim=32", "model.fpn_dim=32",
                                                       "model.head_dim=32", "dataset.max_seq_len=256"]))


def demo_batch(model, lengths=(256, 150), seed=0):
    gen = torch.Generator().manual_seed(seed)
    T = model.max_seq_len
    mask = torch.arange(T)[None] < torch.tensor(lengths)[:, None]
    feats = torch.randn(len(lengths), model.input_dim, T, generator=gen) * mask[:, None]
    return feats, mask


def test_losses_normalizer_and_errors(demo_model):
    feats, mask = demo_batch(demo_model)
    segments = [torch.tensor([[10.0, 30.0], [50.0, 120.0]]), torch.tensor([[3.0, 9.0]])]
    labels = [torch.tensor([1, 2]), torch.tensor([0])]
    demo_model.loss_normalizer.fill_(100.0)
    demo_model.train()
    out = demo_model(feats, mask)
    cls_t, _ = demo_model.targets(out, segments, labels)
    num_pos = int((cls_t.sum(-1) > 0).logical_and(out.all_masks).sum())
    losses = demo_model.losses(out, segments, labels)
    assert demo_model.loss_normalizer.item() == pytest.approx(0.9 * 100 + 0.1 * num_pos)
    assert torch.allclose(losses["final_loss"], losses["cls_loss"] + losses["reg_loss"])
    demo_model.eval()
    demo_model.losses(out, segments, labels)
    assert demo_model.loss_normalizer.item() == pytest.approx(0.9 * 100 + 0.1 * num_pos)  # unchanged in eval
    assert "loss_normalizer" in demo_model.state_dict()
    # no positives at all: the regression loss is zero and still differentiable
    empty = [torch.zeros(0, 2), torch.zeros(0, 2)]
    no_labels = [torch.zeros(0, dtype=torch.long)] * 2
    losses = demo_model.losses(out, empty, no_labels)
    assert losses["reg_loss"].item() == 0.0 and losses["reg_loss"].requires_grad
    with pytest.raises(ValueError, match="batch item 1: labels \\[25\\] fall outside 0..19"):
        demo_model.losses(out, segments, [labels[0], torch.tensor([25])])


def test_forward_input_errors(demo_model):
    feats, mask = demo_batch(demo_model)
    with pytest.raises(ValueError, match=r"feats must be \[B, 64, T\]"):
        demo_model(feats[:, :10], mask)
    with pytest.raises(ValueError, match="bool"):
        demo_model(feats, mask.float())
    with pytest.raises(ValueError, match="multiple of 32"):
        demo_model(feats[..., :100], mask[:, :100])


def test_heads_in_one_pass_equal_heads_per_level(demo_model):
    """Joining the levels with zero gaps gives what each level would give on its own."""
    demo_model.eval()
    feats, mask = demo_batch(demo_model)
    with torch.no_grad():
        levels, masks = demo_model.neck(*demo_model.backbone(feats, mask[:, None]))
        joined = PyramidLayout.join(levels, masks, demo_model.head_gap)
        cls_all = demo_model.cls_head(joined).transpose(1, 2)[:, joined.steps].split(joined.lengths, dim=1)
        reg_all = demo_model.reg_head(joined).transpose(1, 2)[:, joined.steps].split(joined.lengths, dim=1)
        for level, (x, m) in enumerate(zip(levels, masks)):
            alone = PyramidLayout.join([x], [m], demo_model.head_gap)
            assert torch.allclose(demo_model.cls_head(alone).transpose(1, 2), cls_all[level], atol=1e-5)
            offsets = F.relu(demo_model.reg_head.regressor(demo_model.reg_head.trunk(alone), alone.mask)[0]
                             * demo_model.reg_head.scale[level])
            assert torch.allclose(offsets.transpose(1, 2), reg_all[level], atol=1e-5)
            alone = PyramidLayout.join([x], [m], demo_model.head_gap, first_level=level)
            assert torch.allclose(demo_model.reg_head(alone).transpose(1, 2), reg_all[level], atol=1e-5)
        # and the model itself gives the same in training mode (joined) and evaluation mode (level by level)
        out_eval = demo_model(feats, mask)
        demo_model.train()
        for module in demo_model.modules():
            if isinstance(module, LayerScaleDropPath):
                module.drop_prob, module.saved = 0.0, module.drop_prob
        out_train = demo_model(feats, mask)
        for module in demo_model.modules():
            if isinstance(module, LayerScaleDropPath):
                module.drop_prob = module.saved
        assert torch.allclose(out_eval.all_cls_logits, out_train.all_cls_logits, atol=1e-5)
        assert torch.allclose(out_eval.all_offsets, out_train.all_offsets, atol=1e-5)
        assert torch.equal(out_eval.all_masks, out_train.all_masks)


def test_classifier_prior_bias():
    cfg = load_config("demo", overrides=["train_cfg.head_empty_cls=[3]"])
    model = ActionFormer(cfg)
    bias = model.cls_head.classifier.bias
    assert torch.sigmoid(bias[0]).item() == pytest.approx(0.01, rel=1e-5)
    assert torch.sigmoid(bias[3]).item() == pytest.approx(1e-6, rel=1e-3)


# ---------------------------------------------------------------------------------------------------------------------
# decoding and postprocessing
# ---------------------------------------------------------------------------------------------------------------------

def test_decode_hand_worked():
    """Two levels, two classes. Level 0 (stride 1): step 1 class 1 scores sigmoid(2) and becomes (1 - 0.5, 1 + 1.5);
    step 3 is padding. Level 1 (stride 2): step 1 (t = 2) class 0, offsets (1, 1) -> (0, 4); its class-1 score is
    below the threshold, and with pre_nms_topk 1 only the best pair per level survives."""
    big, low = 2.0, -10.0
    cls = [torch.tensor([[low, low], [low, big], [low, 0.0], [5.0, 5.0]]), torch.tensor([[low, low], [3.0, 1.0]])]
    offsets = [torch.tensor([[1.0, 1.0], [0.5, 1.5], [0.0, 0.01], [1.0, 1.0]]), torch.tensor([[1.0, 1.0], [1.0, 1.0]])]
    masks = [torch.tensor([True, True, True, False]), torch.tensor([True, True])]
    points = list(pyramid_points([4, 2], [1, 2], [[0, 4], [4, 8]]).split([4, 2]))
    out = decode_candidates(cls, offsets, masks, points, pre_nms_thresh=0.001, pre_nms_topk=1, duration_thresh=0.05)
    assert out["segments"].tolist() == [[0.5, 2.5], [0.0, 4.0]]
    assert out["scores"].tolist() == pytest.approx([torch.sigmoid(torch.tensor(big)).item(),
                                                    torch.sigmoid(torch.tensor(3.0)).item()])
    assert out["labels"].tolist() == [1, 0]
    # with a larger top-k the level-0 step-2 candidate (length 0.01 <= duration_thresh) is still dropped
    out = decode_candidates(cls, offsets, masks, points, pre_nms_thresh=0.001, pre_nms_topk=10, duration_thresh=0.05)
    assert len(out["scores"]) == 3 and out["labels"].tolist() == [1, 0, 1]


def test_postprocess_seconds_and_clipping():
    """THUMOS grid: seconds = (4 g + 8) / 30; clipped to [0, duration]."""
    cfg = load_config("thumos14", overrides=["test_cfg.nms_method=none"])
    candidates = [{"segments": torch.tensor([[-5.0, 13.0], [100.0, 400.0]]), "scores": torch.tensor([0.9, 0.5]),
                   "labels": torch.tensor([3, 7])}]
    batch = {"video_ids": ["video_test_0000004"], "fps": [30.0], "duration": [33.5], "feat_stride": [4],
             "num_frames": [16]}
    (result,) = postprocess(candidates, batch, cfg.test_cfg)
    assert result["video_id"] == "video_test_0000004"
    assert result["segments"].flatten().tolist() == pytest.approx([0.0, 2.0, 408 / 30, 33.5])
    assert result["labels"].tolist() == [3, 7]
    with pytest.raises(ValueError, match="fps must be positive"):
        postprocess(candidates, {**batch, "fps": [0.0]}, cfg.test_cfg)


def test_predict_end_to_end(demo_model):
    """predict = eval forward + candidates + NMS + seconds, on a collated batch (B = 1, as upstream evaluates)."""
    demo_model.train()
    feats, mask = demo_batch(demo_model, lengths=(150,))
    batch = {"feats": feats, "mask": mask, "video_ids": ["v1"], "fps": [30.0], "duration": [20.0],
             "feat_stride": [4.0], "num_frames": [16.0]}
    (result,) = demo_model.predict(batch)
    assert demo_model.training  # mode restored
    cfg = demo_model.test_cfg
    assert 0 < len(result["scores"]) <= cfg.max_seg_num
    assert torch.all(result["scores"][:-1] >= result["scores"][1:])
    assert torch.all(result["segments"] >= 0) and torch.all(result["segments"] <= 20.0)
    demo_model.eval()
    with torch.no_grad():
        length = demo_model.inference_length(150)
        manual = postprocess([demo_model.candidates(demo_model(feats[..., :length], mask[:, :length]), 0)], batch, cfg)
    assert torch.allclose(manual[0]["segments"], result["segments"]) and torch.equal(manual[0]["labels"],
                                                                                    result["labels"])


# ---------------------------------------------------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------------------------------------------------

def test_checkpoint_formats_and_errors(demo_model, tmp_path):
    state = demo_model.state_dict()
    # a tal_kit training checkpoint: the EMA weights by default
    ema_state = {k: v + 1 if v.is_floating_point() else v for k, v in state.items()}
    path = tmp_path / "epoch_001.pt"
    torch.save({"format": "tal_kit.train_checkpoint", "model": state, "ema": ema_state}, path)
    loaded = load_actionformer_checkpoint(path)
    assert torch.equal(loaded["reg_head.scale"], ema_state["reg_head.scale"])
    assert torch.equal(load_actionformer_checkpoint(path, use_ema=False)["reg_head.scale"], state["reg_head.scale"])

    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        load_actionformer_checkpoint(tmp_path / "missing.pth.tar")
    (tmp_path / "garbage.pth.tar").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pth.tar: cannot be read"):
        load_actionformer_checkpoint(tmp_path / "garbage.pth.tar")
    broken = dict(state)
    del broken["backbone.stem.0.attn.proj.weight"]
    broken["backbone.extra.weight"] = torch.zeros(1)
    broken["reg_head.scale"] = torch.ones(4)
    with pytest.raises(CheckpointMismatchError) as err:
        load_actionformer_checkpoint(broken, demo_model)
    message = str(err.value)
    assert "missing (1): backbone.stem.0.attn.proj.weight" in message
    assert "unexpected (1): backbone.extra.weight" in message
    assert "reg_head.scale: checkpoint [4], model [6]" in message
