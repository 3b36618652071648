"""Run a trained model over a split: detections (ActivityNet results JSON), mAP (metrics.json) and the cached
pre-NMS candidates (for replaying NMS with other settings in the explorer).

Inference per video (SPEC §D.11): forward pass on the whole video (several videos of similar length share a pass,
with the same result) -> per-level decoding into candidate segments (grid units) -> NMS -> seconds, clipped to the
video. With ``test_cfg.ext_score_file`` the class-agnostic detections then take their classes from video-level
scores (SPEC §B.3). ::

    python -m tal_kit infer --ckpt runs/demo/checkpoints/last.pt --out runs/demo/detections.json
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from tal_kit.training.checkpoint import CHECKPOINT_FORMAT, CheckpointError, load_state_strict, read_checkpoint_file
from tal_kit.runtime import DistContext, gather_objects, resolve_device
from tal_kit.atomic import write_json_atomic

# The evaluator's ground-truth filter and unknown-label policy, as in InternVideo's ActionFormer fork (SPEC §F.1):
# duplicate ground-truth segments are dropped, a predicted class without ground truth adds no false positives.
DEDUP_GT = "duplicates"
UNKNOWN_LABELS = "ignore"


@dataclass
class Predictions:
    """What a pass over a split produces (on rank 0; other ranks get empty containers)."""

    video_outputs: list[dict[str, Any]] = field(default_factory=list)  # {"video_id", "segments" s, "scores", "labels"}
    candidates: dict[str, Any] = field(default_factory=dict)  # video_id -> tal_kit.viz.candidates.VideoCandidates


def _shard(dataset: Any, ctx: DistContext) -> Any:
    """Every rank takes every world_size-th video (no padding, so no video is counted twice)."""
    if not ctx.is_distributed:
        return dataset
    return torch.utils.data.Subset(dataset, list(range(ctx.rank, len(dataset), ctx.world_size)))


@torch.no_grad()
def predict(model: nn.Module, dataset: Any, cfg: Any, *, device: torch.device | str = "cpu",
            ctx: DistContext | None = None, keep_candidates: bool = False, progress: bool = True,
            batch_size: int | None = None) -> Predictions:
    """Detections for every video of ``dataset`` (a TALDataset in evaluation mode), in dataset order.

    Videos go through the model several at a time (``batch_size``, default ``cfg.loader.eval_batch_size``; 1 is one
    video per forward pass): a window of upcoming videos is sorted by length and cut into batches that pad each
    video exactly as far as one video at a time would in effect (`tal_kit.model.batching.plan_batches`), so the
    detections are upstream's; NMS then runs on all videos in one batched call. With several processes each rank
    predicts its share and rank 0 receives all of it. ``keep_candidates`` also returns each video's pre-NMS
    candidates (grid units), as ``tal_kit.viz.candidates.VideoCandidates``.
    """
    from tal_kit.model import postprocess
    from tal_kit.model.batching import plan_batches
    from tal_kit.viz.candidates import VideoCandidates

    ctx = ctx or DistContext(device=torch.device(device))
    device = torch.device(device)
    batch_size = int(batch_size or cfg.loader.eval_batch_size)
    max_steps = batch_size * cfg.dataset.max_seq_len
    window = 8 * batch_size  # videos read ahead and sorted by length: bounds the features held in memory
    was_training = model.training
    model.eval()
    shard = _shard(dataset, ctx)
    candidates: list[dict[str, torch.Tensor]] = [{} for _ in range(len(shard))]
    meta: dict[str, list] = {key: [] for key in ("video_ids", "fps", "duration", "feat_stride", "num_frames")}
    bar = tqdm(total=len(shard), desc="inference", leave=False, dynamic_ncols=True,
               disable=not (progress and ctx.is_main))
    try:
        for first in range(0, len(shard), window):
            items = [shard[index] for index in range(first, min(first + window, len(shard)))]
            for item in items:
                meta["video_ids"].append(item["video_id"])
                for key in ("fps", "duration", "feat_stride", "num_frames"):
                    meta[key].append(float(item[key]))
            lengths = [item["feats"].shape[1] for item in items]
            for group in plan_batches(lengths, model, batch_size, max_steps):
                output = model(*_pad_group([items[i]["feats"] for i in group],
                                           model.inference_length(lengths[group[0]]), device))
                for row, position in enumerate(group):
                    candidates[first + position] = {k: v.detach().cpu()
                                                    for k, v in model.candidates(output, row).items()}
                bar.update(len(group))
    finally:
        bar.close()
        model.train(was_training)
    outputs = [_to_numpy(out) for out in postprocess(candidates, meta, cfg.test_cfg)] if candidates else []
    kept: dict[str, Any] = {}
    if keep_candidates:
        for i, (video_id, cand) in enumerate(zip(meta["video_ids"], candidates)):
            kept[video_id] = VideoCandidates(
                video_id, cand["segments"].float().numpy().reshape(-1, 2), cand["scores"].float().numpy(),
                cand["labels"].long().numpy(), meta["fps"][i], meta["feat_stride"][i], meta["num_frames"][i],
                meta["duration"][i])
    gathered = gather_objects(ctx, (outputs, kept))
    if gathered is None:
        return Predictions()
    by_video = {out["video_id"]: out for part, _ in gathered for out in part}
    all_kept = {vid: c for _, part in gathered for vid, c in part.items()}
    return Predictions([by_video[vid] for vid in dataset.video_ids if vid in by_video],
                       {vid: all_kept[vid] for vid in dataset.video_ids if vid in all_kept})


def _pad_group(feats: Sequence[torch.Tensor], length: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """[C, T_i] features zero-padded into one [B, C, length] batch with its [B, length] mask, on ``device``."""
    batch = feats[0].new_zeros((len(feats), feats[0].shape[0], length))
    for row, f in enumerate(feats):
        batch[row, :, :f.shape[1]] = f
    lengths = torch.tensor([f.shape[1] for f in feats])
    mask = torch.arange(length)[None, :] < lengths[:, None]
    return batch.to(device), mask.to(device)


def _to_numpy(video_output: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v.detach().cpu().numpy() if torch.is_tensor(v) else v for k, v in video_output.items()}


def ground_truth_for(cfg: Any, data_root: Any, split: Sequence[str]) -> tuple[list[Any], list[str]]:
    """The evaluated videos' ground truth and the class names detections are scored against.

    Single-class presets (ANet, HACS, FineAction) evaluate class-agnostically, unless video-level scores give the
    detections real classes (``test_cfg.ext_score_file``): then the ground truth keeps its classes.
    """
    from tal_kit.config import resolve_path
    from tal_kit.data.annotations import load_annotations

    fused = cfg.test_cfg.ext_score_file is not None
    single_class = cfg.dataset.num_classes == 1 and not fused
    db = load_annotations(resolve_path(cfg, data_root, cfg.dataset.json_file), single_class=single_class)
    return db.select(split), db.label_names


def to_detections(video_outputs: Sequence[Mapping[str, Any]], cfg: Any, data_root: Any) -> Any:
    """The detection table, fused with video-level class scores when ``test_cfg.ext_score_file`` is set."""
    from tal_kit.detections import Detections

    return _fuse_if_configured(Detections.from_video_dicts(video_outputs), cfg, data_root)


def _fuse_if_configured(detections: Any, cfg: Any, data_root: Any) -> Any:
    from tal_kit.config import resolve_path
    from tal_kit.evaluate import fuse_scores, load_class_scores

    if cfg.test_cfg.ext_score_file is None:
        return detections
    path = resolve_path(cfg, data_root, cfg.test_cfg.ext_score_file)
    return fuse_scores(detections, load_class_scores(path), topk=cfg.test_cfg.fusion_topk,
                       num_pred=cfg.test_cfg.fusion_num_pred, softmax_out_of_range=cfg.test_cfg.fusion_softmax,
                       source=path)


def evaluate(detections: Any, ground_truth: Sequence[Any], label_names: Sequence[str], cfg: Any) -> Any:
    """ActivityNet mAP at ``dataset.tiou_thresholds`` (an EvaluationResult)."""
    from tal_kit.evaluate import evaluate_detections

    return evaluate_detections(ground_truth, detections, cfg.dataset.tiou_thresholds, label_names=label_names,
                               dedup_gt=DEDUP_GT, unknown_labels=UNKNOWN_LABELS)


def metrics_summary(result: Any, *, epoch: int | None, which: str | None,
                    metric: Any = None) -> dict[str, Any]:
    """The content of metrics.json: fractions (not percent), per-class AP by class name, and (with ``metric``, a
    :class:`~tal_kit.evaluation.metric_kind.MetricKind`) what the mAP measures."""
    summary = result.to_dict(per_class=True)
    ordered = {key: summary.pop(key) for key in ("tiou_thresholds", "mAP", "average_mAP", "per_class_ap")}
    described = {"metric": metric.to_dict()} if metric is not None else {}
    return {**described, **ordered, "epoch": epoch, "which": which, **summary}


def format_metrics_line(summary: Mapping[str, Any]) -> str:
    """One line for a console: the mAP per tIoU and the average, named by what they measure."""
    metric = summary.get("metric") or {}
    thresholds = " ".join(f"{t:g}" for t in summary["tiou_thresholds"])
    values = " ".join(f"{100 * v:.2f}" for v in summary["mAP"])
    line = (f"{metric.get('name', 'mAP')} (%) at tIoU {thresholds}: {values}; "
            f"average {100 * summary['average_mAP']:.2f}")
    return line + (f"\n  ({metric['note']})" if metric.get("note") else "")


# ----------------------------------------------------------------------------------------------------------------------
# Checkpoints -> model
# ----------------------------------------------------------------------------------------------------------------------

def config_from_checkpoint(path: str | Path) -> Any:
    """The Config a tal_kit training checkpoint was trained with."""
    from tal_kit.config import config_from_dict

    checkpoint = read_checkpoint_file(path)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a tal_kit training checkpoint, so it holds no config; pass --config")
    return config_from_dict(checkpoint["config"], source=f"config stored in {path}")


def load_model(cfg: Any, checkpoint: str | Path | Mapping[str, Any], *, device: torch.device | str = "cpu",
               use_ema: bool = True) -> tuple[nn.Module, int | None]:
    """An ActionFormer for ``cfg`` with a checkpoint's weights (its EMA copy by default), in eval mode.

    Reads tal_kit training checkpoints and upstream ActionFormer ones (``state_dict``/``state_dict_ema``).
    Returns (model, epoch) — epoch is None when the checkpoint does not say.
    """
    from tal_kit.model import ActionFormer, load_actionformer_checkpoint

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


# ----------------------------------------------------------------------------------------------------------------------
# Evaluation of a model or checkpoint, NMS what-ifs, and the files a run keeps
# ----------------------------------------------------------------------------------------------------------------------

@dataclass
class Evaluation:
    """One model scored on one split: its detections, the mAP result and (optionally) pre-NMS candidates."""

    cfg: Any
    data_root: Any
    split: list[str]
    detections: Any  # tal_kit.detections.Detections (seconds, after NMS and score fusion)
    result: Any  # tal_kit.evaluate.EvaluationResult, or None when the split has no ground truth
    ground_truth: list[Any]  # VideoRecords of the split
    label_names: list[str]
    candidates: dict[str, Any] = field(default_factory=dict)  # video_id -> VideoCandidates (grid units)
    epoch: int | None = None

    @property
    def metric(self) -> Any:
        """What this evaluation's mAP measures (a :class:`~tal_kit.evaluation.metric_kind.MetricKind`)."""
        from tal_kit.evaluation.metric_kind import metric_kind_for_config

        return metric_kind_for_config(self.cfg, self.data_root)

    def summary(self, which: str | None = None) -> dict[str, Any] | None:
        """The metrics.json content (None without ground truth)."""
        if self.result is None:
            return None
        return metrics_summary(self.result, epoch=self.epoch, which=which, metric=self.metric)


