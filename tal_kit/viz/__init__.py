"""Looking at detections: interactive timelines, an NMS explorer and static report figures.

* :func:`timeline` — one video as a plotly figure (ground-truth lanes, detections coloured by score, true/false
  positives at a tIoU, hover details, an optional per-step track).
* :func:`explorer` — an ipywidgets panel around the timeline that re-runs NMS on cached pre-NMS candidates.
* :func:`export_html` — timelines as one standalone HTML file (plotly.js inside, works offline).
* :func:`write_linked_report` — the same with each video playing beside its timeline (playhead, click-to-seek,
  a strip of frame thumbnails), from ``file://`` and offline.
* figures — matplotlib: AP vs tIoU, per-class AP, PR curves, durations, DETAD false positives and sensitivity,
  an NMS sweep.

The numbers these pictures show come from the pipeline: candidates and NMS replay from :mod:`tal_kit.inference`,
DETAD's error analysis from :mod:`tal_kit.evaluation.detad`.
"""
from tal_kit.viz.explorer import Explorer, explorer
from tal_kit.viz.export import export_html
from tal_kit.viz.figures import (
    ap_vs_tiou_figure, duration_histograms_figure, false_positive_figure, per_class_ap_figure, pr_curves_figure,
    save_figure, save_report_figures, sensitivity_figure,
)
from tal_kit.viz.nms_sweep import nms_sweep_figure, nms_sweep_markdown
from tal_kit.viz.timeline import Track, class_score_track, feature_energy_track, timeline, video_detections
from tal_kit.viz.video import LinkedVideo, write_linked_report

__all__ = [
    "timeline", "Track", "video_detections", "class_score_track", "feature_energy_track",
    "export_html", "write_linked_report", "LinkedVideo", "explorer", "Explorer",
    "ap_vs_tiou_figure", "per_class_ap_figure", "pr_curves_figure", "duration_histograms_figure",
    "false_positive_figure", "sensitivity_figure", "save_figure", "save_report_figures",
    "nms_sweep_figure", "nms_sweep_markdown",
]
