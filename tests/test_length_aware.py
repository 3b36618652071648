"""Length-aware training batches and batched evaluation compute what the reference computes (issue 13).

The reference is the padded-to-max path: every training batch padded to max_seq_len (``trainer.pad_to_max_seq_len``)
and every evaluation video through the model on its own. On the same batch (the thumos14 and anet presets' models
at short lengths, variable lengths, a video without actions), the length-aware batch must give the same outputs at
real steps, the same losses and the same gradients; a few training steps from one seed must follow the same
trajectory; batched evaluation must give the same detections as one video at a time.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from tal_kit.config import ConfigError, load_config
from tal_kit.data.dataset import collate_videos, padded_length, training_collate
from tal_kit.model import ActionFormer
from tal_kit.model.batching import plan_batches
from tests.tiny_demo import tiny_demo  # noqa: F401  (fixture)

REL = 1e-5  # the tolerance for losses and gradients


# ----------------------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------------------

def perturbed_model(cfg, seed: int = 0) -> ActionFormer:
    """A model whose biases, norm gains and LayerScale gains are away from their initial values: with zero biases a
    padded step would hold exactly zero and could not show whether padding leaks into real steps."""
    torch.manual_seed(seed)
    model = ActionFormer(cfg)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("drop_path_attn.scale") or name.endswith("drop_path_mlp.scale"):
                p.copy_(0.5 + 0.5 * torch.rand(p.shape, generator=gen))
            elif "norm" in name and name.endswith("weight"):
                p.mul_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif name.endswith("bias"):
                p.add_(0.1 * torch.randn(p.shape, generator=gen))
    return model


def make_items(cfg, lengths, seed: int = 0, empty: int | None = 1) -> list[dict]:
    """Dataset-like items: random features, segments of several scales in grid units; item ``empty`` has none."""
    gen = torch.Generator().manual_seed(seed)
    items = []
    for index, n in enumerate(lengths):
        if index == empty:
            segments, labels = torch.zeros(0, 2), torch.zeros(0, dtype=torch.long)
        else:
            segments = torch.tensor([[0.1, 0.35], [0.3, 0.32], [0.5, 0.95], [0.0, 1.0]]) * n
            labels = torch.randint(0, cfg.dataset.num_classes, (4,), generator=gen)
        items.append({"video_id": f"v{index}", "feats": torch.randn(cfg.dataset.input_dim, n, generator=gen),
                      "segments": segments, "labels": labels, "fps": 30.0, "duration": n * 4 / 30.0,
                      "feat_stride": 4.0, "num_frames": 16.0})
    return items


def rel_diff(a: torch.Tensor, b: torch.Tensor, floor: float = 0.0) -> float:
    if a.numel() == 0:
        return 0.0
    return (a - b).abs().max().item() / max(a.abs().max().item(), floor, 1e-30)


def train_step(model, batch, seed: int):
    """Forward (train mode, drop-path drawn from ``seed``), losses, backward; returns output, losses, gradients."""
    model.train()
    model.zero_grad()
    torch.manual_seed(seed)
    output = model(batch["feats"], batch["mask"])
    losses = model.losses(output, batch["segments"], batch["labels"])
    losses["final_loss"].backward()
    return output, losses, {n: p.grad.clone() for n, p in model.named_parameters()}


# ----------------------------------------------------------------------------------------------------------------------
# the padding rule and the config key
# ----------------------------------------------------------------------------------------------------------------------

def test_length_aware_padding_rule():
    """Hand-worked: stride 32, max_seq_len 512. The next multiple of 32 plus one stride, capped at max_seq_len;
    without a stride, max_seq_len as the reference."""
    assert padded_length(100, 512, 256, True, 32) == 160  # ceil(100/32) = 4 strides, + 1
    assert padded_length(96, 512, 256, True, 32) == 128  # a multiple of the stride still gets one stride of padding
    assert padded_length(1, 512, 256, True, 32) == 64
    assert padded_length(470, 512, 256, True, 32) == 512  # 15 + 1 strides = 512
    assert padded_length(481, 512, 256, True, 32) == 512  # 16 + 1 strides = 544, capped
    assert padded_length(512, 512, 256, True, 32) == 512
    assert padded_length(100, 512, 256, True) == 512
    with pytest.raises(ValueError, match="more than max_seq_len 512"):
        padded_length(513, 512, 256, True, 32)


def test_training_collate_follows_the_config_key():
    cfg = load_config("demo")
    assert cfg.trainer.pad_to_max_seq_len is False
    items = make_items(cfg, [100, 37])
    batch = training_collate(cfg)(items)
    assert batch["feats"].shape == (2, 64, 160)
    assert batch["mask"].sum(1).tolist() == [100, 37]
    assert torch.equal(batch["feats"][1, :, :37], items[1]["feats"]) and batch["feats"][1, :, 37:].abs().sum() == 0
    reference = load_config("demo", ["trainer.pad_to_max_seq_len=true"])
    assert training_collate(reference)(items)["feats"].shape == (2, 64, 512)


def test_new_config_keys_are_validated():
    from tal_kit.config import dump_config

    shown = dump_config(load_config("demo"))
    assert "pad_to_max_seq_len: false" in shown and "eval_batch_size: 8" in shown
    with pytest.raises(ConfigError, match="loader.eval_batch_size"):
        load_config("demo", ["loader.eval_batch_size=0"])
    with pytest.raises(ConfigError, match="pad_to_max_seq_len"):
        load_config("demo", ["trainer.pad_to_max_seq_len=sometimes"])


# ----------------------------------------------------------------------------------------------------------------------
# training: the same batch, padded to max_seq_len or to what it needs
# ----------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("preset,max_seq_len,lengths", [
    ("thumos14", 576, [320, 201, 77]),  # 320 = 10 strides exactly: needs the extra padded stride
    ("anet", 384, [288, 150, 41]),  # absolute position embedding, a global-attention level
    ("anet", 384, [384, 96, 13]),  # a full-length crop: nothing to save, the rule keeps max_seq_len
])
def test_length_aware_batch_equals_padded_batch(preset, max_seq_len, lengths):
    cfg = load_config(preset, [f"dataset.max_seq_len={max_seq_len}"])
    items = make_items(cfg, lengths)
    padded = collate_videos(items, max_seq_len, cfg.model.max_div_factor, True)
    compact = training_collate(cfg)(items)
    expected_length = min(max_seq_len, (-(-max(lengths) // 32) + 1) * 32)
    assert padded["feats"].shape[-1] == max_seq_len and compact["feats"].shape[-1] == expected_length

    model = perturbed_model(cfg)
    twin = copy.deepcopy(model)
    out_ref, losses_ref, grads_ref = train_step(model, padded, seed=5)
    out, losses, grads = train_step(twin, compact, seed=5)

    for level in range(len(out.cls_logits)):
        valid = out_ref.masks[level].sum(1)
        assert torch.equal(valid, out.masks[level].sum(1))
        for b, n in enumerate(valid.tolist()):
            assert rel_diff(out_ref.cls_logits[level][b, :n], out.cls_logits[level][b, :n]) <= REL, (level, b)
            assert rel_diff(out_ref.offsets[level][b, :n], out.offsets[level][b, :n]) <= REL, (level, b)
    assert losses_ref["reg_loss"].item() > 0  # positives exist: the regression loss is exercised
    for key in ("cls_loss", "reg_loss", "final_loss"):
        assert rel_diff(losses_ref[key], losses[key]) <= REL, key
    assert model.loss_normalizer.item() == twin.loss_normalizer.item()
    # every parameter's gradient, relative to its largest entry (floored at 1e-4 of the largest gradient in the
    # model, for parameters whose gradient is itself rounding noise, such as the key biases a softmax cancels)
    floor = 1e-4 * max(g.abs().max().item() for g in grads_ref.values())
    worst = {name: rel_diff(g, grads[name], floor) for name, g in grads_ref.items()}
    assert max(worst.values()) <= REL, sorted(worst.items(), key=lambda kv: -kv[1])[:5]


def test_padding_leaks_without_the_extra_stride():
    """The extra stride is needed: padding the same batch only to the next multiple of the stride changes the
    outputs at the last real steps (this is what the rule guards against, so the equality above is not vacuous)."""
    cfg = load_config("thumos14", ["dataset.max_seq_len=576"])
    items = make_items(cfg, [320, 201])
    padded = collate_videos(items, 576, cfg.model.max_div_factor, True)
    tight = {**padded, "feats": padded["feats"][..., :320], "mask": padded["mask"][:, :320]}
    model = perturbed_model(cfg).eval()
    with torch.no_grad():
        a, b = model(padded["feats"], padded["mask"]), model(tight["feats"], tight["mask"])
    assert rel_diff(a.cls_logits[0][0, :320], b.cls_logits[0][0, :320]) > 1e-3


def test_training_trajectory_is_the_same(tiny_demo, tmp_path):  # noqa: F811
    """Training steps from the same seed through the real trainer (crops, drop-path, AdamW, EMA): the per-step
    losses and the final weights agree within float tolerance, padded to max_seq_len or not."""
    from tal_kit.data.dataset import TALDataset
    from tal_kit.train import build_trainer
    from tal_kit.runtime import DistContext

    base = ["dataset.max_seq_len=512", "model.embd_dim=32", "model.fpn_dim=32", "model.head_dim=32",
            "model.n_mha_win_size=3", "loader.batch_size=4", "loader.num_workers=0", "opt.epochs=1",
            "opt.warmup_epochs=0", "opt.warmup=false", "opt.learning_rate=1e-3"]
    runs = {}
    for pad in (True, False):
        cfg = load_config("demo", base + [f"trainer.pad_to_max_seq_len={str(pad).lower()}"])
        records = []

        class Record:
            def on_iteration(self, record):
                records.append(record)

        trainer = build_trainer(cfg, data_root=tiny_demo, run_dir=tmp_path / f"pad_{pad}", ctx=DistContext(),
                                callbacks=[Record()], progress=False)
        trainer.evaluate_fn = None  # training only
        trainer.fit()
        runs[pad] = (records, {k: v.clone() for k, v in trainer.model.state_dict().items()})
    # the length-aware run really computes shorter batches (the tiny demo's videos are 15-30 s, 110-225 steps)
    cfg = load_config("demo", base)
    dataset = TALDataset(cfg, tiny_demo, is_training=True)
    assert max(training_collate(cfg)([dataset[i] for i in range(j, j + 4)])["feats"].shape[-1]
               for j in range(0, 40, 4)) < 512
    (ref_records, ref_state), (records, state) = runs[True], runs[False]
    assert len(records) == len(ref_records) == 10
    for a, b in zip(ref_records, records):
        for key in ("cls_loss", "reg_loss", "final_loss", "grad_norm", "lr"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-4), (a["step"], key)
    for name, value in ref_state.items():
        if value.is_floating_point():
            assert torch.allclose(value, state[name], rtol=1e-4, atol=1e-6), name


# ----------------------------------------------------------------------------------------------------------------------
# evaluation: several videos per forward pass
# ----------------------------------------------------------------------------------------------------------------------

class _FakeLengthModel:
    """Stands in for ActionFormer's padding rules in the planner test: lengths in strides of 4, exact at a longer
    length only when both lengths leave padding (no stride-4 multiple), as the real rule at one level."""

    def inference_length(self, n: int) -> int:
        return n if n % 4 == 0 else -(-n // 4) * 4

    def exact_at_length(self, n: int, length: int) -> bool:
        own = self.inference_length(n)
        return length == own or (length > own and own > n)


def test_plan_batches_hand_worked():
    lengths = [5, 12, 7, 6, 30, 8]
    batches = plan_batches(lengths, _FakeLengthModel(), max_videos=2, max_steps=100)
    # longest first. 30 (padded to 32): 12 has no padding of its own, so not at 32 either -> a new batch; 8 (no
    # padding) is not exact at 12 -> a new batch; 7 (own length 8) joins 8; the batch is full, so 6 starts the
    # next one and 5 (own length 8) joins it
    assert batches == [[4], [1], [5, 2], [3, 0]]
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert plan_batches(lengths, _FakeLengthModel(), max_videos=1, max_steps=100) == [[4], [1], [5], [2], [3], [0]]
    # the step budget: two videos padded to 8 are 16 steps
    assert plan_batches([7, 6], _FakeLengthModel(), max_videos=8, max_steps=15) == [[0], [1]]


class _ListDataset:
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]

    @property
    def video_ids(self):
        return [it["video_id"] for it in self.items]


@pytest.mark.parametrize("preset,max_seq_len,lengths", [
    # shorter than max_seq_len, exactly a stride multiple, exactly max_seq_len, longer (padded or not to the
    # divisor), a tiny one
    ("thumos14", 576, [300, 576, 64, 1152, 1100, 17, 250, 96, 575, 410]),
    ("anet", 384, [200, 384, 96, 800, 768, 11, 383, 150, 290, 40]),  # stretched position embedding beyond 384
])
def test_batched_evaluation_equals_one_video_at_a_time(preset, max_seq_len, lengths):
    from tal_kit.inference.predict import predict

    # pre_nms_topk above the candidate count: which of two near-equal scores makes a top-k cut is float noise
    cfg = load_config(preset, [f"dataset.max_seq_len={max_seq_len}", "test_cfg.pre_nms_topk=100000"])
    model = perturbed_model(cfg, seed=3).eval()
    items = make_items(cfg, lengths, seed=1, empty=None)
    dataset = _ListDataset(items)

    batches = plan_batches(lengths, model, 4, 4 * max_seq_len)
    assert max(len(b) for b in batches) > 1 and len(batches) < len(lengths)  # some videos really share a pass
    one = predict(model, dataset, cfg, keep_candidates=True, progress=False, batch_size=1)
    many = predict(model, dataset, cfg, keep_candidates=True, progress=False, batch_size=4)
    assert [o["video_id"] for o in many.video_outputs] == dataset.video_ids  # the original order
    assert list(many.candidates) == dataset.video_ids
    for a, b in zip(one.video_outputs, many.video_outputs):
        assert len(a["scores"]) == len(b["scores"]) > 0, a["video_id"]
        np.testing.assert_array_equal(a["labels"], b["labels"])
        np.testing.assert_allclose(a["scores"], b["scores"], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(a["segments"], b["segments"], rtol=1e-5, atol=1e-4)
    for vid in dataset.video_ids:
        a, b = one.candidates[vid], many.candidates[vid]
        order_a = np.lexsort((a.segments[:, 1], a.segments[:, 0], a.labels))
        order_b = np.lexsort((b.segments[:, 1], b.segments[:, 0], b.labels))
        np.testing.assert_array_equal(a.labels[order_a], b.labels[order_b])
        np.testing.assert_allclose(a.scores[order_a], b.scores[order_b], rtol=1e-5, atol=1e-7)


def test_exact_at_length_refuses_what_would_change():
    """A video the reference pads not at all (longer than max_seq_len, a multiple of the divisor) changes when
    padded further, and so does one whose position table would be stretched; the rule says so."""
    cfg = load_config("thumos14", ["dataset.max_seq_len=576"])
    thumos = perturbed_model(cfg, seed=0).eval()
    assert thumos.inference_length(1152) == 1152 and not thumos.exact_at_length(1152, 1184)
    assert thumos.exact_at_length(300, 352) and thumos.exact_at_length(300, 576)
    feats = make_items(cfg, [1152], empty=None)[0]["feats"][None]
    with torch.no_grad():
        own = thumos(feats, torch.ones(1, 1152, dtype=torch.bool))
        longer = thumos(torch.nn.functional.pad(feats, (0, 32)), torch.arange(1184)[None] < 1152)
    assert rel_diff(own.cls_logits[0][0], longer.cls_logits[0][0, :1152]) > 1e-4
    anet = perturbed_model(load_config("anet", ["dataset.max_seq_len=384"]), seed=0).eval()
    assert anet.exact_at_length(150, 288) and not anet.exact_at_length(150, 384)


def test_train_speed_benchmark_runs(thumos_json, anet_json, capsys):
    """benchmarks/train_speed.py end to end with a narrow model (a smoke run: no timing is asserted)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "train_speed.py"
    spec = importlib.util.spec_from_file_location("train_speed", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.SHARED_DATA = thumos_json.parents[1]
    assert module.main(["--embd-dim", "16", "--batches", "1", "--eval-videos", "6", "--eval-repeats", "1",
                        "--skip-memory"]) == 0
    out = capsys.readouterr().out
    # the epoch statistics come from the real files: THUMOS-14's 200 training videos give 100 batches of 2
    assert "thumos14: 200 training videos, batch 2, max_seq_len 2304, 100 batches per epoch" in out
    assert "anet: 10024 training videos, batch 8, max_seq_len 768" in out
    assert "anet evaluation (6 videos)" in out and "models scaled to width 16" in out


def test_fit_one_batch_on_the_trimmed_batch_equals_the_padded_one(monkeypatch):
    """Notebook 03's one-video fit computes only the steps it needs: the same loss curve as on the whole padded
    batch (the reference, obtained by letting inference_length keep the full length)."""
    from tal_kit.tutorial import model as explain

    cfg = load_config("demo")
    item = make_items(cfg, [150], empty=None)[0]
    batch = collate_videos([item], cfg.dataset.max_seq_len, cfg.model.max_div_factor, False)
    assert batch["feats"].shape[-1] == 512
    histories = []
    for trim in (True, False):
        model = perturbed_model(cfg, seed=1)
        if not trim:
            monkeypatch.setattr(model, "inference_length", lambda n: 512)
        torch.manual_seed(0)
        histories.append(explain.fit_one_batch(model, batch, steps=3))
    assert histories[0] == pytest.approx(histories[1], rel=1e-5)