def evaluate_model(model: nn.Module, cfg: Any, *, data_root: Any = None, split: Sequence[str] | None = None,
                   device: torch.device | str = "cpu", ctx: DistContext | None = None, keep_candidates: bool = False,
                   epoch: int | None = None, progress: bool = True) -> Evaluation | None:
    """Predict ``split`` (default ``cfg.val_split``) with ``model`` and score it; None on ranks other than 0."""
    from tal_kit.data.dataset import TALDataset

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
    result = evaluate(detections, ground_truth, label_names, cfg) if has_gt else None
    return Evaluation(cfg, data_root, split, detections, result, ground_truth, list(label_names),
                      predictions.candidates, epoch)


def evaluate_checkpoint(checkpoint: str | Path, cfg: Any = None, *, data_root: Any = None,
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
    from tal_kit.viz.candidates import save_candidates

    if detections_path is not None:
        evaluation.detections.to_results_json(detections_path, evaluation.label_names,
                                              version=f"tal_kit {evaluation.cfg.name}")
    if candidates_path is not None:
        save_candidates(candidates_path, evaluation.candidates)
    summary = evaluation.summary(which)
    if summary is not None and metrics_path is not None:
        write_json_atomic(metrics_path, summary)
    return summary


def nms_sweep(evaluation: Evaluation, variants: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Re-run NMS on the cached candidates with other settings and score each variant (no network needed).

    ``variants`` maps a name to ``tal_kit.ops.batched_nms`` settings that replace the config's, e.g.
    ``{"hard NMS 0.5": {"method": "hard", "iou_threshold": 0.5}, "sigma 0.9": {"sigma": 0.9}}``. Returns one
    row per variant: name, the changed settings, mAP per tIoU, average mAP and the number of detections.
    """
    from tal_kit.viz.candidates import detections_from_candidates, nms_settings

    if not evaluation.candidates:
        raise ValueError("this evaluation kept no pre-NMS candidates; evaluate with keep_candidates=True")
    if evaluation.result is None:
        raise ValueError(f"split {evaluation.split} has no ground truth to score NMS variants against")
    rows = []
    for name, changes in variants.items():
        settings = nms_settings(evaluation.cfg.test_cfg, **dict(changes))
        detections = detections_from_candidates(evaluation.candidates, settings)
        detections = _fuse_if_configured(detections, evaluation.cfg, evaluation.data_root)
        result = evaluate(detections, evaluation.ground_truth, evaluation.label_names, evaluation.cfg)
        rows.append({"name": name, **dict(changes), "mAP": [float(v) for v in result.mAP],
                     "average_mAP": float(result.average_mAP), "num_detections": len(detections)})
    return rows


def write_outputs(model: nn.Module, cfg: Any, *, data_root: Any = None, split: Sequence[str] | None = None,
                  device: torch.device | str = "cpu", ctx: DistContext | None = None,
                  detections_path: str | Path | None = None, metrics_path: str | Path | None = None,
                  candidates_path: str | Path | None = None, epoch: int | None = None, which: str | None = None,
                  progress: bool = True) -> dict[str, Any] | None:
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
    from tal_kit.config import load_config

    if config is not None:
        cfg = load_config(config, list(overrides))
    else:
        cfg = config_from_checkpoint(checkpoint)
        if overrides:
            from tal_kit.config import ConfigError
            raise ConfigError("--set needs --config (the checkpoint's own config is used as stored)")
    resolved = resolve_device(device)
    model, epoch = load_model(cfg, checkpoint, device=resolved, use_ema=use_ema)
    return write_outputs(model, cfg, data_root=data_root, split=split, device=resolved, detections_path=out,
                         metrics_path=metrics_out, candidates_path=candidates_out, epoch=epoch, which=which,
                         progress=progress)


def cli_infer(argv: list[str]) -> int:
    """``python -m tal_kit infer --ckpt CKPT --out detections.json [--config PRESET] [--set k=v ...]``"""
    parser = argparse.ArgumentParser(prog="python -m tal_kit infer",
                                     description="Run a checkpoint over a split; write detections (ActivityNet "
                                                 "results JSON) and, when the split has ground truth, its mAP.")
    parser.add_argument("--ckpt", required=True, help="tal_kit checkpoint (or upstream ActionFormer with --config)")
    parser.add_argument("--out", required=True, help="detections JSON to write")
    parser.add_argument("--config", help="preset or YAML (default: the config stored in the checkpoint)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="dotted config override (with --config), repeatable")
    parser.add_argument("--data-root", help="folder the config's dataset paths are relative to (default data/<preset>)")
    parser.add_argument("--split", help="subset(s), comma-separated (default: the config's val_split)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--raw", action="store_true", help="use the raw weights instead of the EMA copy")
    parser.add_argument("--metrics", help="metrics JSON to write (default: metrics.json beside --out)")
    parser.add_argument("--candidates", help="also cache pre-NMS candidates in this .npz")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    out = Path(args.out)
    try:
        summary = run_inference(
            args.ckpt, config=args.config, overrides=args.overrides, data_root=args.data_root,
            split=[s.strip() for s in args.split.split(",")] if args.split else None, device=args.device,
            use_ema=not args.raw, out=out, metrics_out=args.metrics or out.with_name("metrics.json"),
            candidates_out=args.candidates, progress=not args.no_progress,
            which=Path(args.ckpt).stem if Path(args.ckpt).stem in ("last", "best") else None)
    except (CheckpointError, ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    if summary is not None:
        print(format_metrics_line(summary))
    return 0


def nms_sweep_markdown(rows: Sequence[Mapping[str, Any]], tiou_thresholds: Sequence[float]) -> str:
    """The rows of :func:`nms_sweep` as a markdown table (mAP in %)."""
    head = "| variant | " + " | ".join(f"mAP@{t:g}" for t in tiou_thresholds) + " | average | detections |"
    lines = [head, "|" + "---|" * (len(tiou_thresholds) + 3)]
    for row in rows:
        values = " | ".join(f"{100 * v:.2f}" for v in row["mAP"])
        lines.append(f"| {row['name']} | {values} | {100 * row['average_mAP']:.2f} | {row['num_detections']} |")
    return "\n".join(lines)


def default_nms_variants(test_cfg: Any) -> dict[str, dict[str, Any]]:
    """A small tour of NMS settings around the config's: softer/harder Gaussian decay, greedy hard NMS at two
    thresholds, no NMS at all, and fewer detections per video. Keys name the variant; values are the changes."""
    kind = "per class" if test_cfg.multiclass_nms else "class-agnostic"
    return {
        f"config: {test_cfg.nms_method} NMS ({kind}), sigma {test_cfg.nms_sigma:g}": {},
        "Gaussian soft-NMS, sigma 0.25": {"method": "soft", "soft_kind": "gaussian", "sigma": 0.25},
        "Gaussian soft-NMS, sigma 0.9": {"method": "soft", "soft_kind": "gaussian", "sigma": 0.9},
        "hard NMS, IoU 0.3": {"method": "hard", "iou_threshold": 0.3},
        "hard NMS, IoU 0.6": {"method": "hard", "iou_threshold": 0.6},
        "no NMS": {"method": "none"},
        f"config, at most {max(1, test_cfg.max_seg_num // 4)} per video": {"max_seg_num": max(1, test_cfg.max_seg_num // 4)},
    }


def nms_sweep_figure(rows: Sequence[Mapping[str, Any]]) -> Any:
    """Average mAP (%) of each NMS variant as horizontal bars (a matplotlib Figure)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 0.45 * len(rows) + 1.2), layout="constrained")
    ax = fig.add_subplot()
    values = [100 * row["average_mAP"] for row in rows]
    positions = list(range(len(rows)))[::-1]
    ax.barh(positions, values, color=["#dd8452" if i == 0 else "#4c72b0" for i in range(len(rows))])
    ax.set_yticks(positions, [row["name"] for row in rows], fontsize=8)
    for y, value, row in zip(positions, values, rows):
        ax.text(value, y, f" {value:.2f} ({row['num_detections']} dets)", va="center", fontsize=7)
    ax.set_xlabel("average mAP (%)")
    ax.set_xlim(0, max(values + [1.0]) * 1.3)
    ax.set_title("Same candidates, different NMS")
    return fig
