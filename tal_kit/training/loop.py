"""The training loop: one optimizer step per batch, EMA, per-epoch evaluation and checkpoints, exact resume.

The loop only relies on the model contract (``model(feats, mask)`` -> output,
``model.losses(output, segments, labels)`` -> {"cls_loss", "reg_loss", "final_loss"}) and on an evaluation
callable, so it can be exercised with a tiny stand-in model. ``tal_kit.train`` wires in the real dataset,
ActionFormer and the ActivityNet evaluator.

One iteration (SPEC §D.7): zero the gradients -> forward -> losses -> backward -> clip the gradient norm ->
optimizer step (at the lr of this iteration) -> scheduler step (lr of the next one) -> EMA update.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data.distributed import DistributedSampler
from tqdm.auto import tqdm

from tal_kit.atomic import atomic_path, write_json_atomic, write_text_atomic
from tal_kit.runtime import DistContext, gather_objects

from .checkpoint import (CheckpointError, check_resume_compatible, load_checkpoint, load_state_strict,
                         save_checkpoint)
from .ema import ModelEMA, unwrap
from .seeding import capture_rng_state, restore_rng_state

# evaluate_fn(ema_model, epoch) -> {"average_mAP": float, "mAP": [...], "tiou_thresholds": [...], ...} on rank 0,
# None on the other ranks. Every rank calls it (evaluation may be sharded across ranks).
EvaluateFn = Callable[[nn.Module, int], "dict[str, Any] | None"]


class TrainCallback(Protocol):
    """Optional hooks, e.g. a live loss plot in a notebook. Both methods are optional."""

    def on_iteration(self, record: dict[str, Any]) -> None: ...

    def on_epoch_end(self, record: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class LoopSettings:
    epochs: int                      # epochs in all, warmup included
    clip_grad_l2norm: float = 1.0    # <= 0: no clipping
    ema_decay: float = 0.999
    eval_start_epoch: int = 0        # evaluate the EMA model after every epoch with index >= this (InternVideo: 5)
    checkpoint_every: int = 1        # keep checkpoints/epoch_XXX.pt every this many epochs (last.pt: every epoch)
    amp: str = "none"                # "bf16": autocast the forward pass to bfloat16 (GPU)
    log_every: int = 10              # write an iteration line to metrics.jsonl every this many steps
    progress: bool = True            # tqdm progress bars


def _batch_to(batch: Mapping[str, Any], device: torch.device) -> tuple[torch.Tensor, torch.Tensor, list, list]:
    feats = batch["feats"].to(device, non_blocking=True)
    mask = batch["mask"].to(device, non_blocking=True)
    segments = [s.to(device) for s in batch["segments"]]
    labels = [lab.to(device) for lab in batch["labels"]]
    return feats, mask, segments, labels


def _link_or_copy(source: Path, target: Path) -> None:
    """``target`` becomes another name for ``source``'s current content (a hard link costs no disk space).

    ``source`` is later *replaced* by rename, never rewritten in place, so the link keeps this epoch's content.
    """
    with atomic_path(target) as tmp:
        tmp.unlink()  # os.link needs the name free
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


class Trainer:
    """Trains ``model`` with ``optimizer``/``scheduler`` over ``train_loader``; writes everything under ``run_dir``.

    Run-dir layout (rank 0 writes): ``checkpoints/last.pt`` (every epoch), ``checkpoints/epoch_XXX.pt`` (every
    ``checkpoint_every`` epochs and the final one), ``checkpoints/best.pt`` (the best evaluated epoch),
    ``metrics.jsonl`` (one JSON object per line: "iter" lines and "epoch" lines) and ``train_summary.json``.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: LRScheduler,
                 train_loader: Iterable, *, settings: LoopSettings, run_dir: str | os.PathLike,
                 config_dict: Mapping[str, Any], ctx: DistContext | None = None,
                 loader_generator: torch.Generator | None = None,
                 sampler: DistributedSampler | None = None,
                 evaluate_fn: EvaluateFn | None = None, callbacks: Sequence[TrainCallback] = ()):
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.train_loader = train_loader
        self.settings = settings
        self.run_dir = Path(run_dir)
        self.checkpoint_dir = self.run_dir / "checkpoints"
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.config_dict = dict(config_dict)
        self.ctx = ctx or DistContext()
        self.loader_generator = loader_generator
        self.sampler = sampler
        self.evaluate_fn = evaluate_fn
        self.callbacks = list(callbacks)
        self.ema = ModelEMA(model, settings.ema_decay)
        self.epoch = 0           # the next epoch to train
        self.global_step = 0     # optimizer steps taken
        self.history: list[dict[str, Any]] = []  # one entry per evaluated epoch
        # Every line of metrics.jsonl so far (rank 0). The checkpoint holds them too, so that after a kill at any
        # moment the log is rewritten to agree exactly with the checkpoint the run resumes from.
        self.log_records: list[dict[str, Any]] = []
        self._log_synced = False  # metrics.jsonl rewritten from log_records in this process
        if settings.amp not in ("none", "bf16"):
            raise ValueError(f"trainer.amp must be 'none' or 'bf16', got {settings.amp!r}")

    # ------------------------------------------------------------------ resume
    def resume(self, path: str | os.PathLike | None = None) -> int:
        """Restore everything from a checkpoint (default ``checkpoints/last.pt``); returns the next epoch to train."""
        path = Path(path) if path is not None else self.checkpoint_dir / "last.pt"
        checkpoint = load_checkpoint(path, map_location="cpu")
        check_resume_compatible(checkpoint, self.config_dict, self.ctx.world_size, path)
        stored_steps = checkpoint["scheduler"].get("total_steps")
        if stored_steps is not None and stored_steps != getattr(self.scheduler, "total_steps", stored_steps):
            raise CheckpointError(f"{path}: cannot resume, the schedule had {stored_steps} steps in all and now has "
                                  f"{self.scheduler.total_steps}: the training split or batch size changed")
        load_state_strict(unwrap(self.model), checkpoint["model"], path, "model")
        load_state_strict(self.ema.module, checkpoint["ema"], path, "EMA")
        try:
            self.optimizer.load_state_dict(checkpoint["optimizer"])
        except (ValueError, KeyError) as exc:
            raise CheckpointError(f"{path}: the optimizer state does not fit this model ({exc})") from exc
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        rng_states = checkpoint["rng"]
        if len(rng_states) != self.ctx.world_size:
            raise CheckpointError(f"{path}: holds RNG states of {len(rng_states)} processes, "
                                  f"this run has {self.ctx.world_size}")
        restore_rng_state(rng_states[self.ctx.rank], self.loader_generator)
        self.epoch = int(checkpoint["epoch"]) + 1
        self.global_step = int(checkpoint["global_step"])
        self.history = list(checkpoint.get("history", []))
        if self.ctx.is_main:
            if "log" in checkpoint:
                self.log_records = list(checkpoint["log"])
                self._rewrite_metrics_log()
            else:  # a checkpoint written before the log was stored in it
                self._truncate_metrics_log(self.epoch)
                self._log_synced = True
            self._repair_best(path, checkpoint)
            self._repair_epoch_copy(path, int(checkpoint["epoch"]))
        return self.epoch

    def _repair_epoch_copy(self, path: Path, epoch: int) -> None:
        """A kill between saving last.pt and linking epoch_XXX.pt loses that epoch's copy: make it from last.pt."""
        final = epoch + 1 == self.settings.epochs
        target = self.checkpoint_dir / f"epoch_{epoch:03d}.pt"
        if ((epoch + 1) % max(self.settings.checkpoint_every, 1) == 0 or final) and not target.exists() \
                and path.resolve() == (self.checkpoint_dir / "last.pt").resolve():
            _link_or_copy(path, target)

    def _rewrite_metrics_log(self) -> None:
        """metrics.jsonl := exactly the lines of ``log_records`` (drops what an interrupted epoch appended, restores
        what a kill between checkpoint and log lost, and starts a fresh run on an empty log)."""
        write_text_atomic(self.metrics_path, "".join(json.dumps(r) + "\n" for r in self.log_records))
        self._log_synced = True

    def _repair_best(self, path: Path, checkpoint: Mapping[str, Any]) -> None:
        """best.pt must hold the best epoch of the history. A kill after last.pt was saved and before best.pt was
        linked leaves best.pt on an older epoch: the epoch's own file (last.pt or epoch_XXX.pt) replaces it."""
        best = self.best()
        if best is None:
            return
        target = self.checkpoint_dir / "best.pt"
        if _checkpoint_epoch(target) == best["epoch"]:
            return
        candidates = [path] if int(checkpoint["epoch"]) == best["epoch"] else []
        candidates.append(self.checkpoint_dir / f"epoch_{best['epoch']:03d}.pt")
        for source in candidates:
            if _checkpoint_epoch(source) == best["epoch"]:
                _link_or_copy(source, target)
                return
        raise CheckpointError(f"{target}: should hold the best epoch {best['epoch']} of {path}'s history, but "
                              f"holds epoch {_checkpoint_epoch(target)}, and no checkpoint of epoch {best['epoch']} "
                              f"is left to restore it from; use --report last")

    def _truncate_metrics_log(self, next_epoch: int) -> None:
        """Drop log lines of epochs that were interrupted before their checkpoint (they are trained again)."""
        if not self.metrics_path.exists():
            return
        kept = []
        for line in self.metrics_path.read_text().splitlines():
            try:
                if json.loads(line).get("epoch", -1) < next_epoch:
                    kept.append(line)
            except json.JSONDecodeError:
                continue  # a line cut by the interruption
        write_text_atomic(self.metrics_path, "".join(f"{line}\n" for line in kept))

    # ------------------------------------------------------------------ training
    def fit(self, stop_after: int | None = None) -> dict[str, Any]:
        """Train from ``self.epoch`` to the last epoch (or only ``stop_after`` epochs); returns the summary."""
        last_epoch = self.settings.epochs
        if stop_after is not None:
            last_epoch = min(last_epoch, self.epoch + stop_after)
        epochs = range(self.epoch, last_epoch)
        if self.ctx.is_main and not self._log_synced:
            self._rewrite_metrics_log()  # a fresh run: nothing of an earlier, uncheckpointed attempt stays
        for epoch in epochs:
            record = self.train_one_epoch(epoch)
            started = time.perf_counter()
            record["eval"] = self._evaluate(epoch)
            if record["eval"] is not None:
                record["eval_time_s"] = time.perf_counter() - started
            self.epoch = epoch + 1
            if self.ctx.is_main:
                self.log_records.append(_json_record(record))  # saved in the checkpoint, then appended to the log
            self._save(epoch, record["eval"])
            if self.ctx.is_main:
                self._append_log(self.log_records[-1])
                write_json_atomic(self.run_dir / "train_summary.json", self.summary())
            for callback in self.callbacks:
                if hasattr(callback, "on_epoch_end"):
                    callback.on_epoch_end(record)
        return self.summary()

    def train_one_epoch(self, epoch: int) -> dict[str, Any]:
        """One pass over the training loader; returns the epoch record (mean losses, lr, time)."""
        self.model.train()
        if self.sampler is not None and hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)
        device = self.ctx.device
        autocast = (torch.autocast(device_type=device.type, dtype=torch.bfloat16)
                    if self.settings.amp == "bf16" else nullcontext())
        params = [p for p in self.model.parameters() if p.requires_grad]
        sums: dict[str, float] = {}
        num_steps = 0
        start = time.perf_counter()
        try:
            steps_per_epoch: int | None = len(self.train_loader)  # type: ignore[arg-type]
        except TypeError:  # an iterable without a length
            steps_per_epoch = None
        bar = tqdm(self.train_loader, desc=f"epoch {epoch + 1}/{self.settings.epochs}", leave=False,
                   disable=not (self.settings.progress and self.ctx.is_main), dynamic_ncols=True)
        for batch in bar:
            feats, mask, segments, labels = _batch_to(batch, device)
            self.optimizer.zero_grad(set_to_none=True)
            with autocast:
                output = self.model(feats, mask)
            losses = unwrap(self.model).losses(output, segments, labels)
            final_loss = losses["final_loss"]
            if not torch.isfinite(final_loss):
                raise FloatingPointError(f"epoch {epoch}, step {self.global_step}: the loss is {final_loss.item()} "
                                         f"(videos {list(batch.get('video_ids', []))}); lower opt.learning_rate or "
                                         "check these videos' features for NaN/inf")
            final_loss.backward()
            grad_norm = (torch.nn.utils.clip_grad_norm_(params, self.settings.clip_grad_l2norm)
                         if self.settings.clip_grad_l2norm > 0 else None)
            lr = self.optimizer.param_groups[0]["lr"]  # the lr this step uses
            self.optimizer.step()
            self.scheduler.step()
            self.ema.update(self.model)
            self.global_step += 1
            num_steps += 1
            values = {name: float(value.detach()) for name, value in losses.items()}
            for name, value in values.items():
                sums[name] = sums.get(name, 0.0) + value
            record = {"type": "iter", "epoch": epoch, "step": self.global_step, "lr": lr, **values,
                      "epochs": self.settings.epochs, "steps_per_epoch": steps_per_epoch}  # for progress/ETA
            if grad_norm is not None:
                record["grad_norm"] = float(grad_norm)
            bar.set_postfix(loss=f"{values['final_loss']:.3f}", lr=f"{lr:.2e}", refresh=False)
            if self.ctx.is_main:
                if self.global_step % self.settings.log_every == 0:
                    self.log_records.append(_json_record(record))
                    self._append_log(self.log_records[-1])
                for callback in self.callbacks:
                    if hasattr(callback, "on_iteration"):
                        callback.on_iteration(record)
        bar.close()
        means = {name: total / max(num_steps, 1) for name, total in sums.items()}
        return {"type": "epoch", "epoch": epoch, "epochs": self.settings.epochs, "step": self.global_step,
                "steps": num_steps,
                "lr": self.optimizer.param_groups[0]["lr"], "time_s": time.perf_counter() - start, **means}

    def _evaluate(self, epoch: int) -> dict[str, Any] | None:
        if self.evaluate_fn is None or epoch < self.settings.eval_start_epoch:
            return None
        # Evaluation must not perturb training: its random draws (loader seeds, ...) happen on forked RNG streams.
        devices = [self.ctx.device] if self.ctx.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            result = self.evaluate_fn(self.ema.module, epoch)
        if self.ctx.is_main and result is not None:
            self.history.append({"epoch": epoch, **{k: v for k, v in result.items() if _is_json_value(v)}})
        return result

    # ------------------------------------------------------------------ checkpoints and logs
    def _save(self, epoch: int, eval_summary: dict[str, Any] | None) -> None:
        rng_states = gather_objects(self.ctx, capture_rng_state(self.loader_generator))
        if not self.ctx.is_main:
            return
        state = {
            "epoch": epoch, "global_step": self.global_step, "config": self.config_dict,
            "world_size": self.ctx.world_size, "model": unwrap(self.model).state_dict(),
            "ema": self.ema.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "rng": rng_states, "history": self.history,
            "log": self.log_records,
            "metrics": {k: v for k, v in eval_summary.items() if _is_json_value(v)} if eval_summary else None,
        }
        last = save_checkpoint(self.checkpoint_dir / "last.pt", state)
        final = epoch + 1 == self.settings.epochs
        if (epoch + 1) % max(self.settings.checkpoint_every, 1) == 0 or final:
            _link_or_copy(last, self.checkpoint_dir / f"epoch_{epoch:03d}.pt")
        best = self.best()
        if best is not None and best["epoch"] == epoch:
            _link_or_copy(last, self.checkpoint_dir / "best.pt")

    def _append_log(self, record: dict[str, Any]) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            with open(self.metrics_path, "a") as handle:
                handle.write(json.dumps(record) + "\n")
        except OSError as err:  # e.g. a full disk: name the file (the checkpoint holds the line; resume restores it)
            raise OSError(err.errno, err.strerror, str(self.metrics_path)) from err

    # ------------------------------------------------------------------ results
    def best(self) -> dict[str, Any] | None:
        """The evaluated epoch with the highest average mAP (the earliest on ties), or None."""
        scored = [h for h in self.history if h.get("average_mAP") is not None]
        return max(scored, key=lambda h: (h["average_mAP"], -h["epoch"])) if scored else None

    def last(self) -> dict[str, Any] | None:
        """The evaluation of the final trained epoch, if that epoch was evaluated."""
        if self.history and self.history[-1]["epoch"] == self.epoch - 1:
            return self.history[-1]
        return None

    def summary(self) -> dict[str, Any]:
        return {
            "config": self.config_dict.get("name"), "epochs": self.settings.epochs,
            "epochs_completed": self.epoch, "global_step": self.global_step,
            "finished": self.epoch >= self.settings.epochs, "eval_start_epoch": self.settings.eval_start_epoch,
            "last": self.last(), "best": self.best(),
            "history": [{"epoch": h["epoch"], "average_mAP": h.get("average_mAP"),
                         **({"metric": h["metric"]} if "metric" in h else {})} for h in self.history],
        }


def _json_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a log record that json.dumps and a weights_only checkpoint can hold."""
    return {k: v for k, v in record.items() if _is_json_value(v)}


def _checkpoint_epoch(path: Path) -> int | None:
    """The epoch a checkpoint file holds, or None when it is missing or unreadable."""
    try:
        return int(load_checkpoint(path, map_location="cpu")["epoch"])
    except (CheckpointError, KeyError, TypeError, ValueError):
        return None


def _is_json_value(value: Any) -> bool:
    """True for values that survive json.dumps and a weights_only checkpoint (numbers, strings, lists, dicts)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_json_value(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json_value(v) for k, v in value.items())
    return False
