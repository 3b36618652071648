"""Kills at the exact moments that used to lose or mislabel results (issue 15), simulated deterministically: a
function is patched to raise (in process) or to ``os._exit`` (in a subprocess) at that moment, then a fresh
trainer resumes. The stand-in model and data of test_train_resume keep each case to a second or two."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tal_kit.atomic import temp_prefix
from tal_kit.training import CheckpointError, load_checkpoint, save_checkpoint
from tal_kit.training import loop as loop_module
from tal_kit.training.lock import RunLock, RunLockedError
from tests.test_train_resume import build, iteration_lines

REPO = Path(__file__).resolve().parents[1]


class Killed(Exception):
    """Stands for the process dying at this point: nothing after it runs, what is on disk stays."""


def rising_scores(trainer):
    """Every evaluated epoch beats the previous one, so each epoch becomes the new best."""
    def evaluate(ema_model, epoch):
        return {"average_mAP": 0.1 * (epoch + 1), "mAP": [0.1 * (epoch + 1)], "tiou_thresholds": [0.5]}
    trainer.evaluate_fn = evaluate
    return trainer


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    return int(proc.stdout)


# ---------------------------------------------------------------------------------------------------- best.pt
def test_kill_between_last_and_best_is_repaired_on_resume(tmp_path, monkeypatch):
    """Issue 15 item 1: killed after last.pt (epoch 2) was saved but before best.pt was linked, best.pt held
    epoch 1 while the history says epoch 2 is best; --report best then wrote epoch 1's detections as 'best'."""
    real_link = loop_module._link_or_copy

    def link(source, target):
        if target.name == "best.pt" and load_checkpoint(source)["epoch"] == 2:
            raise Killed
        real_link(source, target)

    trainer = rising_scores(build(tmp_path))
    monkeypatch.setattr(loop_module, "_link_or_copy", link)
    with pytest.raises(Killed):
        trainer.fit()
    monkeypatch.setattr(loop_module, "_link_or_copy", real_link)
    assert load_checkpoint(tmp_path / "checkpoints" / "best.pt")["epoch"] == 1  # the stale state the kill left

    resumed = rising_scores(build(tmp_path, seed=5))
    assert resumed.resume() == 3
    assert resumed.best()["epoch"] == 2
    assert load_checkpoint(tmp_path / "checkpoints" / "best.pt")["epoch"] == 2
    resumed.fit()
    assert load_checkpoint(tmp_path / "checkpoints" / "best.pt")["epoch"] == 3 == resumed.best()["epoch"]


def test_best_that_cannot_be_restored_is_refused(tmp_path):
    trainer = rising_scores(build(tmp_path))
    trainer.fit(stop_after=3)
    checkpoints = tmp_path / "checkpoints"
    # best.pt of another epoch, and neither last.pt nor epoch_002.pt holds the best epoch (2) any more
    (checkpoints / "best.pt").unlink()
    os.link(checkpoints / "epoch_001.pt", checkpoints / "best.pt")
    (checkpoints / "epoch_002.pt").unlink()
    last = load_checkpoint(checkpoints / "last.pt")
    last["epoch"] = 3  # pretend last.pt moved on (its history still says epoch 2 is the best)
    save_checkpoint(checkpoints / "last.pt", {k: v for k, v in last.items() if k not in ("format", "format_version")})
    with pytest.raises(CheckpointError, match=r"best\.pt: should hold the best epoch 2 .* holds epoch 1"):
        rising_scores(build(tmp_path)).resume()


