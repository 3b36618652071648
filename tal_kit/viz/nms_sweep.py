"""An NMS sweep (`tal_kit.inference.nms.nms_sweep` rows) as a markdown table and as a bar chart."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from matplotlib.figure import Figure

__all__ = ["nms_sweep_markdown", "nms_sweep_figure"]


def nms_sweep_markdown(rows: Sequence[Mapping[str, Any]], tiou_thresholds: Sequence[float]) -> str:
    """The rows of an NMS sweep as a markdown table (mAP in %)."""
    head = "| variant | " + " | ".join(f"mAP@{t:g}" for t in tiou_thresholds) + " | average | detections |"
    lines = [head, "|" + "---|" * (len(tiou_thresholds) + 3)]
    for row in rows:
        values = " | ".join(f"{100 * v:.2f}" for v in row["mAP"])
        lines.append(f"| {row['name']} | {values} | {100 * row['average_mAP']:.2f} | {row['num_detections']} |")
    return "\n".join(lines)


def nms_sweep_figure(rows: Sequence[Mapping[str, Any]]) -> Figure:
    """Average mAP (%) of each NMS variant as horizontal bars, the first (the config's) highlighted."""
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
