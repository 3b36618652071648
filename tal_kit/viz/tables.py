"""Markdown tables and short text summaries: the one place where the kit turns numbers into text.

Pipeline modules return rows, dicts and dataclasses; these functions format them for notebooks, ``results.md`` and
the command line. :func:`markdown_table` is the one table writer; every builder below goes through it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

if TYPE_CHECKING:
    from tal_kit.config import Config

__all__ = ["markdown_table", "records_table", "recipe_markdown", "history_markdown", "format_summary",
           "checkpoint_markdown", "results_markdown"]


def _cell(value: Any, floatfmt: str) -> str:
    return format(value, floatfmt) if isinstance(value, float) else str(value)


def _line(cells: Sequence[str]) -> str:
    # an empty cell is written "| |", not "|  |"
    return "|" + "|".join(f" {c} " if c else " " for c in cells) + "|"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]], floatfmt: str = ".2f") -> str:
    """A markdown table: ``header`` names the columns, each row gives one value per column. Floats are written
    with ``floatfmt``, anything else with ``str``."""
    header = [str(h) for h in header]
    lines = [_line(header), "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        cells = [_cell(v, floatfmt) for v in row]
        if len(cells) != len(header):
            raise ValueError(f"markdown_table: a row has {len(cells)} cells for {len(header)} columns: {cells}")
        lines.append(_line(cells))
    return "\n".join(lines)


def records_table(records: Sequence[Mapping[str, Any]], floatfmt: str = ".2f") -> str:
    """A markdown table of dicts with the same keys (the first dict's keys are the columns); "" for no rows."""
    if not records:
        return ""
    keys = list(records[0])
    return markdown_table(keys, ([r[k] for k in keys] for r in records), floatfmt)


def recipe_markdown(cfg: Config) -> str:
    """The training recipe of ``cfg`` as a markdown table (notebook 04)."""
    opt, trainer = cfg.opt, cfg.trainer
    rows = [
        ("optimizer", f"{opt.type}, weight decay {opt.weight_decay:g} on conv/linear weights only"),
        ("learning rate", f"{opt.learning_rate:g}, {opt.schedule_type} decay to {opt.eta_min:g}, stepped per iteration"),
        ("warmup", f"{opt.warmup_epochs} epoch(s), linear from 0" if opt.warmup else "none"),
        ("epochs", f"{opt.total_epochs} ({opt.epochs} + {opt.warmup_epochs if opt.warmup else 0} warmup)"),
        ("batch size", f"{cfg.loader.batch_size} videos (crops of up to {cfg.dataset.max_seq_len} steps)"),
        ("gradient clipping", f"L2 norm {cfg.train_cfg.clip_grad_l2norm:g}" if cfg.train_cfg.clip_grad_l2norm > 0
         else "none"),
        ("weight EMA", f"decay {trainer.ema_decay:g}; evaluated after every epoch from epoch {trainer.eval_start_epoch}"),
        ("determinism", trainer.deterministic),
        ("seed", str(cfg.init_rand_seed)),
    ]
    return markdown_table(["setting", "value"], rows)


def history_markdown(summary: Mapping[str, Any]) -> str:
    """Average mAP of every evaluated epoch of a training summary, with the last and the best marked (and the
    metric named: class-agnostic or not)."""
    best = (summary.get("best") or {}).get("epoch")
    last = (summary.get("last") or {}).get("epoch")
    history = summary.get("history", [])
    metric = next((h["metric"] for h in history if h.get("metric")), "mAP")
    rows = []
    for entry in history:
        marks = [m for m, e in (("last", last), ("best", best)) if e == entry["epoch"]]
        value = entry.get("average_mAP")
        rows.append((entry["epoch"], "–" if value is None else f"{100 * value:.2f}", ", ".join(marks)))
    return markdown_table(["epoch", f"average {metric} (%)", ""], rows)


def format_summary(result: Mapping[str, Any]) -> str:
    """A few readable lines about a training run (what ``train`` returns)."""
    lines = [f"run {result['run_dir']}: {result['epochs_completed']}/{result['epochs']} epochs"]
    for which in ("last", "best"):
        block = result.get(which)
        if block and block.get("average_mAP") is not None:
            values = " ".join(f"{100 * v:.2f}" for v in block["mAP"])
            lines.append(f"  {which:>4} epoch {block['epoch']}: average {block.get('metric', 'mAP')} "
                         f"{100 * block['average_mAP']:.2f} % "
                         f"(per tIoU: {values})")
    if result.get("final"):
        lines.append(f"  detections.json and metrics.json show the {result.get('report', 'last')} epoch")
    return "\n".join(lines)


def checkpoint_markdown(contents: Sequence[tuple[str, str]]) -> str:
    """What a training checkpoint holds (``tal_kit.training.checkpoint.checkpoint_contents``) as a markdown table."""
    return markdown_table(["field", "content"], contents)


def results_markdown(results: Mapping[str, Any]) -> str:
    """``python -m tal_kit reproduce``'s results (``collect_results``) as markdown: one row per (last, best),
    mean ± std over seeds, and the published row."""
    table, published = results["table"], results.get("published")
    if not table:
        return f"No metrics found under {results['run_dir']} (did notebooks 04-05 write metrics?)."
    thresholds = next(iter(table.values()))["tiou_thresholds"]
    metric = results.get("metric") or {}
    name = metric.get("name", "mAP")
    lines = [f"Results for `{results['config']}` ({name} in %, mean ± std over seeds)", ""]
    if metric.get("note"):
        lines += [f"**{name}**: {metric['note']}.", ""]
    rows = []
    for which, block in table.items():
        n = block["num_seeds"]
        cells = [f"{m:.2f}" + (f" ± {s:.2f}" if n > 1 else "") for m, s in zip(block["mAP_mean"], block["mAP_std"])]
        avg = f"{block['average_mAP_mean']:.2f}" + (f" ± {block['average_mAP_std']:.2f}" if n > 1 else "")
        epochs = ",".join(str(e) for e in block["epochs"])
        label = {"last": "tal_kit, last epoch", "best": "tal_kit, best epoch (selected on the eval split)"}[which]
        rows.append([label, *cells, avg, epochs])
    if published:
        per = published.get("mAP", {})
        cells = [f"{per[f'{t:g}']:.2f}" if f"{t:g}" in per else "–" for t in thresholds]
        rows.append([f"published: {published['source']}", *cells, f"{published['average_mAP']:.2f}", ""])
    elif results.get("published_not_comparable"):
        other = results["published_not_comparable"]
        rows.append([f"published: {other['source']} (a different metric: left empty)"] + [""] * (len(thresholds) + 2))
    lines.append(markdown_table(["row", *(f"tIoU {t:g}" for t in thresholds), "average", "epoch(s)"], rows))
    lines += ["", "The 'best epoch' row picks the epoch by its mAP on the evaluation split itself, as InternVideo's "
                  "train_eval.py allows (SPEC §A.3); the 'last epoch' row is the unbiased figure."]
    if results.get("reference_check"):
        lines += ["", results["reference_check"]["text"] + "."]
    return "\n".join(lines)
