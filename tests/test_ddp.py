"""Two CPU processes with gloo (torchrun): DistributedDataParallel training progresses, checkpoints load, and an
interrupted-and-resumed 2-process run ends with the same weights as an uninterrupted one."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.tiny_demo import TINY_OVERRIDES, tiny_demo  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow
REPO_ROOT = Path(__file__).resolve().parents[1]


def torchrun_train(data_root: Path, run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    overrides = [arg for o in TINY_OVERRIDES for arg in ("--set", o)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "tal_kit",
           "train", "--config", "demo", "--data-root", str(data_root), "--run-dir", str(run_dir), "--device", "cpu",
           "--figures-dir", str(run_dir / "figures"), "--no-progress", *overrides, *extra]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT))
    done = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"torchrun failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return done


@pytest.fixture(scope="module")
def straight_run(tiny_demo, tmp_path_factory):  # noqa: F811
    run_dir = tmp_path_factory.mktemp("ddp") / "straight"
    done = torchrun_train(tiny_demo, run_dir)
    return run_dir, done


def test_two_gloo_processes_train_and_checkpoints_load(straight_run, tiny_demo):  # noqa: F811
    from tal_kit.infer import evaluate_checkpoint
    from tal_kit.training.checkpoint import load_checkpoint

    run_dir, done = straight_run
    assert "average mAP" in done.stdout  # rank 0 printed the summary ...
    assert done.stdout.count("run ") == 1  # ... and only rank 0
    summary = json.loads((run_dir / "train_summary.json").read_text())
    assert summary["finished"] and summary["epochs_completed"] == 2
    # loader.batch_size 4 is the global batch: 2 videos per process per step, so 40 videos -> 10 steps per epoch
    assert summary["global_step"] == 20
    checkpoint = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert checkpoint["world_size"] == 2 and len(checkpoint["rng"]) == 2
    assert not torch.equal(checkpoint["rng"][0]["torch"], checkpoint["rng"][1]["torch"])  # one seed per process
    first = load_checkpoint(run_dir / "checkpoints" / "epoch_000.pt")
    changed = [k for k, v in checkpoint["model"].items() if v.is_floating_point() and not torch.equal(v, first["model"][k])]
    assert len(changed) > 10  # the second epoch moved the weights
    losses = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(r["final_loss"])) for r in losses)
    # the checkpoint loads into a fresh model in this (single) process and reproduces the gathered evaluation
    evaluation = evaluate_checkpoint(run_dir / "checkpoints" / "last.pt", data_root=tiny_demo, device="cpu",
                                     progress=False)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [float(v) for v in evaluation.result.mAP] == metrics["mAP"]
    assert len(evaluation.detections) == sum(
        len(v) for v in json.loads((run_dir / "detections.json").read_text())["results"].values())


def test_two_process_resume_is_exact(straight_run, tiny_demo, tmp_path):  # noqa: F811
    from tal_kit.training.checkpoint import load_checkpoint

    run_dir, _ = straight_run
    resumed = tmp_path / "resumed"
    torchrun_train(tiny_demo, resumed, "--stop-after", "1")
    assert json.loads((resumed / "train_summary.json").read_text())["epochs_completed"] == 1
    torchrun_train(tiny_demo, resumed, "--resume")
    a = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    b = load_checkpoint(resumed / "checkpoints" / "last.pt")
    for part in ("model", "ema"):
        for key, value in a[part].items():
            assert torch.equal(value, b[part][key]), f"{part}.{key}"
