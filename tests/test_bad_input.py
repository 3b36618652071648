"""Bad input, tried as a demanding user would (issue 15 "silent or unclear", issue 14 item 7): each case gets one
line naming the file/option and what to do, exit 2, and no traceback; what is accepted is said."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tal_kit.detections import Detections, DetectionsError
from tal_kit.evaluate import cli_evaluate, parse_tiou_thresholds
from tal_kit.evaluation.cli import parse_top_k
from tests.test_evaluate import _write_small_files

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path = REPO, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tal_kit", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(REPO), **env})


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


# ---------------------------------------------------------------------------------------------------- results JSON
def test_a_video_repeated_in_a_results_json_is_refused(tmp_path):
    """json.load keeps the last copy of a repeated key: the first copy's detections vanished without a word."""
    path = tmp_path / "pred.json"
    path.write_text('{"results": {"a": [{"label": "Run", "score": 0.9, "segment": [0, 10]}],'
                    ' "b": [], "a": [{"label": "Run", "score": 0.5, "segment": [20, 30]}]}}')
    with pytest.raises(DetectionsError, match=r"pred\.json: video 'a' is listed 2 times under 'results'.*merge"):
        Detections.from_results_json(path, ["Run"])


def test_binary_or_folder_pred_names_the_file(tmp_path):
    binary = tmp_path / "pred.npz"
    binary.write_bytes(b"PK\x03\x04\xff\xfe\x00binary")
    with pytest.raises(DetectionsError, match=r"pred\.npz: not a text JSON file"):
        Detections.from_results_json(binary, ["Run"])
    with pytest.raises(DetectionsError, match="is a folder"):
        Detections.from_results_json(tmp_path, ["Run"])
    from tal_kit.data.annotations import AnnotationError, load_annotations

    with pytest.raises(AnnotationError, match=r"pred\.npz: not a text JSON file"):  # a binary --gt too
        load_annotations(binary)


# ---------------------------------------------------------------------------------------------------- evaluate options
@pytest.mark.parametrize("text", ["0.5,1.5", "-0.1", "0:0.5:0.1", "0.5:1.2:0.1", "nan"])
def test_tiou_outside_0_1_is_refused(text):
    with pytest.raises(ValueError, match=r"--tiou .*\(0, 1\]"):
        parse_tiou_thresholds(text)


@pytest.mark.parametrize("text", ["0,-1", "0", "x", "1,five", ""])
def test_top_k_must_be_whole_numbers_from_1(text):
    with pytest.raises(ValueError, match=r"--top-k"):
        parse_top_k(text)
    assert parse_top_k("1, 5,10") == [1, 5, 10]


def test_cli_top_k_word_is_one_line(tmp_path):
    gt, pred = _write_small_files(tmp_path)
    assert_one_line_error(run_cli("evaluate", "--gt", gt, "--pred", pred, "--subset", "Test", "--top-k", "x"),
                          "--top-k 'x'")


def test_unknown_videos_and_negative_starts_are_counted_in_one_warning(tmp_path, capsys):
    """Detections of a video outside the ground truth stay false positives (as officially, so the number is the
    official one) and are reported once with counts and an example; so are segments that start before 0 s."""
    gt, pred = _write_small_files(tmp_path)
    data = json.loads(Path(pred).read_text())
    data["results"]["zzz"] = [{"label": "Run", "score": 0.95, "segment": [0.0, 10.0]},
                              {"label": "Run", "score": 0.94, "segment": [5.0, 10.0]}]
    data["results"]["a"].append({"label": "Run", "score": 0.1, "segment": [-1.5, 0.5]})
    (tmp_path / "odd.json").write_text(json.dumps(data))
    assert cli_evaluate(["--gt", gt, "--pred", str(tmp_path / "odd.json"), "--subset", "Test", "--tiou", "0.5",
                         "--json"]) == 0
    captured = capsys.readouterr()
    # ranked: FP FP TP TP FP FP -> precision at the two recalls (1/2, 1): 1/3 and 1/2, interpolated: 1/2 and 1/2
    assert json.loads(captured.out)["mAP"] == [pytest.approx(0.5)]
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1
    assert "2 detection(s) of 1 video(s) not in the evaluated ground truth (e.g. 'zzz')" in warnings[0]
    assert "1 detection(s) start before 0 s (e.g. video 'a', start -1.500 s)" in warnings[0]
    assert cli_evaluate(["--gt", gt, "--pred", pred, "--subset", "Test", "--json"]) == 0
    assert "warning" not in capsys.readouterr().err  # clean input: not a word


# ---------------------------------------------------------------------------------------------------- CLI error lines
def test_invalid_yaml_in_set_is_one_line():
    line = assert_one_line_error(run_cli("config", "show", "demo", "--set", "opt.learning_rate=[1"),
                                 "override 'opt.learning_rate=[1'", "not valid YAML")
    assert len(line) < 300


def test_info_help_prints_help_instead_of_running_info():
    proc = run_cli("info", "--help")
    assert proc.returncode == 0 and "usage: tal-kit info" in proc.stdout and "NMS backend:" not in proc.stdout


