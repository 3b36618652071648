"""Interrupt-and-resume is exact: training 2 epochs, stopping, and resuming to the end gives the same bits as an
uninterrupted run. A tiny stand-in model keeps it fast; it uses every source of randomness the real pipeline does
(Python/NumPy crops in the dataset, torch dropout, the loader's shuffle generator) and a loss-normalizer buffer.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from tal_kit.config import OptConfig
from tal_kit.training import (CheckpointError, LoopSettings, Trainer, load_checkpoint, make_optimizer,
                              make_scheduler, seed_everything)
from tal_kit.training.loop import _is_json_value


class RandomCropDataset(Dataset):
    """12 'videos' of 16 features; training crops a random window (Python ``random``) and adds NumPy noise."""

    def __init__(self):
        generator = torch.Generator().manual_seed(123)
        self.feats = torch.randn(12, 4, 16, generator=generator)
        self.targets = torch.randn(12, generator=generator)

    def __len__(self):
        return 12

    def __getitem__(self, index):
        length = random.randint(10, 16)
        start = random.randint(0, 16 - length)
        feats = self.feats[index].clone()
        feats[:, start:start + length] += torch.from_numpy(np.random.normal(0, 0.01, (4, length)).astype(np.float32))
        mask = torch.zeros(16, dtype=torch.bool)
        mask[start:start + length] = True
        return {"video_id": f"v{index}", "feats": feats, "mask": mask, "target": self.targets[index]}


def collate(items):
    return {"feats": torch.stack([i["feats"] for i in items]), "mask": torch.stack([i["mask"] for i in items]),
            "segments": [i["target"].reshape(1, 1) for i in items], "labels": [torch.zeros(1) for _ in items],
            "video_ids": [i["video_id"] for i in items]}


class StandIn(nn.Module):
    """Follows the ActionFormer contract: forward(feats, mask) and losses(output, segments, labels)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 8, 3, padding=1)
        self.norm = nn.LayerNorm(8)
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(8, 1)
        self.register_buffer("loss_normalizer", torch.tensor(10.0))

    def forward(self, feats, mask):
        x = self.conv(feats) * mask[:, None]
        self.seen_dtype = x.dtype
        x = self.drop(torch.relu(self.norm(x.transpose(1, 2))))
        return (self.head(x).squeeze(-1) * mask).sum(1) / mask.sum(1)

    def losses(self, output, segments, labels):
        target = torch.cat([s.reshape(-1) for s in segments])
        if self.training:
            self.loss_normalizer.mul_(0.9).add_(0.1 * len(segments))
        cls_loss = ((output - target) ** 2).sum() / self.loss_normalizer
        reg_loss = output.abs().mean() * 0.1
        return {"cls_loss": cls_loss, "reg_loss": reg_loss, "final_loss": cls_loss + reg_loss}


OPT = dict(type="AdamW", learning_rate=1e-2, weight_decay=0.05, momentum=0.9, epochs=3, warmup=True,
           warmup_epochs=1, schedule_type="cosine", schedule_steps=[], schedule_gamma=0.1, eta_min=1e-8)
CONFIG = {"name": "standin", "init_rand_seed": 7, "dataset": {"n": 12}, "model": {"width": 8}, "opt": OPT,
          "loader": {"batch_size": 4}, "trainer": {"ema_decay": 0.9}}


def build(run_dir: Path, seed: int = 7, config: dict | None = None, num_workers: int = 0) -> Trainer:
    generator = seed_everything(seed, "strict")
    model = StandIn()
    loader = DataLoader(RandomCropDataset(), batch_size=4, shuffle=True, drop_last=True, collate_fn=collate,
                        generator=generator, num_workers=num_workers)
    optimizer = make_optimizer(model, OptConfig(**OPT))
    scheduler = make_scheduler(optimizer, OptConfig(**OPT), len(loader))

    def evaluate(ema_model, epoch):
        torch.rand(5)  # evaluation draws random numbers too; they must not leak into training
        with torch.no_grad():
            score = float(torch.sigmoid(ema_model.head.weight.sum()))
        return {"average_mAP": score, "mAP": [score], "tiou_thresholds": [0.5]}

    settings = LoopSettings(epochs=4, clip_grad_l2norm=1.0, ema_decay=0.9, eval_start_epoch=1, log_every=1,
                            progress=False)
    return Trainer(model, optimizer, scheduler, loader, settings=settings, run_dir=run_dir,
                   config_dict=config or CONFIG, loader_generator=generator, evaluate_fn=evaluate)


