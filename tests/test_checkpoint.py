"""Checkpoints: atomic writes, clear errors for corrupt/foreign/mismatched files, and RNG capture/restore."""
from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch
from torch import nn

from tal_kit.training import checkpoint as ckpt
from tal_kit.atomic import atomic_open, write_json_atomic
from tal_kit.training.seeding import capture_rng_state, restore_rng_state, seed_everything


def minimal_state(epoch: int = 0) -> dict:
    model = nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    return {"epoch": epoch, "global_step": 10 * (epoch + 1), "config": {"opt": {"learning_rate": 1e-3}},
            "model": model.state_dict(), "ema": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": {"last_epoch": 3}, "rng": [capture_rng_state()], "world_size": 1}


def test_round_trip_weights_only(tmp_path):
    path = ckpt.save_checkpoint(tmp_path / "last.pt", minimal_state(epoch=4))
    loaded = ckpt.load_checkpoint(path)
    assert loaded["epoch"] == 4 and loaded["format"] == ckpt.CHECKPOINT_FORMAT
    mask = os.umask(0)
    os.umask(mask)
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o666 & ~mask)  # what open(path, "w") would give


def test_failed_write_leaves_the_old_file_and_no_temporaries(tmp_path, monkeypatch):
    path = ckpt.save_checkpoint(tmp_path / "last.pt", minimal_state(epoch=1))
    before = path.read_bytes()

    def crash_midway(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt  # e.g. Ctrl-C while the file is being written

    monkeypatch.setattr(torch, "save", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(path, minimal_state(epoch=2))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_atomic_json(tmp_path):
    target = write_json_atomic(tmp_path / "sub" / "a.json", {"x": 1})
    assert target.read_text() == '{\n  "x": 1\n}\n'
    with pytest.raises(ValueError):
        with atomic_open(target, "w") as handle:
            handle.write("{half")
            raise ValueError("boom")
    assert target.read_text() == '{\n  "x": 1\n}\n'


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty"] + [f"garbage{seed}" for seed in range(12)])
def test_corrupt_files_name_the_path(tmp_path, damage):
    path = ckpt.save_checkpoint(tmp_path / "epoch_003.pt", minimal_state())
    data = path.read_bytes()
    if damage.startswith("garbage"):  # random bytes fail in many different ways inside the unpickler
        damaged = random.Random(int(damage[7:])).randbytes(256)
    else:
        middle = len(data) // 2
        damaged = {"truncate": data[:middle], "empty": b"",
                   "flip": data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]}[damage]
    path.write_bytes(damaged)
    with pytest.raises(ckpt.CheckpointError, match=r"epoch_003\.pt: (cannot be read as a checkpoint; it is )?corrupt"):
        ckpt.load_checkpoint(path)


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match=r"nope\.pt: no such checkpoint file"):
        ckpt.load_checkpoint(tmp_path / "nope.pt")
    foreign = tmp_path / "upstream.pth.tar"
    torch.save({"state_dict": nn.Linear(2, 2).state_dict(), "epoch": 3}, foreign)
    with pytest.raises(ckpt.CheckpointError, match="not a tal_kit training checkpoint"):
        ckpt.load_checkpoint(foreign)
    state = minimal_state()
    del state["optimizer"]
    with pytest.raises(ValueError, match="lacks"):
        ckpt.save_checkpoint(tmp_path / "x.pt", state)
    torch.save({"format": ckpt.CHECKPOINT_FORMAT, "format_version": 99}, tmp_path / "future.pt")
    with pytest.raises(ckpt.CheckpointError, match="format version 99"):
        ckpt.load_checkpoint(tmp_path / "future.pt")


def test_unsafe_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": ckpt.CHECKPOINT_FORMAT, "payload": object()}, path)
    with pytest.raises(ckpt.CheckpointError, match="evil.pt"):
        ckpt.load_checkpoint(path)


def test_model_mismatch_lists_keys(tmp_path):
    source = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    other = nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 2), nn.ReLU())
    with pytest.raises(ckpt.CheckpointError) as info:
        ckpt.load_state_strict(other, source.state_dict(), "run/last.pt", "EMA")
    message = str(info.value)
    assert "run/last.pt: the EMA weights do not fit" in message
    assert "0.weight (4, 3) vs model (5, 3)" in message
    extra = dict(source.state_dict(), stray=torch.zeros(1))
    with pytest.raises(ckpt.CheckpointError, match="1 unexpected: stray"):
        ckpt.load_state_strict(source, extra, "x.pt")
    partial = {k: v for k, v in source.state_dict().items() if k != "1.bias"}
    with pytest.raises(ckpt.CheckpointError, match=r"1 missing: 1\.bias"):
        ckpt.load_state_strict(source, partial, "x.pt")


def test_resume_compatibility_check():
    stored = {"config": {"opt": {"learning_rate": 1e-3, "epochs": 10}, "model": {"backbone_arch": (2, 2, 5)},
                         "loader": {"batch_size": 2, "num_workers": 4}, "trainer": {"ema_decay": 0.999}},
              "world_size": 1}
    same = {"opt": {"learning_rate": 1e-3, "epochs": 10}, "model": {"backbone_arch": [2, 2, 5]},
            "loader": {"batch_size": 2, "num_workers": 0}, "trainer": {"ema_decay": 0.999}}
    ckpt.check_resume_compatible(stored, same, 1, "c.pt")  # lists vs tuples and num_workers do not matter
    changed = {**same, "opt": {"learning_rate": 1e-3, "epochs": 20}, "loader": {"batch_size": 4}}
    with pytest.raises(ckpt.CheckpointError) as info:
        ckpt.check_resume_compatible(stored, changed, 2, "c.pt")
    message = str(info.value)
    for expected in ("opt.epochs: checkpoint 10, now 20", "loader.batch_size: checkpoint 2, now 4",
                     "world_size: checkpoint 1, now 2"):
        assert expected in message


def test_rng_state_round_trip():
    generator = seed_everything(5, "off")
    state = capture_rng_state(generator)
    first = (random.random(), np.random.rand(), torch.rand(1).item(), torch.rand(1, generator=generator).item(),
             np.random.normal())
    random.seed(0), np.random.seed(0), torch.manual_seed(0), generator.manual_seed(0)
    restore_rng_state(state, generator)
    again = (random.random(), np.random.rand(), torch.rand(1).item(), torch.rand(1, generator=generator).item(),
             np.random.normal())
    assert first == again
    with pytest.raises(ValueError, match="deterministic"):
        seed_everything(1, "sometimes")
    seed_everything(1, "strict")
    assert torch.are_deterministic_algorithms_enabled() and not torch.is_deterministic_algorithms_warn_only_enabled()
    seed_everything(1, "warn")
    assert torch.is_deterministic_algorithms_warn_only_enabled()
    seed_everything(1, "off")
    assert not torch.are_deterministic_algorithms_enabled()
