"""Console progress for headless reproductions: a notebook kernel's training is invisible to the terminal that runs
``reproduce``, so this follows the run's ``metrics.jsonl`` while a notebook executes and prints progress lines
(epoch, step, loss, ETA; every evaluation's mAP), then one summary line per notebook.

The training loop appends one JSON line every ``log_every`` steps ("iter": epoch, step, loss, epochs,
steps_per_epoch) and one per epoch ("epoch": mean losses, time, and the evaluation when there was one).
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Callable

Log = Callable[[str], None]


def format_duration(seconds: float) -> str:
    """``95`` -> "1 min 35 s", ``4000`` -> "1 h 07 min"."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class TrainingProgress:
    """Follows ``metrics_path`` in a background thread (``with TrainingProgress(...):``) and logs progress.

    Step lines are printed at most every ``every_s`` seconds; epoch lines (with the evaluation's mAP) always.
    Only lines appended after the watcher starts are reported, so a resumed run does not repeat old epochs.
    """

    def __init__(self, metrics_path: Path, log: Log, *, every_s: float = 20.0, poll_s: float = 1.0,
                 indent: str = "    "):
        self.path = Path(metrics_path)
        self.log = log
        self.every_s = every_s
        self.poll_s = poll_s
        self.indent = indent
        self._offset = self.path.stat().st_size if self.path.exists() else 0
        self._buffer = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._first_seen: tuple[float, int] | None = None  # (time, step) of the first step line seen
        self._last_printed = -float("inf")
        self._pending: dict[str, Any] | None = None  # the newest step line not printed yet
        self._epochs: int | None = None  # epochs in all, from the step lines

    def __enter__(self) -> "TrainingProgress":
        self._thread = threading.Thread(target=self._run, name="training-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.poll(final=True)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.poll()
            except Exception:  # progress is a courtesy: never let it break the run
                pass

    def _new_records(self) -> list[dict[str, Any]]:
        try:
            size = self.path.stat().st_size
        except OSError:
            return []
        if size < self._offset:  # rewritten shorter (a resume drops interrupted epochs): follow from here
            self._offset, self._buffer = size, ""
            return []
        with open(self.path) as handle:
            handle.seek(self._offset)
            text = handle.read()
            self._offset = handle.tell()
        lines = (self._buffer + text).split("\n")
        self._buffer = lines.pop()  # an incomplete last line waits for the rest
        records = []
        for line in lines:
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return records

    def poll(self, final: bool = False) -> None:
        """Read what was appended and log it (called by the thread; once more at the end)."""
        now = time.monotonic()
        for record in self._new_records():
            if record.get("type") == "iter":
                self._epochs = record.get("epochs") or self._epochs
                if self._first_seen is None:
                    self._first_seen = (now, int(record.get("step", 0)))
                self._pending = record
            elif record.get("type") == "epoch":
                self._epochs = record.get("epochs") or self._epochs
                self._pending = None
                self.log(self.indent + self.epoch_line(record))
        if self._pending is not None and (final or now - self._last_printed >= self.every_s):
            self.log(self.indent + self.step_line(self._pending, now))
            self._last_printed = now
            self._pending = None

    def step_line(self, record: dict[str, Any], now: float) -> str:
        epochs, per_epoch = record.get("epochs"), record.get("steps_per_epoch")
        step = int(record.get("step", 0))
        text = _epoch_label(record, epochs)
        total = epochs * per_epoch if epochs and per_epoch else None
        text += f"  step {step}" + (f"/{total}" if total else "")
        if "final_loss" in record:
            text += f"  loss {record['final_loss']:.4f}"
        if total and self._first_seen is not None and step > self._first_seen[1]:
            rate = (now - self._first_seen[0]) / (step - self._first_seen[1])
            text += f"  ETA {format_duration(rate * (total - step))}"
        return text

    def epoch_line(self, record: dict[str, Any]) -> str:
        text = f"{_epoch_label(record, self._epochs)} done"
        if "time_s" in record:
            text += f" in {format_duration(record['time_s'])}"
        if "final_loss" in record:
            text += f", mean loss {record['final_loss']:.4f}"
        evaluation = record.get("eval")
        if isinstance(evaluation, dict) and evaluation.get("average_mAP") is not None:
            text += (f"; evaluation: average {evaluation.get('metric', 'mAP')} "
                     f"{100 * evaluation['average_mAP']:.2f} %")
        return text


def _epoch_label(record: dict[str, Any], epochs: int | None) -> str:
    """Epochs are numbered from 0 in every tal_kit file and table; "(4/8)" says how far that is."""
    epoch = int(record["epoch"])
    return f"epoch {epoch}" + (f" ({epoch + 1}/{epochs})" if epochs else "")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def notebook_summary(run_dir: Path, notebook_name: str) -> str:
    """A few words on what a finished notebook produced (training: epochs and mAP; evaluation: mAP)."""
    if notebook_name.startswith("04"):
        summary = _read_json(run_dir / "train_summary.json") or {}
        text = f"{summary.get('epochs_completed', '?')}/{summary.get('epochs', '?')} epochs"
        for which in ("last", "best"):
            block = summary.get(which)
            if isinstance(block, dict) and block.get("average_mAP") is not None:
                text += (f", {which} epoch {block['epoch']}: average {block.get('metric', 'mAP')} "
                         f"{100 * block['average_mAP']:.2f} %")
        return text
    if notebook_name.startswith("05"):
        metrics = _read_json(run_dir / "metrics.json")
        if metrics and metrics.get("average_mAP") is not None:
            name = (metrics.get("metric") or {}).get("name", "mAP")
            epoch = metrics.get("epoch")
            return (f"{metrics.get('which') or 'evaluated'} epoch"
                    + (f" {epoch}" if isinstance(epoch, int) else "")
                    + f": average {name} {100 * metrics['average_mAP']:.2f} %")
    return ""
