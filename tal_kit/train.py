"""Train ActionFormer on a preset: the entry point of ``python -m tal_kit train`` and of notebook 04.

    python -m tal_kit train --config demo --run-dir runs/demo            # one process
    python -m tal_kit train --config demo --run-dir runs/demo --resume   # continue after an interruption
    torchrun --nproc_per_node=2 -m tal_kit train --config thumos14 ...   # DistributedDataParallel

The recipe (SPEC §A.3, §D.7-§D.10): AdamW with two parameter groups, linear warmup + cosine decay stepped every
iteration, gradient clipping, an EMA of the weights (decay 0.999) that is evaluated after every epoch from
``trainer.eval_start_epoch`` on. Everything lands in the run directory::

    checkpoints/last.pt, epoch_XXX.pt, best.pt   full training state (see tal_kit.training.checkpoint)
    metrics.jsonl                                 losses and lr per logged iteration, one line per epoch (+ mAP)
    train_summary.json                            last and best evaluated epoch, and which one the report shows
    detections.json, metrics.json                 the reported epoch's detections and mAP on cfg.val_split
    pre_nms_candidates.npz                        its pre-NMS candidates, for replaying NMS in the explorer
    .train.lock                                   who is training here (pid, host, start): a second training
                                                  into the same folder is refused while this one runs

With several processes, ``loader.batch_size`` stays the *global* batch: each of N processes takes batch_size/N
videos per step, so the number of steps, the schedule and the learning rate are those of one process.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from tal_kit.atomic import remove_stale_temporaries, write_json_atomic
from tal_kit.config import Config, ConfigError, resolve_config, run_paths
from tal_kit.runtime import DistContext, barrier, broadcast_object, init_distributed, shutdown
from tal_kit.training import (CheckpointError, LoopSettings, Trainer, make_optimizer, make_scheduler,
                              seed_everything)
from tal_kit.training.lock import RunLock, describe_holder
from tal_kit.training.loop import TrainCallback

REPORT_CHOICES = ("last", "best")


def make_evaluate_fn(cfg: Config, data_root: str | Path | None, ctx: DistContext, progress: bool = True
                     ) -> Callable[[torch.nn.Module, int], dict[str, Any] | None] | None:
    """evaluate_fn(ema_model, epoch) for the Trainer: mAP of the EMA model on ``cfg.val_split`` (None when that
    split has no ground truth to score against)."""
    from tal_kit.evaluation.protocol import ground_truth_for
    from tal_kit.infer import evaluate_model

    ground_truth, _ = ground_truth_for(cfg, data_root, cfg.val_split)
    if not any(len(record.segments) for record in ground_truth):
        return None

    def evaluate_fn(ema_model: torch.nn.Module, epoch: int) -> dict[str, Any] | None:
        evaluation = evaluate_model(ema_model, cfg, data_root=data_root, device=ctx.device, ctx=ctx, epoch=epoch,
                                    progress=progress)
        if evaluation is None:  # not rank 0
            return None
        result = evaluation.result
        return {"tiou_thresholds": [float(t) for t in result.tiou_thresholds],
                "mAP": [float(v) for v in result.mAP], "average_mAP": float(result.average_mAP),
                "metric": evaluation.metric.name}

    return evaluate_fn


def build_trainer(cfg: Config, *, data_root: str | Path | None = None, run_dir: str | Path | None = None,
                  ctx: DistContext | None = None, callbacks: Sequence[TrainCallback] = (),
                  progress: bool = True) -> Trainer:
    """Seed everything, then build dataset, loader, model (DDP-wrapped with several processes), optimizer,
    schedule and the per-epoch evaluation; the returned Trainer is ready to ``fit()`` (or ``resume()`` first)."""
    from tal_kit.data.dataset import TALDataset, build_train_loader
    from tal_kit.model import ActionFormer

    ctx = ctx or init_distributed("auto")
    if cfg.trainer.amp == "bf16" and ctx.device.type != "cuda":
        warnings.warn("trainer.amp=bf16 on the CPU: autocast works there, but it is meant for GPUs and rarely "
                      "faster on a CPU", stacklevel=2)
    # One seed per process (rank 0 uses the config's seed as is); DDP copies rank 0's initial weights to the others.
    generator = seed_everything(cfg.init_rand_seed + ctx.rank, cfg.trainer.deterministic)
    train_set = TALDataset(cfg, data_root, split=cfg.train_split, is_training=True)
    loader, sampler = build_train_loader(train_set, cfg, ctx, generator)
    if len(loader) == 0:  # a config problem, said as one (the schedule would refuse it less clearly)
        raise ConfigError(f"loader.batch_size ({cfg.loader.batch_size}) is larger than the {len(train_set)} training "
                          f"videos of {cfg.train_split}: no batch per epoch; lower loader.batch_size")
    model = ActionFormer(cfg).to(ctx.device)
    optimizer = make_optimizer(model, cfg.opt)
    scheduler = make_scheduler(optimizer, cfg.opt, len(loader))
    if ctx.is_distributed:
        device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    settings = LoopSettings(epochs=cfg.opt.total_epochs, clip_grad_l2norm=cfg.train_cfg.clip_grad_l2norm,
                            ema_decay=cfg.trainer.ema_decay, eval_start_epoch=cfg.trainer.eval_start_epoch,
                            checkpoint_every=cfg.trainer.checkpoint_every, amp=cfg.trainer.amp, progress=progress)
    return Trainer(model, optimizer, scheduler, loader, settings=settings,
                   run_dir=run_paths(cfg, run_dir=run_dir).run_dir,
                   config_dict=cfg.to_dict(), ctx=ctx, loader_generator=generator, sampler=sampler,
                   evaluate_fn=make_evaluate_fn(cfg, data_root, ctx, progress), callbacks=callbacks)


def write_final_outputs(trainer: Trainer, cfg: Config, *, data_root: str | Path | None = None,
                        report: str = "last", progress: bool = True) -> dict[str, Any] | None:
    """detections.json, metrics.json and pre_nms_candidates.npz of the reported epoch's EMA model."""
    import copy

    from tal_kit.infer import write_outputs
    from tal_kit.training.checkpoint import load_checkpoint

    if report not in REPORT_CHOICES:
        raise ValueError(f"report must be one of {REPORT_CHOICES}, got {report!r}")
    model, epoch = trainer.ema.module, trainer.epoch - 1
    if report == "best":
        # Rank 0 reads best.pt and hands its EMA weights to the other processes (they may not see the file).
        best_state = None
        if trainer.ctx.is_main:
            best = trainer.best()
            if best is not None and best["epoch"] != epoch:
                best_path = trainer.checkpoint_dir / "best.pt"
                checkpoint = load_checkpoint(best_path)
                if checkpoint["epoch"] != best["epoch"]:  # never write one epoch's detections under another's name
                    raise CheckpointError(f"{best_path} holds epoch {checkpoint['epoch']}, but the best evaluated "
                                          f"epoch is {best['epoch']}; resume the run to repair it, or use --report last")
                best_state = (best["epoch"], checkpoint["ema"])
        best_state = broadcast_object(trainer.ctx, best_state)
        if best_state is not None:
            epoch, state = best_state
            model = copy.deepcopy(trainer.ema.module)
            model.load_state_dict(state)
    run_dir = trainer.run_dir
    return write_outputs(model, cfg, data_root=data_root, device=trainer.ctx.device, ctx=trainer.ctx,
                         detections_path=run_dir / "detections.json", metrics_path=run_dir / "metrics.json",
                         candidates_path=run_dir / "pre_nms_candidates.npz", epoch=epoch, which=report,
                         progress=progress)


