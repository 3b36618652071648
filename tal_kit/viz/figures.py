"""Static matplotlib figures of an evaluation: AP vs tIoU, per-class AP, PR curves, durations, DETAD analyses.

Every function returns a ``matplotlib.figure.Figure`` built without pyplot (no global state, nothing left open);
notebooks display it, :func:`save_figure` writes it atomically, :func:`save_report_figures` writes the whole set
under ``figures/<config>/``. This is the kit's one figure idiom: viz/training.py and the tutorial/ modules follow it
(under ``%matplotlib inline`` a pyplot-free Figure shows when it is displayed or is a cell's last value).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from matplotlib.figure import Figure

from tal_kit.atomic import atomic_path
from tal_kit.evaluation.detad import ERROR_TYPE_NAMES, FalsePositiveAnalysis, SensitivityAnalysis

if TYPE_CHECKING:
    from tal_kit.data.annotations import VideoRecord
    from tal_kit.detections import Detections
    from tal_kit.evaluation.metrics import EvaluationResult

__all__ = ["ap_vs_tiou_figure", "per_class_ap_figure", "pr_curves_figure", "duration_histograms_figure",
           "false_positive_figure", "sensitivity_figure", "save_figure", "save_report_figures"]

# DETAD's palette for true positive and the five error types.
ERROR_COLOURS = ("#33a02c", "#b2df8a", "#1f78b4", "#fb9a99", "#e31a1c", "#a6cee3")


def save_figure(fig: Figure, path: str | Path, dpi: int = 150) -> Path:
    """Save ``fig`` to ``path`` (format from the suffix) through a temporary file and a rename."""
    path = Path(path)
    with atomic_path(path, suffix=path.suffix) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    return path


def _percent(values: Any) -> np.ndarray:
    return 100.0 * np.asarray(values, np.float64)


def ap_vs_tiou_figure(result: EvaluationResult, *, label: str = "",
                      reference: dict[float, float] | None = None) -> Figure:
    """mAP (%) at each tIoU threshold, with the average as a dashed line.

    ``reference`` optionally maps tIoU -> published mAP (%) to draw beside the run.
    """
    thresholds = np.asarray(result.tiou_thresholds, np.float64)
    fig = Figure(figsize=(5.5, 3.6), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(thresholds, _percent(result.mAP), marker="o", label=label or "this run")
    ax.axhline(100 * float(result.average_mAP), linestyle="--", color="grey",
               label=f"average {100 * float(result.average_mAP):.2f}")
    if reference:
        ref_t = np.asarray(sorted(reference), np.float64)
        ax.plot(ref_t, [reference[t] for t in sorted(reference)], marker="s", linestyle=":", label="published")
    ax.set_xlabel("tIoU threshold")
    ax.set_ylabel("mAP (%)")
    ax.set_xticks(thresholds)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    ax.set_title("Detection mAP vs tIoU")
    return fig


def per_class_ap_figure(result: EvaluationResult, label_names: Sequence[str], *,
                        tiou_threshold: float | None = None) -> Figure:
    """Per-class AP (%), sorted, averaged over tIoU thresholds (or at one ``tiou_threshold``)."""
    classes = _evaluated_classes(result)
    ap = np.asarray(result.ap, np.float64)[classes]  # [evaluated classes, num_tiou]
    thresholds = np.asarray(result.tiou_thresholds, np.float64)
    if tiou_threshold is None:
        values, what = ap.mean(axis=1), "average over tIoU"
    else:
        column = int(np.argmin(np.abs(thresholds - tiou_threshold)))
        values, what = ap[:, column], f"tIoU {thresholds[column]:g}"
    order = np.argsort(values, kind="stable")
    shown = order if len(order) <= 40 else np.concatenate([order[:20], order[-20:]])  # the worst and the best
    names = [label_names[c] if c < len(label_names) else f"class {c}" for c in classes[shown]]
    fig = Figure(figsize=(6.5, max(2.5, 0.22 * len(shown) + 1.0)), layout="constrained")
    ax = fig.add_subplot()
    ax.barh(np.arange(len(shown)), _percent(values[shown]), color="#4c72b0")
    ax.set_yticks(np.arange(len(shown)), names, fontsize=8)
    ax.axvline(100 * float(np.mean(values)), linestyle="--", color="grey", label=f"mean {100 * np.mean(values):.2f}")
    ax.set_xlabel(f"AP (%), {what}")
    ax.set_xlim(0, 100)
    ax.legend(loc="lower right")
    title = "Per-class AP" + ("" if len(shown) == len(order) else f" (20 worst and 20 best of {len(order)})")
    ax.set_title(title)
    return fig


def _pr_curve(result: EvaluationResult, class_id: int, column: int) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) of one class at one tIoU column (``result.pr_curves[class_id]`` is a ``PRCurve``)."""
    curve = result.pr_curves[class_id]
    return np.asarray(curve.recall)[column], np.asarray(curve.precision)[column]


