"""tal_kit's ActionFormer against the reference implementation (the test-only oracle ``actionformer==1.5.0``).

Both models are built from the same tal_kit preset; the oracle's weights are converted with tal_kit's checkpoint
converter (so the conversion is under test too) and both run on the same batch. Required: logits, offsets and each
loss within 1e-5, in training mode (drop-path off) and in evaluation mode.

The oracle follows upstream ActionFormer HEAD, tal_kit the InternVideo fork (SPEC §A.4). Where they differ the
comparison uses settings on which they agree:
  (e) fpn_start_level: the oracle's default 0 is the fork's only behaviour;
  (f) the classifier prior bias: HEAD sets it only for prior_prob > 0, the fork always; equal at 0.01;
  (g) MaskedConv1D's strided mask: HEAD interpolates to the output length, the fork takes T // stride; equal for
      even lengths, and every length here is a multiple of the pyramid's total stride.
"""
from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from tal_kit.config import load_config
from tal_kit.model import ActionFormer, CheckpointMismatchError, load_actionformer_checkpoint
from tal_kit.model.layers import ChannelLayerNorm, LayerScaleDropPath
from tests import oracle

TOL = 1e-5


@pytest.fixture(scope="module")
def meta_archs():
    try:
        return oracle.import_module("modeling.meta_archs")
    except ImportError as exc:
        pytest.skip(f"oracle unavailable: {exc}")


def reference_model(meta_archs, cfg):
    """The oracle's PtTransformer with the same hyper-parameters as tal_kit's config."""
    d, m = cfg.dataset, cfg.model
    return meta_archs.PtTransformer(
        backbone_type=m.backbone_type, fpn_type=m.fpn_type, backbone_arch=tuple(m.backbone_arch),
        scale_factor=m.scale_factor, input_dim=d.input_dim, max_seq_len=d.max_seq_len,
        max_buffer_len_factor=m.max_buffer_len_factor, n_head=m.n_head, n_mha_win_size=m.n_mha_win_size,
        embd_kernel_size=m.embd_kernel_size, embd_dim=m.embd_dim, embd_with_ln=m.embd_with_ln, fpn_dim=m.fpn_dim,
        fpn_with_ln=m.fpn_with_ln, fpn_start_level=0, head_dim=m.head_dim,
        regression_range=[tuple(r) for r in m.regression_range], head_num_layers=m.head_num_layers,
        head_kernel_size=m.head_kernel_size, head_with_ln=m.head_with_ln, use_abs_pe=m.use_abs_pe,
        use_rel_pe=m.use_rel_pe, num_classes=d.num_classes, train_cfg=dataclasses.asdict(cfg.train_cfg),
        test_cfg=dataclasses.asdict(cfg.test_cfg))


@torch.no_grad()
def perturb(model, seed=0):
    """Move every parameter away from its initial value (LayerScale from 1e-4 to O(1), norms away from 1/0), so
    that every path of the network, attention included, visibly shapes the outputs."""
    gen = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        noise = torch.randn(p.shape, generator=gen)
        if name.endswith("drop_path_attn.scale") or name.endswith("drop_path_mlp.scale"):
            p.copy_(0.5 + 0.5 * torch.rand(p.shape, generator=gen))
        elif "norm" in name and name.endswith("weight"):
            p.copy_(1.0 + 0.2 * noise)
        elif name.endswith("bias") or name.endswith("rel_pe"):
            p.add_(0.1 * noise)
        elif name.endswith(".scale"):  # per-level regression scales
            p.copy_(0.8 + 0.4 * torch.rand(p.shape, generator=gen))


def build_pair(meta_archs, preset, overrides=(), seed=0):
    cfg = load_config(preset, overrides=list(overrides))
    torch.manual_seed(seed)
    ref = reference_model(meta_archs, cfg)
    perturb(ref, seed)
    ours = ActionFormer(cfg)
    # the oracle's state dict, as DataParallel would save it, through tal_kit's converter
    load_actionformer_checkpoint({"module." + k: v for k, v in ref.state_dict().items()}, ours)
    return cfg, ref, ours


