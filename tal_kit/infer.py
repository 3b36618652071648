"""Run a trained model over a split and keep what a run keeps: detections (ActivityNet results JSON), mAP
(metrics.json) and the cached pre-NMS candidates (for replaying NMS with other settings in the explorer). ::

    python -m tal_kit infer --ckpt runs/demo/checkpoints/last.pt --out runs/demo/detections.json

Wiring only: the loop is `tal_kit.inference.predict`, NMS replay and sweeps `tal_kit.inference.nms`; which ground
truth, the fusion and the metrics.json schema are `tal_kit.evaluation.protocol`'s.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import torch

from tal_kit.atomic import write_json_atomic
from tal_kit.config import Config, ConfigError, config_from_dict, load_config
from tal_kit.data.dataset import TALDataset
from tal_kit.detections import Detections
from tal_kit.evaluation.metric_kind import MetricKind, metric_kind_for_config
from tal_kit.evaluation.protocol import (format_metrics_line, fuse_for_config, ground_truth_for, metrics_summary,
                                         score, to_detections)
from tal_kit.inference.candidates import VideoCandidates, save_candidates
from tal_kit.inference.nms import nms_sweep
from tal_kit.inference.predict import predict
from tal_kit.model import ActionFormer, load_actionformer_checkpoint
from tal_kit.runtime import DistContext, resolve_device
from tal_kit.training.checkpoint import CHECKPOINT_FORMAT, CheckpointError, load_state_strict, read_checkpoint_file

if TYPE_CHECKING:
    from tal_kit.data.annotations import VideoRecord
    from tal_kit.evaluation.metrics import EvaluationResult


def config_from_checkpoint(path: str | Path) -> Config:
    """The Config a tal_kit training checkpoint was trained with."""
    checkpoint = read_checkpoint_file(path)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a tal_kit training checkpoint, so it holds no config; pass --config")
    return config_from_dict(checkpoint["config"], source=f"config stored in {path}")


def checkpoint_config(checkpoint: str | Path, config: str | Path | None = None,
                      overrides: Sequence[str] = ()) -> Config:
    """The config to run ``checkpoint`` with: ``config`` (a preset or YAML, with ``overrides``) when given, else the
    one stored in the tal_kit checkpoint (as stored: overrides then need ``config``)."""
    if config is not None:
        return load_config(config, list(overrides))
    if overrides:
        raise ConfigError("--set needs --config (the checkpoint's own config is used as stored)")
    return config_from_checkpoint(checkpoint)


def load_model(cfg: Config, checkpoint: str | Path | Mapping[str, Any], *, device: torch.device | str = "cpu",
               use_ema: bool = True) -> tuple[ActionFormer, int | None]:
    """An ActionFormer for ``cfg`` with a checkpoint's weights (its EMA copy by default), in eval mode.

    Reads tal_kit training checkpoints and upstream ActionFormer ones (``state_dict``/``state_dict_ema``).
    Returns (model, epoch) — epoch is None when the checkpoint does not say.
    """
    path = checkpoint if not isinstance(checkpoint, Mapping) else "<state>"
    state = read_checkpoint_file(checkpoint) if not isinstance(checkpoint, Mapping) else checkpoint
    model = ActionFormer(cfg)
    if isinstance(state, Mapping) and state.get("format") == CHECKPOINT_FORMAT:
        load_state_strict(model, state["ema" if use_ema else "model"], path, "EMA" if use_ema else "model")
        epoch = int(state["epoch"])
    else:
        model = load_actionformer_checkpoint(state, model=model, use_ema=use_ema)
        epoch = state.get("epoch") if isinstance(state, Mapping) else None
    return model.to(device).eval(), epoch


@dataclass
class Evaluation:
    """One model scored on one split: its detections, the mAP result and (optionally) pre-NMS candidates."""

    cfg: Config
    data_root: str | Path | None
    split: list[str]
    detections: Detections  # seconds, after NMS and score fusion
    result: EvaluationResult | None  # None when the split has no ground truth
    ground_truth: list[VideoRecord]
    label_names: list[str]
    candidates: dict[str, VideoCandidates] = field(default_factory=dict)  # grid units
    epoch: int | None = None

    @property
    def metric(self) -> MetricKind:
        """What this evaluation's mAP measures."""
        return metric_kind_for_config(self.cfg, self.data_root)

    def summary(self, which: str | None = None) -> dict[str, Any] | None:
        """The metrics.json content (None without ground truth)."""
        if self.result is None:
            return None
        return metrics_summary(self.result, epoch=self.epoch, which=which, metric=self.metric)

    def score(self, detections: Detections) -> EvaluationResult:
        """Other detections of the same videos (e.g. NMS replayed on the candidates), fused and scored as these."""
        if self.result is None:
            raise ValueError(f"split {self.split} has no ground truth to score detections against")
        fused = fuse_for_config(detections, self.cfg, self.data_root)
        return score(fused, self.ground_truth, self.label_names, self.cfg)

    def nms_sweep(self, variants: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
        """NMS variants (e.g. `tal_kit.inference.nms.default_nms_variants`) replayed on this evaluation's candidates
        and scored like it: one row per variant (name, changes, mAP, average_mAP, num_detections)."""
        return nms_sweep(self.candidates, variants, self.score, self.cfg.test_cfg)


def evaluate_model(model: ActionFormer, cfg: Config, *, data_root: str | Path | None = None,
                   split: Sequence[str] | None = None, device: torch.device | str = "cpu",
                   ctx: DistContext | None = None, keep_candidates: bool = False, epoch: int | None = None,
                   progress: bool = True) -> Evaluation | None:
    """Predict ``split`` (default ``cfg.val_split``) with ``model`` and score it; None on ranks other than 0."""
    ctx = ctx or DistContext(device=torch.device(device))
    split = list(split or cfg.val_split)
    dataset = TALDataset(cfg, data_root, split=split, is_training=False)
    predictions = predict(model, dataset, cfg, device=device, ctx=ctx, keep_candidates=keep_candidates,
                          progress=progress)
    if not ctx.is_main:
        return None
    ground_truth, label_names = ground_truth_for(cfg, data_root, split)
    detections = to_detections(predictions.video_outputs, cfg, data_root)
    has_gt = any(len(record.segments) for record in ground_truth)
    result = score(detections, ground_truth, label_names, cfg) if has_gt else None
    return Evaluation(cfg, data_root, split, detections, result, ground_truth, list(label_names),
                      predictions.candidates, epoch)


def evaluate_checkpoint(checkpoint: str | Path, cfg: Config | None = None, *, data_root: str | Path | None = None,
                        split: Sequence[str] | None = None, device: str = "auto", use_ema: bool = True,
                        keep_candidates: bool = False, progress: bool = True) -> Evaluation:
    """Load ``checkpoint`` (its EMA weights by default) and score it; ``cfg`` defaults to the stored config."""
    cfg = cfg if cfg is not None else config_from_checkpoint(checkpoint)
    resolved = resolve_device(device)
    model, epoch = load_model(cfg, checkpoint, device=resolved, use_ema=use_ema)
    return evaluate_model(model, cfg, data_root=data_root, split=split, device=resolved,
                          keep_candidates=keep_candidates, epoch=epoch, progress=progress)


def write_evaluation(evaluation: Evaluation, *, detections_path: str | Path | None = None,
                     metrics_path: str | Path | None = None, candidates_path: str | Path | None = None,
                     which: str | None = None) -> dict[str, Any] | None:
    """Write the detections (ActivityNet results JSON), metrics.json and the candidate cache; returns the metrics."""
    if detections_path is not None:
        evaluation.detections.to_results_json(detections_path, evaluation.label_names,
                                              version=f"tal_kit {evaluation.cfg.name}")
    if candidates_path is not None:
        save_candidates(candidates_path, evaluation.candidates)
    summary = evaluation.summary(which)
    if summary is not None and metrics_path is not None:
        write_json_atomic(metrics_path, summary)
    return summary


def write_outputs(model: ActionFormer, cfg: Config, *, data_root: str | Path | None = None,
                  split: Sequence[str] | None = None, device: torch.device | str = "cpu",
                  ctx: DistContext | None = None, detections_path: str | Path | None = None,
                  metrics_path: str | Path | None = None, candidates_path: str | Path | None = None,
                  epoch: int | None = None, which: str | None = None, progress: bool = True) -> dict[str, Any] | None:
    """Predict ``split`` with ``model`` and write the requested files (rank 0); returns the metrics summary."""
    evaluation = evaluate_model(model, cfg, data_root=data_root, split=split, device=device, ctx=ctx,
                                keep_candidates=candidates_path is not None, epoch=epoch, progress=progress)
    if evaluation is None:
        return None
    return write_evaluation(evaluation, detections_path=detections_path, metrics_path=metrics_path,
                            candidates_path=candidates_path, which=which)


def run_inference(checkpoint: str | Path, *, config: str | Path | None = None, overrides: Sequence[str] = (),
                  data_root: str | Path | None = None, split: Sequence[str] | None = None, device: str = "auto",
                  use_ema: bool = True, out: str | Path | None = None, metrics_out: str | Path | None = None,
                  candidates_out: str | Path | None = None, which: str | None = None,
                  progress: bool = True) -> dict[str, Any] | None:
    """Load ``checkpoint`` and write its detections (``out``), metrics and candidates; returns the metrics.

    ``config`` defaults to the config stored in a tal_kit checkpoint; an upstream checkpoint needs a preset.
    """
    cfg = checkpoint_config(checkpoint, config, overrides)
    resolved = resolve_device(device)
    model, epoch = load_model(cfg, checkpoint, device=resolved, use_ema=use_ema)
    return write_outputs(model, cfg, data_root=data_root, split=split, device=resolved, detections_path=out,
                         metrics_path=metrics_out, candidates_path=candidates_out, epoch=epoch, which=which,
                         progress=progress)


def cli_infer(argv: list[str]) -> int:
    """``python -m tal_kit infer --ckpt CKPT --out detections.json [--config PRESET] [--set k=v ...]``"""
    from tal_kit.cli import add_common_options

    parser = argparse.ArgumentParser(prog="python -m tal_kit infer",
                                     description="Run a checkpoint over a split; write detections (ActivityNet "
                                                 "results JSON) and, when the split has ground truth, its mAP.")
    parser.add_argument("--ckpt", required=True, help="tal_kit checkpoint (or upstream ActionFormer with --config)")
    parser.add_argument("--out", required=True, help="detections JSON to write")
    add_common_options(parser, "config", "set", "data-root", help_texts={
        "config": "preset or YAML (default: the config stored in the checkpoint)",
        "set": "dotted config override (with --config), repeatable"})
    parser.add_argument("--split", help="subset(s), comma-separated (default: the config's val_split)")
    add_common_options(parser, "device")
    parser.add_argument("--raw", action="store_true", help="use the raw weights instead of the EMA copy")
    parser.add_argument("--metrics", help="metrics JSON to write (default: metrics.json beside --out)")
    parser.add_argument("--candidates", help="also cache pre-NMS candidates in this .npz")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    out = Path(args.out)
    checkpoint_name = Path(args.ckpt).stem
    summary = run_inference(
        args.ckpt, config=args.config, overrides=args.overrides, data_root=args.data_root,
        split=[s.strip() for s in args.split.split(",")] if args.split else None, device=args.device,
        use_ema=not args.raw, out=out, metrics_out=args.metrics or out.with_name("metrics.json"),
        candidates_out=args.candidates, progress=not args.no_progress,
        which=checkpoint_name if checkpoint_name in ("last", "best") else None)
    print(f"wrote {out}")
    if summary is not None:
        print(format_metrics_line(summary))
    return 0