# ---------------------------------------------------------------------------------------------------- metrics.jsonl
def test_kill_between_checkpoint_and_log_keeps_the_epoch_record(tmp_path, monkeypatch):
    """A kill after epoch 1's checkpoint and before its log line lost that epoch's record for good."""
    straight = build(tmp_path / "straight")
    straight.fit()

    real_append = loop_module.Trainer._append_log

    def append(self, record):
        if record["type"] == "epoch" and record["epoch"] == 1:
            raise Killed
        real_append(self, record)

    interrupted = build(tmp_path / "killed")
    monkeypatch.setattr(loop_module.Trainer, "_append_log", append)
    with pytest.raises(Killed):
        interrupted.fit()
    monkeypatch.setattr(loop_module.Trainer, "_append_log", real_append)
    assert [r["epoch"] for r in iteration_lines(tmp_path / "killed") if r["type"] == "epoch"] == [0]

    resumed = build(tmp_path / "killed", seed=11)
    assert resumed.resume() == 2
    resumed.fit()
    assert iteration_lines(tmp_path / "killed") == iteration_lines(tmp_path / "straight")


def test_restart_without_a_checkpoint_does_not_duplicate_the_log(tmp_path, monkeypatch):
    """Killed in epoch 0 (before any last.pt): the fresh start appended a second copy of the early lines."""
    straight = build(tmp_path / "straight")
    straight.fit()

    def save(*args, **kwargs):
        raise Killed

    first = build(tmp_path / "run")
    monkeypatch.setattr(loop_module, "save_checkpoint", save)
    with pytest.raises(Killed):
        first.fit()
    monkeypatch.undo()
    assert (tmp_path / "run" / "metrics.jsonl").read_text() and not (tmp_path / "run" / "checkpoints" / "last.pt").exists()

    build(tmp_path / "run").fit()  # the same seed: a fresh start reproduces the straight run
    assert iteration_lines(tmp_path / "run") == iteration_lines(tmp_path / "straight")


# ---------------------------------------------------------------------------------------------------- run lock
HOLD_LOCK = textwrap.dedent("""
    import sys, time
    from tal_kit.training.lock import RunLock
    RunLock(sys.argv[1], command="holder").acquire()
    print("held", flush=True)
    time.sleep(120)
""")


def test_second_training_into_a_held_run_dir_is_refused_then_a_killed_holder_is_stale(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError) as caught:
            RunLock(tmp_path).acquire()
        message = str(caught.value)
        assert f"pid {holder.pid}" in message and socket.gethostname() in message and "started 20" in message
        assert str(tmp_path) in message
    finally:
        holder.kill()  # SIGKILL: no cleanup code runs in the holder
        holder.wait()
    with RunLock(tmp_path) as lock:  # the dead holder's lock is stale and taken over
        assert lock.previous["pid"] == holder.pid
        assert json.loads((tmp_path / ".train.lock").read_text())["pid"] == os.getpid()
    assert (tmp_path / ".train.lock").read_text() == ""  # released
    with RunLock(tmp_path) as lock:
        assert lock.previous is None  # a clean release leaves nothing to report


