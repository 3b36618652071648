"""Runs you can watch: ``reproduce`` prints training progress while a notebook's kernel trains, one summary line
per notebook, and no kernel transport warning."""
from __future__ import annotations

import json

import nbformat

from tal_kit import reproduce as rp
from tal_kit.run_progress import TrainingProgress, format_duration


def _iter(step, epoch, loss):
    return {"type": "iter", "epoch": epoch, "step": step, "lr": 0.1, "final_loss": loss, "epochs": 2,
            "steps_per_epoch": 10}


def test_step_and_epoch_lines_by_hand(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"type": "epoch", "epoch": 0}) + "\n")  # from before: not reported again
    logs: list[str] = []
    watcher = TrainingProgress(path, logs.append, every_s=0.0, indent="")
    with open(path, "a") as handle:
        handle.write(json.dumps(_iter(5, 0, 1.5)) + "\n")
        handle.write('{"type": "it')  # half-written: waits for the rest
    watcher.poll()
    assert logs == ["epoch 0 (1/2)  step 5/20  loss 1.5000"]  # no ETA from a single step line
    watcher._first_seen = (watcher._first_seen[0] - 10.0, 5)  # as if step 5 was seen 10 s ago
    with open(path, "a") as handle:
        handle.write('er", "epoch": 0, "step": 6}\n' + json.dumps(_iter(10, 0, 1.25)) + "\n")
    watcher.poll()
    assert logs[1:] == ["epoch 0 (1/2)  step 10/20  loss 1.2500  ETA 20 s"]  # 5 steps took 10 s; 10 remain
    with open(path, "a") as handle:
        handle.write(json.dumps(_iter(11, 1, 1.0)) + "\n")  # superseded by the epoch line of the same poll
        handle.write(json.dumps({"type": "epoch", "epoch": 0, "time_s": 12.4, "final_loss": 1.3,
                                 "eval": {"average_mAP": 0.4567, "metric": "class-agnostic mAP"}}) + "\n")
    watcher.poll()
    assert logs[2:] == ["epoch 0 (1/2) done in 12 s, mean loss 1.3000; evaluation: average class-agnostic mAP 45.67 %"]


def test_format_duration():
    assert [format_duration(s) for s in (4.4, 95, 4000)] == ["4 s", "1 min 35 s", "1 h 06 min"]


TRAIN_BODY = """
import json, pathlib, time
d = pathlib.Path(run_dir); d.mkdir(parents=True, exist_ok=True)
log = open(d / "metrics.jsonl", "a")
for epoch in range(2):
    for step in (1, 2):
        log.write(json.dumps({"type": "iter", "epoch": epoch, "step": 2 * epoch + step, "lr": 0.1,
                              "final_loss": 1.0 / (2 * epoch + step), "epochs": 2, "steps_per_epoch": 2}) + "\\n")
        log.flush(); time.sleep(0.3)
    log.write(json.dumps({"type": "epoch", "epoch": epoch, "step": 2 * epoch + 2, "time_s": 0.2, "final_loss": 0.5,
                          "eval": {"tiou_thresholds": [0.5], "mAP": [0.25 * (epoch + 1)],
                                   "average_mAP": 0.25 * (epoch + 1), "metric": "mAP"}}) + "\\n")
    log.flush()
block = {"epoch": 1, "tiou_thresholds": [0.5], "mAP": [0.5], "average_mAP": 0.5, "metric": "mAP"}
json.dump({"epochs": 2, "epochs_completed": 2, "last": block, "best": block}, open(d / "train_summary.json", "w"))
"""


def test_a_quick_reproduction_prints_progress_and_summaries(tmp_path, capfd):
    nb_dir = tmp_path / "notebooks"
    nb_dir.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell('config: str = "demo"\nrun_dir: str = ""\n', metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(TRAIN_BODY)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(nb_dir / "04_training.ipynb"))
    logs: list[str] = []
    rp.reproduce("demo", data_root=str(tmp_path), run_dir=str(tmp_path / "run"), notebook_dir=nb_dir,
                 log=logs.append, progress_every_s=0.0)
    text = "\n".join(logs)
    assert "    epoch 0 (1/2) done in 0 s, mean loss 0.5000; evaluation: average mAP 25.00 %" in logs
    assert "    epoch 1 (2/2) done in 0 s, mean loss 0.5000; evaluation: average mAP 50.00 %" in logs
    assert any(line.startswith("    epoch ") and "  step " in line and "/4  loss " in line for line in logs)
    done = next(line for line in logs if line.startswith("[1/1] 04_training.ipynb: done in"))
    assert done.endswith("; 2/2 epochs, last epoch 1: average mAP 50.00 %, best epoch 1: average mAP 50.00 %")
    assert "Results for `demo`" in text
    import zmq

    if zmq.has("curve"):  # the kernel's sockets get Curve keys (tal_kit/kernels.py): no plain-TCP warning
        assert "without encryption" not in capfd.readouterr().err
