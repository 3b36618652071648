"""A run's report: timelines of its busiest videos, its mAP, DETAD's false-positive and sensitivity analyses, and the
figures of all of these. Notebook 06 calls these steps one by one (showing each result); ``python -m tal_kit viz``
calls :func:`write_report`, which runs them all and writes the files."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from tal_kit.evaluation.detad import (FalsePositiveAnalysis, SensitivityAnalysis, false_positive_analysis,
                                     length_bins_for, sensitivity_analysis)
from tal_kit.evaluation.protocol import DEDUP_GT, score
from tal_kit.viz.export import export_html
from tal_kit.viz.figures import save_report_figures
from tal_kit.viz.timeline import timeline

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from tal_kit.config import Config
    from tal_kit.evaluation.metrics import EvaluationResult
    from tal_kit.viz.run_outputs import RunOutputs

__all__ = ["RunAnalysis", "run_timelines", "analyse_run", "save_run_figures", "write_report"]


@dataclass(frozen=True)
class RunAnalysis:
    """The numbers a report draws: mAP per class and tIoU, DETAD's false-positive profile and its sensitivity to
    action length and coverage (all at one tIoU)."""
    result: EvaluationResult
    false_positives: FalsePositiveAnalysis
    sensitivities: tuple[SensitivityAnalysis, ...]


def run_timelines(run: RunOutputs, videos: Sequence[str], *, tiou_threshold: float = 0.5,
                  score_threshold: float = 0.05) -> dict[str, go.Figure]:
    """video id -> the timeline of its ground truth and detections (true/false positives at ``tiou_threshold``)."""
    return {video_id: timeline(run.record(video_id), run.detections, label_names=run.label_names,
                               tiou_threshold=tiou_threshold, score_threshold=score_threshold)
            for video_id in videos}


def analyse_run(run: RunOutputs, cfg: Config, *, tiou_threshold: float = 0.5) -> RunAnalysis:
    """Evaluate the run's detections with the published protocol and run DETAD's analyses at ``tiou_threshold``."""
    result = score(run.detections, run.ground_truth, run.label_names, cfg)
    false_positives = false_positive_analysis(run.ground_truth, run.detections, [tiou_threshold], dedup_gt=DEDUP_GT)
    bins = length_bins_for(cfg.dataset_name)
    sensitivities = tuple(sensitivity_analysis(run.ground_truth, run.detections, [tiou_threshold],
                                               characteristic=characteristic, bins=bins, dedup_gt=DEDUP_GT)
                          for characteristic in ("length", "coverage"))
    return RunAnalysis(result, false_positives, sensitivities)


def save_run_figures(run: RunOutputs, analysis: RunAnalysis, out_dir: str | Path) -> dict[str, Path]:
    """Every report figure of ``analysis`` as PNG under ``out_dir``; returns name -> path."""
    return save_report_figures(out_dir, result=analysis.result, label_names=run.label_names,
                               ground_truth=run.ground_truth, detections=run.detections,
                               false_positives=analysis.false_positives, sensitivities=analysis.sensitivities)


def write_report(run: RunOutputs, cfg: Config, out_dir: str | Path, *, tiou_threshold: float = 0.5,
                 score_threshold: float = 0.05, videos: Sequence[str] | None = None,
                 num_videos: int = 5) -> dict[str, Path]:
    """Write ``timelines.html`` (``videos``, default the ``num_videos`` busiest) and every report figure into
    ``out_dir``; returns name -> path."""
    out_dir = Path(out_dir)
    videos = list(videos) if videos else run.busiest_videos(num_videos)
    figures = run_timelines(run, videos, tiou_threshold=tiou_threshold, score_threshold=score_threshold)
    paths = {"timelines": export_html(figures, out_dir / "timelines.html", title=f"tal_kit {cfg.name}: detections")}
    paths.update(save_run_figures(run, analyse_run(run, cfg, tiou_threshold=tiou_threshold), out_dir))
    return paths