def make_batch(cfg, lengths, seed=0):
    """Random features, a mask and ground truth in grid units with segments of every scale, a padded video,
    a duplicated segment with two labels (the THUMOS CliffDiving/Diving case) and a video without actions."""
    gen = torch.Generator().manual_seed(seed)
    T, C, K = cfg.dataset.max_seq_len, cfg.dataset.input_dim, cfg.dataset.num_classes
    feats = torch.randn(len(lengths), C, T, generator=gen)
    mask = torch.arange(T)[None] < torch.tensor(lengths)[:, None]
    feats = feats * mask[:, None]
    segments, labels = [], []
    for b, length in enumerate(lengths):
        if b == 2:
            segments.append(torch.zeros(0, 2))
            labels.append(torch.zeros(0, dtype=torch.long))
            continue
        segs = [[2.3, 5.1], [10.0, 31.5], [40.2, 41.0], [60.5, 160.0], [0.0, length - 1.5], [12.0, 30.0],
                [12.0, 30.0]]
        segs = torch.tensor(segs) * (length / T)
        labs = torch.randint(0, K, (len(segs),), generator=gen)
        segments.append(segs)
        labels.append(labs)
    return feats, mask, segments, labels


def reference_forward(ref, feats, mask):
    """The oracle's PtTransformer.forward up to the head outputs (its own modules, in its own order)."""
    f, m = ref.backbone(feats, mask[:, None, :])
    f, m = ref.neck(f, m)
    points = ref.point_generator(f)
    cls = [x.permute(0, 2, 1) for x in ref.cls_head(f, m)]
    off = [x.permute(0, 2, 1) for x in ref.reg_head(f, m)]
    return points, [x.squeeze(1) for x in m], cls, off


def reference_losses(ref, points, masks, cls, off, segments, labels):
    gt_cls, gt_off = ref.label_points(points, segments, labels)
    return ref.losses(masks, cls, off, gt_cls, gt_off)


def max_diff(a, b):
    return (a - b).abs().max().item() if a.numel() else 0.0


def disable_drop_path(*models):
    for model in models:
        for module in model.modules():
            if isinstance(module, LayerScaleDropPath) or type(module).__name__ == "AffineDropPath":
                module.drop_prob = 0.0


def compare(ref, ours, feats, mask, segments, labels, train: bool, check_grads: bool):
    ref.train(train)
    ours.train(train)
    ref.zero_grad()
    ours.zero_grad()
    points, masks, cls, off = reference_forward(ref, feats, mask)
    out = ours(feats, mask)
    diffs = {"cls_logits": max(max_diff(a, b) for a, b in zip(cls, out.cls_logits)),
             "offsets": max(max_diff(a, b) for a, b in zip(off, out.offsets))}
    assert all(torch.equal(a, b) for a, b in zip(masks, out.masks))
    assert torch.equal(torch.cat(points), out.points)

    ref.loss_normalizer = 100.0
    ours.loss_normalizer.fill_(100.0)
    ref_losses = reference_losses(ref, points, masks, cls, off, segments, labels)
    if not train:  # the oracle updates its normalizer on every call; tal_kit (like upstream training) only in train
        ours.loss_normalizer.fill_(ref.loss_normalizer)
    our_losses = ours.losses(out, segments, labels)
    assert ours.loss_normalizer.item() == pytest.approx(ref.loss_normalizer, rel=1e-12)
    for key in ("cls_loss", "reg_loss", "final_loss"):
        diffs[key] = abs(ref_losses[key].item() - our_losses[key].item())
    if check_grads:
        ref_losses["final_loss"].backward()
        our_losses["final_loss"].backward()
        ours_grads = {name: p.grad for name, p in ours.named_parameters()}
        converted = load_actionformer_checkpoint({n: p.grad for n, p in ref.named_parameters()})
        # relative to each parameter's largest gradient, with a floor at 1% of the largest gradient in the model:
        # tiny gradients are sums of cancelling terms (a key bias shifts a whole softmax row and gets exactly zero),
        # where float rounding alone gives large ratios
        floor = 1e-2 * max(g.abs().max().item() for g in converted.values())
        diffs["grad_rel"] = max(max_diff(g, ours_grads[name]) / (g.abs().max().item() + floor)
                                for name, g in converted.items())
    return diffs, ref_losses