def test_output_paths_that_cannot_be_written(tmp_path):
    gt, pred = _write_small_files(tmp_path)
    base = ["evaluate", "--gt", gt, "--pred", pred, "--subset", "Test", "--json"]
    (tmp_path / "taken").mkdir()
    assert_one_line_error(run_cli(*base, "--output", str(tmp_path / "taken")), str(tmp_path / "taken"),
                          "is a folder where a file is expected")
    assert_one_line_error(run_cli(*base, "--output", "/sys/tal_kit_test/m.json"), "/sys/tal_kit_test",
                          "not permitted")
    (tmp_path / "file").write_text("")
    assert_one_line_error(run_cli(*base, "--output", str(tmp_path / "file" / "m.json")), "is a file where a folder", str(tmp_path / "file"))
    assert_one_line_error(run_cli("evaluate", "--gt", gt, "--pred", str(tmp_path), "--subset", "Test"),
                          str(tmp_path), "is a folder")


def test_cuda_without_a_gpu_and_unknown_devices_are_one_line(tmp_path, capsys):
    import torch

    from tal_kit.__main__ import main

    train = ["train", "--config", "demo", "--run-dir", str(tmp_path / "r"), "--data-root", str(tmp_path)]
    assert main(train + ["--device", "gpu"]) == 2
    assert capsys.readouterr().err == "error: --device gpu: not a device name; use auto, cpu, cuda or cuda:N\n"
    if torch.cuda.is_available():
        return
    assert main(train + ["--device", "cuda:0"]) == 2
    assert capsys.readouterr().err == ("error: --device cuda:0: no CUDA device is visible here; use --device cpu, "
                                       "or auto (a GPU when there is one)\n")