def test_lock_is_exclusive_within_one_process_too(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
            RunLock(tmp_path).acquire()
    RunLock(tmp_path).acquire().release()


# ---------------------------------------------------------------------------------------------------- temporaries
KILL_DURING_SAVE = textwrap.dedent("""
    import os, sys, torch
    from tal_kit.training import save_checkpoint
    def dying_save(obj, handle, *a, **k):
        handle.write(b"PK partial bytes")
        handle.flush()
        os._exit(9)
    torch.save = dying_save
    save_checkpoint(sys.argv[1], {k: 0 for k in ("epoch", "global_step", "config", "model", "ema", "optimizer",
                                                   "scheduler", "rng")})
""")


def test_temporaries_of_a_killed_writer_are_removed_by_the_next_write(tmp_path):
    target = tmp_path / "last.pt"
    proc = subprocess.run([sys.executable, "-c", KILL_DURING_SAVE, str(target)], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 9
    orphans = [p for p in tmp_path.iterdir() if p.name.startswith(".last.pt.")]
    assert len(orphans) == 1 and not target.exists()
    mine = tmp_path / (temp_prefix("last.pt") + "inflight.tmp")  # a live writer's temporary: never touched
    mine.write_bytes(b"")
    other = tmp_path / ".notes.txt.tmp"  # not ours
    other.write_bytes(b"")
    save_checkpoint(target, {k: 0 for k in ("epoch", "global_step", "config", "model", "ema", "optimizer",
                                            "scheduler", "rng")})
    assert load_checkpoint(target)["epoch"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([".notes.txt.tmp", mine.name, "last.pt"])


def test_stale_demo_folder_and_detections_temporaries(tmp_path):
    pid = dead_pid()
    stale_dir = tmp_path / (temp_prefix("demo", pid) + "abc123")
    (stale_dir / "features").mkdir(parents=True)
    stale_file = tmp_path / (temp_prefix("detections.json", pid) + "xyz.tmp")
    other_host = tmp_path / f".detections.json.tal{pid}.000000-xyz.tmp"  # another machine's: not checkable here
    other_host.write_text("{")
    stale_file.write_text("{")
    from tal_kit.detections import Detections

    Detections.empty().to_results_json(tmp_path / "detections.json", ["a"])
    assert not stale_file.exists() and stale_dir.exists()  # a write cleans its own target's temporaries only
    from tal_kit.data.demo import DemoSpec, generate_demo_dataset

    generate_demo_dataset(tmp_path / "demo", DemoSpec(seed=3, num_train_videos=2, num_test_videos=1,
                                                      min_duration=15.0, max_duration=20.0))
    assert not stale_dir.exists()  # the next generation removed the half-built folder of the killed one
    assert sorted(p.name for p in tmp_path.iterdir()) == [other_host.name, "demo", "detections.json"]


def test_kill_before_the_epoch_copy_is_linked_is_repaired(tmp_path, monkeypatch):
    real_link = loop_module._link_or_copy

    def link(source, target):
        if target.name == "epoch_001.pt":
            raise Killed
        real_link(source, target)

    trainer = build(tmp_path)
    monkeypatch.setattr(loop_module, "_link_or_copy", link)
    with pytest.raises(Killed):
        trainer.fit()
    monkeypatch.setattr(loop_module, "_link_or_copy", real_link)
    assert not (tmp_path / "checkpoints" / "epoch_001.pt").exists()
    build(tmp_path).resume()
    assert load_checkpoint(tmp_path / "checkpoints" / "epoch_001.pt")["epoch"] == 1


def test_report_best_refuses_a_best_pt_of_another_epoch(tmp_path):
    """The last guard: --report best never writes one epoch's detections under the best epoch's name."""
    from tal_kit.train import write_final_outputs

    trainer = build(tmp_path)

    def falling(ema_model, epoch):  # epoch 1 is the best, epoch 3 the last
        return {"average_mAP": 1.0 - 0.1 * epoch, "mAP": [1.0 - 0.1 * epoch], "tiou_thresholds": [0.5]}

    trainer.evaluate_fn = falling
    trainer.fit()
    checkpoints = tmp_path / "checkpoints"
    assert trainer.best()["epoch"] == 1
    (checkpoints / "best.pt").unlink()
    os.link(checkpoints / "epoch_002.pt", checkpoints / "best.pt")
    with pytest.raises(CheckpointError, match=r"best\.pt holds epoch 2, but the best evaluated epoch is 1"):
        write_final_outputs(trainer, cfg=None, report="best", progress=False)


def test_atomic_folder_replaces_whole_or_not_at_all(tmp_path):
    # a generated dataset is built beside its target: an error leaves the old folder as it was and no temporary
    from tal_kit.atomic import atomic_folder

    out = tmp_path / "data"
    with atomic_folder(out) as tmp:
        (tmp / "a.txt").write_text("first")
    assert (out / "a.txt").read_text() == "first"
    with pytest.raises(RuntimeError):
        with atomic_folder(out) as tmp:
            (tmp / "a.txt").write_text("second, half-built")
            raise RuntimeError("killed")
    assert (out / "a.txt").read_text() == "first" and sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    with atomic_folder(out) as tmp:
        (tmp / "b.txt").write_text("second")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