def iteration_lines(run_dir: Path) -> list[dict]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in line.items() if not k.endswith("time_s")} for line in lines]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_is_bit_exact(tmp_path, num_workers):
    straight = build(tmp_path / "straight", num_workers=num_workers)
    summary = straight.fit()
    assert summary["finished"] and summary["epochs_completed"] == 4

    interrupted = build(tmp_path / "resumed", num_workers=num_workers)
    interrupted.fit(stop_after=2)
    with open(tmp_path / "resumed" / "metrics.jsonl", "a") as log:  # an epoch cut off before its checkpoint
        log.write(json.dumps({"type": "iter", "epoch": 2, "step": 99, "lr": 0.0}) + "\n" + '{"type": "it')
    # a fresh process: different initial weights and RNG state, everything must come from the checkpoint
    resumed = build(tmp_path / "resumed", seed=999, num_workers=num_workers)
    assert resumed.resume() == 2
    resumed.fit()

    for a, b in [(straight.model.state_dict(), resumed.model.state_dict()),
                 (straight.ema.state_dict(), resumed.ema.state_dict())]:
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key
    assert straight.model.loss_normalizer.item() == resumed.model.loss_normalizer.item()
    assert straight.global_step == resumed.global_step == 4 * 3
    assert iteration_lines(tmp_path / "straight") == iteration_lines(tmp_path / "resumed")
    assert straight.summary() == resumed.summary()


def test_run_dir_layout_and_summary(tmp_path):
    trainer = build(tmp_path)
    summary = trainer.fit()
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["best.pt", "epoch_000.pt", "epoch_001.pt", "epoch_002.pt", "epoch_003.pt", "last.pt"]
    saved = json.loads((tmp_path / "train_summary.json").read_text())
    assert saved == json.loads(json.dumps(summary))
    # epochs 1..3 evaluated (eval_start_epoch=1); best is the argmax, last the final epoch
    history = {h["epoch"]: h["average_mAP"] for h in summary["history"]}
    assert sorted(history) == [1, 2, 3]
    assert summary["last"]["epoch"] == 3
    assert summary["best"]["average_mAP"] == max(history.values())
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert best["epoch"] == summary["best"]["epoch"]
    epoch1 = load_checkpoint(tmp_path / "checkpoints" / "epoch_001.pt")
    assert epoch1["epoch"] == 1 and epoch1["global_step"] == 6 and epoch1["metrics"]["average_mAP"] == history[1]
    # lr logged per iteration follows the schedule: 0 at the first step
    lines = iteration_lines(tmp_path)
    iters = [line for line in lines if line["type"] == "iter"]
    assert iters[0]["lr"] == 0.0 and len(iters) == 12
    assert [line["epoch"] for line in lines if line["type"] == "epoch"] == [0, 1, 2, 3]


def test_resume_refuses_other_settings(tmp_path):
    build(tmp_path).fit(stop_after=1)
    changed = json.loads(json.dumps(CONFIG))
    changed["opt"]["learning_rate"] = 5e-3
    with pytest.raises(CheckpointError, match=r"opt\.learning_rate: checkpoint 0\.01, now 0\.005"):
        build(tmp_path, config=changed).resume()
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        build(tmp_path / "elsewhere").resume()


def test_resume_after_finish_is_a_no_op(tmp_path):
    build(tmp_path).fit()
    again = build(tmp_path, seed=3)
    assert again.resume() == 4
    summary = again.fit()
    assert summary["finished"] and again.global_step == 12


def test_json_value_filter():
    assert _is_json_value({"a": [1, 2.5, "x", None]}) and not _is_json_value({"a": torch.zeros(1)})


def test_evaluation_does_not_change_training(tmp_path):
    """Per-epoch evaluation draws random numbers on a forked stream, so it leaves the weights untouched."""
    with_eval = build(tmp_path / "a")
    with_eval.fit()
    without_eval = build(tmp_path / "b")
    without_eval.evaluate_fn = None
    without_eval.fit()
    for key, value in with_eval.model.state_dict().items():
        assert torch.equal(value, without_eval.model.state_dict()[key]), key
    assert without_eval.summary()["best"] is None and without_eval.summary()["history"] == []


def test_bf16_autocast_wraps_the_forward_pass(tmp_path):
    """trainer.amp=bf16 (meant for GPUs) runs the forward pass under bfloat16 autocast; the loss stays float32."""
    trainer = build(tmp_path)
    trainer.settings = LoopSettings(**{**trainer.settings.__dict__, "amp": "bf16", "epochs": 1})
    trainer.evaluate_fn = None
    trainer.fit()
    assert trainer.model.seen_dtype == torch.bfloat16
    lines = iteration_lines(tmp_path)
    assert all(np.isfinite(line["final_loss"]) for line in lines)
    with pytest.raises(ValueError, match="trainer.amp"):
        Trainer(StandIn(), trainer.optimizer, trainer.scheduler, [], settings=LoopSettings(epochs=1, amp="fp8"),
                run_dir=tmp_path, config_dict=CONFIG)
