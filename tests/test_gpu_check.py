"""benchmarks/gpu_check.sh without a GPU: its plan (--dry-run) names every owed check and the extraction
benchmark, every test it runs exists, every option it passes is one the command accepts, and a plain run on a
machine without a GPU fails clearly instead of reporting passes."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
CHECKS = ["nms_build", "nms_tests", "nms_speed", "model_parity", "train_speed", "bf16_step", "nccl_1proc",
          "extract_speed"]


def _run(*args: str, out: Path, timeout: int = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ, OUT=str(out), PYTHON=sys.executable)
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=timeout,
                          cwd=ROOT)


@pytest.fixture(scope="module")
def plan(tmp_path_factory) -> dict[str, str]:
    result = _run("--dry-run", out=tmp_path_factory.mktemp("plan"))
    assert result.returncode == 0, result.stderr
    commands = dict(re.findall(r"^\[plan\] (\w+) \(timeout \d+s\): (.*)$", result.stdout, re.M))
    table = re.findall(r"^\| (\w+) +\| planned +\|", result.stdout, re.M)
    assert table == list(commands) == CHECKS  # one summary row per check, in order
    return commands


def test_the_plan_covers_every_owed_check(plan):
    assert "trainer.amp=bf16" in plan["bf16_step"] and "--device cuda" in plan["bf16_step"]
    assert "torch.distributed.run" in plan["nccl_1proc"] and "--nproc_per_node=1" in plan["nccl_1proc"]
    assert "--device cuda" in plan["train_speed"]
    assert "test_nms_selfcheck.py" in plan["nms_tests"]
    assert "--device cuda" in plan["extract_speed"]


def test_every_test_in_the_plan_exists(plan):
    targets = [t for cmd in plan.values() for t in shlex.split(cmd) if t.startswith("tests/")]
    assert any("::" in t for t in targets)
    collected = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                                *targets], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert collected.returncode == 0, collected.stdout[-2000:]
    assert "test_model_matches_reference_on_cuda" in collected.stdout


def _options_after(command: str, marker: str) -> list[str]:
    words = shlex.split(command.split(marker, 1)[1].split("&&")[0])
    return [w.split("=")[0] for w in words if w.startswith("--")]


@pytest.mark.parametrize("check, marker, help_cmd", [
    ("train_speed", "benchmarks/model_speed.py", [sys.executable, "benchmarks/model_speed.py", "--help"]),
    ("nms_speed", "benchmarks/nms_speed.py", [sys.executable, "benchmarks/nms_speed.py", "--help"]),
    ("bf16_step", "-m tal_kit train", [sys.executable, "-m", "tal_kit", "train", "--help"]),
    ("nccl_1proc", "-m tal_kit train", [sys.executable, "-m", "tal_kit", "train", "--help"]),
    ("nccl_1proc", "-m torch.distributed.run", [sys.executable, "-m", "torch.distributed.run", "--help"]),
    ("extract_speed", "benchmarks/extract_speed.py", [sys.executable, "benchmarks/extract_speed.py", "--help"]),
])
def test_every_option_is_accepted(plan, check, marker, help_cmd):
    options = _options_after(plan[check], marker)
    if marker == "-m torch.distributed.run":
        options = options[:2]  # its own options; the rest belong to tal_kit train
    assert options
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    shown = subprocess.run(help_cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=120).stdout
    assert [o for o in options if o not in shown] == []


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_without_a_gpu_it_fails_clearly(tmp_path):
    result = _run(out=tmp_path)
    assert result.returncode == 2
    assert "no GPU visible" in result.stdout and "pass" not in result.stdout
    assert not list(tmp_path.glob("*.log"))  # nothing ran