def _evaluated_classes(result: EvaluationResult) -> np.ndarray:
    """The classes with ground truth (the ones the mean AP is taken over)."""
    class_ids = getattr(result, "class_ids", None)
    return np.asarray(class_ids if class_ids is not None else np.arange(len(result.ap)), np.int64)


def pr_curves_figure(result: EvaluationResult, label_names: Sequence[str], *, tiou_threshold: float = 0.5,
                     classes: Sequence[int] | None = None, max_classes: int = 10) -> Figure:
    """Precision-recall curves at one tIoU, for ``classes`` (default: up to ``max_classes`` spread over AP ranks)."""
    thresholds = np.asarray(result.tiou_thresholds, np.float64)
    column = int(np.argmin(np.abs(thresholds - tiou_threshold)))
    ap = np.asarray(result.ap, np.float64)[:, column]
    if classes is None:
        evaluated = _evaluated_classes(result)
        ranked = evaluated[np.argsort(-ap[evaluated], kind="stable")]
        classes = ranked[np.unique(np.linspace(0, len(ranked) - 1, min(max_classes, len(ranked))).round().astype(int))]
    fig = Figure(figsize=(6.0, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for c in classes:
        recall, precision = _pr_curve(result, int(c), column)
        name = label_names[c] if c < len(label_names) else f"class {c}"
        ax.plot(recall, precision, drawstyle="steps-post", label=f"{name} (AP {100 * ap[c]:.1f})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title(f"Precision-recall at tIoU {thresholds[column]:g}")
    return fig


def duration_histograms_figure(ground_truth: Sequence[VideoRecord], detections: Detections | None = None, *,
                               score_threshold: float = 0.0) -> Figure:
    """Histograms of action length (ground truth vs detections scoring >= ``score_threshold``) and video length."""
    gt_lengths = np.concatenate([np.diff(np.asarray(r.segments, np.float64).reshape(-1, 2), axis=1).ravel()
                                 for r in ground_truth]) if len(ground_truth) else np.zeros(0)
    video_lengths = np.asarray([float(r.duration) for r in ground_truth])
    det_lengths = np.zeros(0)
    if detections is not None:
        keep = np.asarray(detections.scores) >= score_threshold
        det_lengths = (np.asarray(detections.ends) - np.asarray(detections.starts))[keep]
    positive = np.concatenate([gt_lengths[gt_lengths > 0], det_lengths[det_lengths > 0]])
    if not len(positive):
        positive = np.array([1.0, 10.0])
    bins = np.logspace(np.log10(positive.min()), np.log10(positive.max()), 30)
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    ax_action, ax_video = fig.subplots(1, 2)
    ax_action.hist(gt_lengths[gt_lengths > 0], bins=bins, alpha=0.6, density=True, label=f"ground truth ({len(gt_lengths)})")
    if len(det_lengths):
        ax_action.hist(det_lengths[det_lengths > 0], bins=bins, alpha=0.5, density=True,
                       label=f"detections, score ≥ {score_threshold:g} ({len(det_lengths)})")
    ax_action.set_xscale("log")
    ax_action.set_xlabel("action length (s, log scale)")
    ax_action.set_ylabel("density")
    ax_action.legend(fontsize=8)
    ax_action.set_title("Action lengths")
    ax_video.hist(video_lengths, bins=30, color="#8172b2")
    ax_video.set_xlabel("video duration (s)")
    ax_video.set_ylabel("videos")
    ax_video.set_title(f"Video durations ({len(video_lengths)} videos)")
    return fig


def false_positive_figure(analysis: FalsePositiveAnalysis) -> Figure:
    """DETAD's false-positive profile (outcome shares per rank group) and the mAP_N gain of removing each error."""
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax_profile, ax_gain = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    x = np.arange(len(analysis.group_names))
    bottom = np.zeros(len(x))
    for code, name in enumerate(ERROR_TYPE_NAMES):
        share = 100 * analysis.profile[:, code]
        ax_profile.bar(x, share, bottom=bottom, color=ERROR_COLOURS[code], label=name, width=0.85)
        bottom += share
    ax_profile.set_xticks(x, analysis.group_names)
    ax_profile.set_xlabel("top predictions (G = ground-truth segments of the class)")
    ax_profile.set_ylabel("outcome breakdown (%)")
    ax_profile.set_ylim(0, 100)
    ax_profile.legend(fontsize=8, ncol=3, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    thresholds = ", ".join(f"{t:g}" for t in analysis.tiou_thresholds)
    ax_profile.set_title(f"False-positive profile (tIoU {thresholds})", pad=42)
    names = list(analysis.map_n_gain)
    gains = 100 * np.asarray([analysis.map_n_gain[n] for n in names])
    bars = ax_gain.bar(np.arange(len(names)), gains, color=ERROR_COLOURS[1:len(names) + 1])
    for bar, value in zip(bars, gains):
        ax_gain.annotate(f"{value:.1f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                         va="bottom", fontsize=8)
    ax_gain.set_xticks(np.arange(len(names)), names, rotation=30, ha="right")
    ax_gain.set_ylabel("average-mAP$_N$ gain (%)")
    ax_gain.set_title(f"Removing each error (base mAP$_N$ {100 * analysis.average_map_n:.1f})")
    ax_gain.grid(axis="y", alpha=0.3)
    return fig


def sensitivity_figure(*analyses: SensitivityAnalysis) -> Figure:
    """Average mAP_N per bin for each characteristic (DETAD's sensitivity plot), base mAP_N dashed."""
    if not analyses:
        raise ValueError("sensitivity_figure: give at least one SensitivityAnalysis")
    fig = Figure(figsize=(4.2 * len(analyses) + 1, 3.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(analyses), sharey=True))
    for ax, analysis in zip(axes, analyses):
        x = np.arange(len(analysis.bin_names))
        values = np.nan_to_num(100 * analysis.average_map_n)
        bars = ax.bar(x, values, color="#386cb0" if analysis.characteristic == "length" else "#f0027f")
        for bar, value, count in zip(bars, analysis.average_map_n, analysis.num_segments):
            text = "–" if not np.isfinite(value) else f"{100 * value:.1f}"
            ax.annotate(f"{text}\n(n={count})", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center",
                        va="bottom", fontsize=7)
        ax.axhline(100 * analysis.overall_average_map_n, linestyle="--", color="k",
                   label=f"all {100 * analysis.overall_average_map_n:.1f}")
        edges = analysis.bin_edges
        unit = " s" if analysis.characteristic == "length" else ""
        ax.set_xticks(x, [f"{n}\n≤{edges[i + 1]:g}{unit}" if np.isfinite(edges[i + 1]) else f"{n}\n>{edges[i]:g}{unit}"
                          for i, n in enumerate(analysis.bin_names)], fontsize=8)
        ax.set_ylim(0, 105)
        ax.set_title(f"Sensitivity to {analysis.characteristic}")
        ax.legend(fontsize=8, loc="upper left")
    axes[0].set_ylabel("average-mAP$_N$ (%)")
    return fig


def save_report_figures(out_dir: str | Path, *, result: EvaluationResult | None = None,
                        label_names: Sequence[str] = (), ground_truth: Sequence[VideoRecord] = (),
                        detections: Detections | None = None, false_positives: FalsePositiveAnalysis | None = None,
                        sensitivities: Sequence[SensitivityAnalysis] = (), pr_tiou: float = 0.5,
                        suffix: str = ".png") -> dict[str, Path]:
    """Draw and save every figure the inputs allow under ``out_dir``; returns name -> path."""
    out_dir = Path(out_dir)
    figures: dict[str, Figure] = {}
    if result is not None:
        figures["ap_vs_tiou"] = ap_vs_tiou_figure(result)
        figures["per_class_ap"] = per_class_ap_figure(result, label_names)
        if getattr(result, "pr_curves", None) is not None:
            figures["pr_curves"] = pr_curves_figure(result, label_names, tiou_threshold=pr_tiou)
    if len(ground_truth):
        figures["durations"] = duration_histograms_figure(ground_truth, detections)
    if false_positives is not None:
        figures["false_positive_analysis"] = false_positive_figure(false_positives)
    if sensitivities:
        figures["sensitivity_analysis"] = sensitivity_figure(*sensitivities)
    return {name: save_figure(fig, out_dir / f"{name}{suffix}") for name, fig in figures.items()}