def test_second_training_into_a_locked_run_dir_names_the_holder(tmp_path, capsys):
    from tal_kit.__main__ import main
    from tal_kit.training.lock import RunLock

    with RunLock(tmp_path / "run", command="train --config demo"):
        code = main(["train", "--config", "demo", "--device", "cpu", "--run-dir", str(tmp_path / "run"),
                     "--data-root", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"pid {os.getpid()}" in err and "in use by another training" in err


def test_full_disk_during_a_checkpoint_says_disk_full(tmp_path, monkeypatch):
    """torch reported ENOSPC as `unexpected pos 704 vs 598`; the CLI now says which file and that the disk is full.
    /dev/full stands in for the full disk: every write to it fails with ENOSPC."""
    import errno

    from tal_kit import atomic
    from tal_kit.cli import user_error_message
    from tal_kit.training import save_checkpoint

    real_fdopen = os.fdopen
    monkeypatch.setattr(atomic.os, "fdopen", lambda fd, *a, **k: real_fdopen(os.open("/dev/full", os.O_WRONLY),
                                                                             *a, **k))
    state = {k: 0 for k in ("epoch", "global_step", "config", "model", "ema", "optimizer", "scheduler", "rng")}
    state["model"] = {"w": __import__("torch").zeros(100_000)}
    with pytest.raises(OSError) as caught:
        save_checkpoint(tmp_path / "last.pt", state)
    monkeypatch.undo()
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(tmp_path / "last.pt")
    assert user_error_message(caught.value) == f"{tmp_path / 'last.pt'}: disk full (no space left on device): " \
                                               "free some space or write somewhere else"
    assert list(tmp_path.iterdir()) == []  # no temporary left behind
    with pytest.raises(OSError, match="disk full|No space"):  # a small JSON fails at flush time: named as well
        monkeypatch.setattr(atomic.os, "fdopen", lambda fd, *a, **k: real_fdopen(os.open("/dev/full", os.O_WRONLY),
                                                                                 *a, **k))
        atomic.write_json_atomic(tmp_path / "m.json", {"a": 1})
    monkeypatch.undo()


def test_nan_loss_stop_and_bugs(monkeypatch, capsys):
    """The NaN-loss stop is one line, exit 2; an unexpected exception (a bug) keeps its traceback."""
    import tal_kit.__main__ as cli

    def nan_stop(argv):
        raise FloatingPointError("epoch 3, step 120: the loss is nan (videos ['v1']); lower opt.learning_rate or "
                                 "check these videos' features for NaN/inf")

    monkeypatch.setitem(cli.SUBCOMMANDS, "nan", ("tests.test_bad_input", "nan_stop", ""))
    monkeypatch.setattr(sys.modules[__name__], "nan_stop", nan_stop, raising=False)
    assert cli.main(["nan"]) == 2
    assert capsys.readouterr().err == ("error: epoch 3, step 120: the loss is nan (videos ['v1']); lower "
                                       "opt.learning_rate or check these videos' features for NaN/inf\n")

    def bug(argv):
        raise KeyError("internal")

    monkeypatch.setattr(sys.modules[__name__], "nan_stop", bug, raising=False)
    with pytest.raises(KeyError):
        cli.main(["nan"])


def test_read_only_and_permission_messages():
    import errno

    from tal_kit.cli import describe_os_error

    assert describe_os_error(OSError(errno.EROFS, "Read-only file system", "/mnt/ro/runs")) == \
        "/mnt/ro/runs: read-only file system: choose a writable folder"
    assert "permission denied" in describe_os_error(PermissionError(errno.EACCES, "Permission denied", "/x"))


# ---------------------------------------------------------------------------------------------------- one CLI pattern
def test_common_options_are_declared_only_in_cli_py():
    """--config --set --data-root --run-dir --device come from tal_kit.cli.add_common_options in every command
    (demo-data's and demo-videos' --set are their generators' settings, not config overrides)."""
    import re

    pattern = re.compile(r"""add_argument\(\s*["']--(config|set|data-root|run-dir|device)["']""")
    found = []
    for path in sorted((REPO / "tal_kit").rglob("*.py")):
        if path == REPO / "tal_kit" / "cli.py":
            continue
        text = path.read_text()
        found += [f"{path.relative_to(REPO)}: {m.group(0)}" for m in pattern.finditer(text)
                  if not (path.name in ("demo.py", "demo_videos.py") and 'dest="settings"' in text[m.end():m.end() + 40])]
    assert found == []


def test_common_options_keep_each_commands_default_and_requirement():
    import argparse

    from tal_kit.cli import add_common_options

    parser = argparse.ArgumentParser()
    add_common_options(parser, defaults={"config": "demo"})
    args = parser.parse_args(["--set", "a.b=1", "--set", "c.d=2"])
    assert (args.config, args.overrides, args.data_root, args.run_dir, args.device) == \
        ("demo", ["a.b=1", "c.d=2"], None, None, "auto")
    strict = argparse.ArgumentParser()
    add_common_options(strict, "config", "data-root", required=("config", "data-root"))
    with pytest.raises(SystemExit):
        strict.parse_args(["--config", "demo"])
    with pytest.raises(SystemExit):  # an option it did not ask for is not there
        strict.parse_args(["--config", "demo", "--data-root", "x", "--device", "cpu"])
    with pytest.raises(ValueError, match="not a common option"):
        add_common_options(argparse.ArgumentParser(), "seed")


def test_a_failed_job_is_exit_1_bad_input_exit_2_through_one_rule(monkeypatch, capsys):
    import tal_kit.__main__ as entry
    from tal_kit.cli import UsageError
    from tal_kit.fetch import FetchError

    def failing_download(argv):
        raise FetchError("downloading x.tar.gz failed (timeout); the 10 bytes so far are kept")

    def bad_value(argv):
        raise UsageError("--videos must be >= 1")

    monkeypatch.setitem(entry.SUBCOMMANDS, "job", ("tests.test_bad_input", "failing_download", ""))
    monkeypatch.setitem(entry.SUBCOMMANDS, "usage", ("tests.test_bad_input", "bad_value", ""))
    monkeypatch.setattr(sys.modules[__name__], "failing_download", failing_download, raising=False)
    monkeypatch.setattr(sys.modules[__name__], "bad_value", bad_value, raising=False)
    assert entry.main(["job"]) == 1
    assert capsys.readouterr().err == "error: downloading x.tar.gz failed (timeout); the 10 bytes so far are kept\n"
    assert entry.main(["usage"]) == 2
    assert capsys.readouterr().err == "error: --videos must be >= 1\n"


def test_reproduce_and_dry_run_bad_input_is_exit_2_like_every_command(tmp_path):
    """They used to exit 1 for a bad preset, unlike train/infer/evaluate/viz/check-data (2)."""
    assert_one_line_error(run_cli("reproduce", "--config", "no_such_preset"), "unknown preset")
    assert_one_line_error(run_cli("dry-run-data", "--config", "no_such_preset", "--out", str(tmp_path / "o")),
                          "unknown preset")


def test_fusion_topk_above_the_classes_is_one_line(tmp_path):
    # 2 classes in the score vectors, --fusion-topk 5: bad input (exit 2, the option named), not a traceback
    gt, pred = _write_small_files(tmp_path)
    (tmp_path / "scores.json").write_text(json.dumps({"a": [0.9, 0.1]}))
    assert_one_line_error(run_cli("evaluate", "--gt", gt, "--pred", pred, "--subset", "Test", "--class-scores",
                                  str(tmp_path / "scores.json"), "--fusion-topk", "5"), "topk=5", "2 classes")


@pytest.mark.parametrize("content", [b"not a checkpoint at all", b"PK\x03\x04truncated"])
def test_unreadable_published_checkpoint_is_one_line(tmp_path, content):
    # infer with --config reads a checkpoint through the published-checkpoint reader (model/checkpoint.py)
    bad = tmp_path / "actionformer.pth.tar"
    bad.write_bytes(content)
    from tal_kit.model.checkpoint import CheckpointReadError, read_state_dict

    with pytest.raises(CheckpointReadError, match="actionformer.pth.tar"):
        read_state_dict(bad)
    assert_one_line_error(run_cli("infer", "--config", "demo", "--ckpt", str(bad), "--out",
                                  str(tmp_path / "dets.json"), "--device", "cpu"), "actionformer.pth.tar")