def train(config: str | Path | Config = "demo", overrides: Sequence[str] = (), *, data_root: str | Path | None = None,
          run_dir: str | Path | None = None, device: str = "auto", resume: bool = False, report: str = "last",
          stop_after: int | None = None, seed: int | None = None, callbacks: Sequence[TrainCallback] = (),
          progress: bool = True, figure_dir: str | Path | None = None) -> dict[str, Any]:
    """Train (or continue training) and, once the last epoch is done, write the reported epoch's results.

    Args:
        config: preset name, YAML path or Config; ``overrides``: ``section.key=value`` strings.
        data_root: folder of the dataset paths (default data/<preset>); run_dir: default runs/<preset>.
        device: "auto" | "cpu" | "cuda" | "cuda:N" (under torchrun each process takes cuda:<LOCAL_RANK>).
        resume: continue from ``run_dir/checkpoints/last.pt`` when it exists (else start fresh). Without it an
            existing checkpoint is an error, so that nothing is overwritten by accident.
        report: which evaluated epoch detections.json/metrics.json show: "last" (unbiased) or "best" (selected
            on the evaluation split, as InternVideo's published numbers may be; SPEC §A.3).
        stop_after: train at most this many epochs in this call (an interruption you can resume).
        seed: >= 0 replaces ``init_rand_seed``.
        callbacks: objects with ``on_iteration(record)`` / ``on_epoch_end(record)`` (e.g. a live plot).
        figure_dir: where the training curves are drawn (default figures/<preset> for the preset's default run
            folder, else RUN_DIR/figures: see tal_kit.config.run_paths).

    Returns the training summary (as in train_summary.json) plus "run_dir" and "final" (the written metrics).
    """
    cfg = resolve_config(config, overrides, seed)
    if report not in REPORT_CHOICES:
        raise ValueError(f"report must be one of {REPORT_CHOICES}, got {report!r}")
    paths = run_paths(cfg, data_root, run_dir, figure_dir)
    ctx = init_distributed(device)
    run_dir = paths.run_dir
    # Rank 0 holds the run directory for the whole run (a second training into it is refused, naming this one).
    lock = RunLock(run_dir, command=f"train --config {cfg.name}") if ctx.is_main else nullcontext()
    try:
        with lock as held:
            if isinstance(held, RunLock) and held.previous:  # the last holder died without releasing (killed?)
                print(f"note: the previous training in {run_dir} ({describe_holder(held.previous)}) did not end "
                      f"cleanly; its lock was stale", file=sys.stderr)
            return _train_locked(cfg, ctx, data_root=data_root, run_dir=run_dir, resume=resume, report=report,
                                 stop_after=stop_after, callbacks=callbacks, progress=progress,
                                 figure_dir=paths.figure_dir)
    finally:
        shutdown(ctx)