@pytest.mark.parametrize("preset,overrides,lengths", [
    ("thumos14", ["dataset.max_seq_len=576"], [576, 401]),
    ("anet", ["dataset.max_seq_len=384"], [384, 250, 300]),
    ("demo", [], [512, 347, 200]),
])
def test_model_matches_reference(meta_archs, preset, overrides, lengths):
    cfg, ref, ours = build_pair(meta_archs, preset, overrides)
    feats, mask, segments, labels = make_batch(cfg, lengths)
    disable_drop_path(ref, ours)
    # (gradients are compared on the smaller models of test_variants_match_reference: the oracle's backward
    # through its as_strided chunks is slow on a CPU)
    train_diffs, ref_losses = compare(ref, ours, feats, mask, segments, labels, train=True, check_grads=False)
    eval_diffs, _ = compare(ref, ours, feats, mask, segments, labels, train=False, check_grads=False)
    print(f"{preset} train {train_diffs}\n{preset} eval {eval_diffs}")
    assert ref_losses["reg_loss"].item() > 0.1  # positives exist, so the regression term is exercised
    for diffs in (train_diffs, eval_diffs):
        for key in ("cls_logits", "offsets", "cls_loss", "reg_loss", "final_loss"):
            assert diffs[key] <= TOL, (key, diffs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_model_matches_reference_on_cuda(meta_archs, monkeypatch):
    """The GPU paths (fused LayerNorm, device-side masks and points) against the reference on the same GPU, with
    TF32 off so that both compute in full float32."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    cfg, ref, ours = build_pair(meta_archs, "anet", ["dataset.max_seq_len=384"])
    feats, mask, segments, labels = make_batch(cfg, [384, 250, 300])
    ref, ours = ref.cuda(), ours.cuda()
    feats, mask = feats.cuda(), mask.cuda()
    segments, labels = [s.cuda() for s in segments], [lab.cuda() for lab in labels]
    disable_drop_path(ref, ours)
    for train in (True, False):
        diffs, _ = compare(ref, ours, feats, mask, segments, labels, train=train, check_grads=train)
        for key in ("cls_logits", "offsets", "cls_loss", "reg_loss", "final_loss"):
            assert diffs[key] <= TOL, (key, diffs)
        if train:
            assert diffs["grad_rel"] < 1e-3, diffs


def test_drop_path_draws_like_reference(meta_archs):
    """With drop-path on, the same seed drops the same samples in both models (same draw-to-decision rule)."""
    cfg, ref, ours = build_pair(meta_archs, "demo", seed=3)
    feats, mask, segments, labels = make_batch(cfg, [512, 300, 200, 100])
    ref.train()
    ours.train()
    torch.manual_seed(7)
    _, _, cls, _ = reference_forward(ref, feats, mask)
    torch.manual_seed(7)
    out = ours(feats, mask)
    assert max(max_diff(a, b) for a, b in zip(cls, out.cls_logits)) <= TOL
    ref.eval()
    _, _, cls_eval, _ = reference_forward(ref, feats, mask)
    assert max(max_diff(a, b) for a, b in zip(cls, cls_eval)) > 1e-3  # drop-path did change the training output


@pytest.mark.parametrize("overrides", [
    [],
    ["fused-layer-norm"],  # the GPU LayerNorm path (time-major views flowing through the network), run on the CPU
    ["model.fpn_type=fpn"],
    ["model.use_rel_pe=true", "model.use_abs_pe=true"],
    ["model.n_mha_win_size=[5,5,5,5,-1,-1]", "train_cfg.droppath=0.0", "train_cfg.loss_weight=-1",
     "train_cfg.center_sample=none", "train_cfg.label_smoothing=0.1"],
])
def test_variants_match_reference(meta_archs, overrides):
    """Gradients of every parameter on the demo model, and options off the published recipes: FPN neck, relative
    + absolute position encodings, global attention on two levels, no drop-path (no LayerScale), adaptive loss
    weight, no centre sampling."""
    fused = "fused-layer-norm" in overrides
    cfg, ref, ours = build_pair(meta_archs, "demo", [o for o in overrides if "=" in o], seed=1)
    for module in ours.modules():
        if isinstance(module, ChannelLayerNorm):
            module.fused = fused
    feats, mask, segments, labels = make_batch(cfg, [512, 333])
    disable_drop_path(ref, ours)
    diffs, _ = compare(ref, ours, feats, mask, segments, labels, train=True, check_grads=True)
    for key in ("cls_logits", "offsets", "cls_loss", "reg_loss", "final_loss"):
        assert diffs[key] <= TOL, (key, diffs)
    assert diffs["grad_rel"] < 1e-3, diffs


def reference_padded(ref, feats, num_steps):
    """Pad one video as upstream's preprocessing does at inference: to max_seq_len, or the next multiple of
    max_div_factor when longer."""
    length = ref.max_seq_len if num_steps <= ref.max_seq_len else \
        -(-num_steps // ref.max_div_factor) * ref.max_div_factor
    padded = torch.nn.functional.pad(feats[:, :num_steps], (0, length - num_steps))[None]
    return padded, (torch.arange(length) < num_steps)[None]


@pytest.mark.parametrize("overrides", [[], ["model.use_abs_pe=true"]])
def test_compact_inference_padding_matches_reference(meta_archs, overrides):
    """predict() pads a video only to `inference_length`; the outputs on real steps, and the decoded candidates,
    equal upstream's on its much longer padding, whatever the video length (shorter than max_seq_len, exactly
    max_seq_len, a few steps short of a padded length, longer than max_seq_len)."""
    # pre_nms_topk above the candidate count: which of two near-equal scores makes a top-k cut is float noise
    cfg, ref, ours = build_pair(meta_archs, "demo", overrides + ["test_cfg.pre_nms_topk=100000"], seed=2)
    ref.eval()
    ours.eval()
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(cfg.dataset.input_dim, 1100, generator=gen)
    for num_steps in (37, 509, 512, 700, 767, 1100):
        ref_feats, ref_mask = reference_padded(ref, feats, num_steps)
        length = ours.inference_length(num_steps)
        assert length % ours.total_stride == 0 and num_steps <= length <= ref_feats.shape[-1]
        with torch.no_grad():
            points, masks, cls, off = reference_forward(ref, ref_feats, ref_mask)
            out = ours(ref_feats[..., :length], ref_mask[:, :length])
        for level, (a, b, m) in enumerate(zip(cls, out.cls_logits, out.masks)):
            valid = int(m.sum())
            assert valid == int(masks[level].sum())
            assert max_diff(a[:, :valid], b[:, :valid]) <= TOL, (num_steps, level)
        for a, b, m in zip(off, out.offsets, out.masks):
            valid = int(m.sum())
            assert max_diff(a[:, :valid], b[:, :valid]) <= TOL, num_steps

        expected = ref.inference_single_video(points, [m[0] for m in masks], [c[0] for c in cls],
                                              [o[0] for o in off])
        got = ours.candidates(out, 0)
        assert_same_candidates(expected, got)
    if not overrides:  # the compact length really is shorter for short videos
        assert ours.inference_length(37) == 96 and ours.reference_length(37) == cfg.dataset.max_seq_len


def assert_same_candidates(expected, got):
    """Same candidates, compared in (label, start, end) order (their order within a level depends on the sort's
    handling of near-ties)."""
    def canonical(c):
        segs, labels = c["segments"].double().numpy(), c["labels"].numpy()
        order = np.lexsort((segs[:, 1], segs[:, 0], labels))
        return c["segments"][order], c["scores"][order], c["labels"][order]

    assert len(expected["scores"]) == len(got["scores"])
    es, ec, el = canonical(expected)
    gs, gc, gl = canonical(got)
    assert torch.equal(el, gl)
    # segments are t -/+ offset x stride: offsets agree to TOL in stride units (stride up to 32), plus float32
    # rounding of coordinates in the thousands
    assert max_diff(es, gs) <= 32 * TOL + 1e-6 * float(es.abs().max()) and max_diff(ec, gc) <= TOL


def test_checkpoint_file_and_ema_selection(meta_archs, tmp_path):
    """An upstream-style .pth.tar (state_dict + state_dict_ema with module. prefixes) loads the EMA weights by
    default and the raw ones on request; a mismatched architecture gets an error listing the tensors."""
    cfg, ref, ours = build_pair(meta_archs, "demo", seed=4)
    ema = copy.deepcopy(ref)
    perturb(ema, seed=5)
    path = tmp_path / "epoch_034.pth.tar"
    torch.save({"epoch": 34, "state_dict": {"module." + k: v for k, v in ref.state_dict().items()},
                "state_dict_ema": {"module." + k: v for k, v in ema.state_dict().items()},
                "optimizer": {"state": {}, "param_groups": []}}, path)
    fresh = ActionFormer(cfg)
    load_actionformer_checkpoint(path, fresh)
    assert torch.equal(fresh.cls_head.classifier.bias, ema.cls_head.cls_head.conv.bias)
    assert torch.equal(fresh.reg_head.scale, torch.stack([s.scale for s in ema.reg_head.scale]))
    load_actionformer_checkpoint(path, fresh, use_ema=False)
    assert torch.equal(fresh.backbone.stem[0].norm_attn.weight, ref.backbone.stem[0].ln1.weight.flatten())

    other = ActionFormer(load_config("demo", overrides=["model.head_dim=64", "model.backbone_arch=[2,2,4]",
                                                        "model.regression_range=[[0,4],[4,8],[8,16],[16,32],"
                                                        "[32,10000]]", "dataset.max_seq_len=256"]))
    with pytest.raises(CheckpointMismatchError) as err:
        load_actionformer_checkpoint(path, other)
    message = str(err.value)
    assert "unexpected" in message and "backbone.branch.4.attn.query.weight" in message
    assert "shape mismatch" in message and "cls_head.trunk.convs.0.weight" in message


@pytest.mark.parametrize("preset,expected", [
    ("thumos14", 28_268_572), ("anet", 7_533_321), ("hacs", 8_516_361), ("fineaction", 7_631_625),
    ("thumos14_i3d", 29_251_612),
])
def test_parameter_counts(meta_archs, preset, expected):
    """SPEC §D.12's counts, and the oracle agrees on each preset."""
    cfg = load_config(preset)
    ours = sum(p.numel() for p in ActionFormer(cfg).parameters())
    assert ours == expected
    assert sum(p.numel() for p in reference_model(meta_archs, cfg).parameters()) == expected


def test_speed_benchmark_runs(meta_archs, capsys):
    """benchmarks/model_speed.py end to end on the small demo preset (a smoke run: no timing is asserted)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "model_speed.py"
    spec = importlib.util.spec_from_file_location("model_speed", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--preset", "demo", "--device", "cpu", "--repeats", "1", "--long-steps", "700",
                        "--short-steps", "100"]) == 0
    out = capsys.readouterr().out
    assert "check: max loss difference" in out and "short video (100 steps; padded 512 vs 160)" in out
    assert "activations kept for backward" in out and "operators per train step" in out
