"""Looking at detections: interactive timelines, an NMS explorer, static report figures and DETAD error analysis.

* :func:`timeline` — one video as a plotly figure (ground-truth lanes, detections coloured by score, true/false
  positives at a tIoU, hover details, an optional per-step track).
* :func:`explorer` — an ipywidgets panel around the timeline that re-runs NMS on cached pre-NMS candidates.
* :func:`export_html` — timelines as one standalone HTML file (plotly.js inside, works offline).
* figures — matplotlib: AP vs tIoU, per-class AP, PR curves, durations, DETAD false positives and sensitivity.
* error analysis — DETAD's false-positive categories, profile and sensitivity to action length.
"""
from tal_kit.viz.error_analysis import (
    ERROR_TYPE_NAMES, FalsePositiveAnalysis, SensitivityAnalysis, VideoMatch, classify_false_positives,
    false_positive_analysis, length_bins_for, match_table, match_video, pairwise_tiou, sensitivity_analysis,
)
from tal_kit.viz.candidates import (
    VideoCandidates, apply_nms, collect_candidates, detections_from_candidates, load_candidates, nms_settings,
    save_candidates, synthetic_candidates,
)
from tal_kit.viz.explorer import Explorer, explorer
from tal_kit.viz.export import export_html
from tal_kit.viz.figures import (
    ap_vs_tiou_figure, duration_histograms_figure, false_positive_figure, per_class_ap_figure, pr_curves_figure,
    save_figure, save_report_figures, sensitivity_figure,
)
from tal_kit.viz.timeline import (
    Track, VideoDetections, class_score_track, feature_energy_track, timeline, video_detections,
)

__all__ = [
    "timeline", "Track", "VideoDetections", "video_detections", "class_score_track", "feature_energy_track",
    "export_html", "explorer", "Explorer",
    "VideoCandidates", "apply_nms", "collect_candidates", "detections_from_candidates", "load_candidates",
    "save_candidates", "synthetic_candidates", "nms_settings",
    "ap_vs_tiou_figure", "per_class_ap_figure", "pr_curves_figure", "duration_histograms_figure",
    "false_positive_figure", "sensitivity_figure", "save_figure", "save_report_figures",
    "ERROR_TYPE_NAMES", "VideoMatch", "match_video", "match_table", "classify_false_positives", "pairwise_tiou",
    "FalsePositiveAnalysis", "false_positive_analysis", "SensitivityAnalysis", "sensitivity_analysis",
    "length_bins_for",
]