def _train_locked(cfg: Config, ctx: DistContext, *, data_root: str | Path | None, run_dir: Path, resume: bool,
                  report: str, stop_after: int | None, callbacks: Sequence[TrainCallback], progress: bool,
                  figure_dir: Path) -> dict[str, Any]:
    """The body of :func:`train`, run while this process holds the run directory's lock."""
    if ctx.is_main:
        for folder in (run_dir, run_dir / "checkpoints"):
            remove_stale_temporaries(folder)  # left by a run that was killed while writing
    trainer = build_trainer(cfg, data_root=data_root, run_dir=run_dir, ctx=ctx, callbacks=callbacks,
                            progress=progress)
    last = trainer.checkpoint_dir / "last.pt"
    if last.exists() and not resume:
        raise CheckpointError(f"{last} exists: pass resume=True (--resume) to continue that run, or choose "
                              "another run directory")
    if resume and last.exists():
        trainer.resume(last)
    summary = trainer.fit(stop_after=stop_after)
    final = None
    if summary["finished"]:
        final = write_final_outputs(trainer, cfg, data_root=data_root, report=report, progress=progress)
    if ctx.is_main:
        summary["report"] = report
        write_json_atomic(trainer.run_dir / "train_summary.json", summary)
        if summary["finished"]:
            from tal_kit.viz.figures import save_figure
            from tal_kit.viz.training import plot_training_curves
            save_figure(plot_training_curves(trainer.run_dir), figure_dir / "training_curves.png")
    barrier(ctx)
    return {**summary, "run_dir": str(trainer.run_dir), "final": final}


def cli_train(argv: list[str]) -> int:
    """``python -m tal_kit train --config PRESET [--set k=v ...] --run-dir DIR [--resume]``"""
    from tal_kit.cli import add_common_options

    parser = argparse.ArgumentParser(prog="python -m tal_kit train",
                                     description="Train ActionFormer; under torchrun, one process per device.")
    add_common_options(parser, "config", "set", "run-dir", "data-root", "device", defaults={"config": "demo"})
    parser.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoints/last.pt")
    parser.add_argument("--report", choices=REPORT_CHOICES, default="last",
                        help="epoch whose detections/metrics are written: last (default) or best")
    parser.add_argument("--seed", type=int, default=None, help="replace init_rand_seed")
    parser.add_argument("--stop-after", type=int, default=None, help="train at most this many epochs now")
    parser.add_argument("--figures-dir", dest="figure_dir", metavar="FIGURES_DIR",
                        help="where the training curves go (default figures/<preset> for runs/<preset>, else "
                             "RUN_DIR/figures)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    result = train(args.config, args.overrides, data_root=args.data_root, run_dir=args.run_dir, device=args.device,
                   resume=args.resume, report=args.report, stop_after=args.stop_after, seed=args.seed,
                   progress=not args.no_progress, figure_dir=args.figure_dir)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun only rank 0 prints
        from tal_kit.viz.tables import format_summary

        print(format_summary(result))
    return 0
