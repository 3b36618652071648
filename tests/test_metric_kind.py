"""Numbers say what they are: class-agnostic (single-class detector, no video-level scores, SPEC §B.2-B.3) and
synthetic results are labelled, and the results table never sets them beside a published number."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tal_kit import reproduce as rp
from tal_kit.config import load_config
from tal_kit.evaluation.metric_kind import SYNTHETIC_MARKER, metric_kind, metric_kind_for_config
from tal_kit.viz.tables import results_markdown


@pytest.mark.parametrize("preset, class_agnostic", [("anet", True), ("hacs", True), ("fineaction", True),
                                                    ("thumos14", False), ("thumos14_i3d", False)])
def test_real_presets_without_score_files(preset, class_agnostic, tmp_path):
    # SPEC §B.2: ANet, HACS and FineAction set num_classes 1 and take classes only from ext_score_file; THUMOS
    # detects its 20 classes itself.
    kind = metric_kind_for_config(load_config(preset), tmp_path)
    assert kind.class_agnostic is class_agnostic
    assert kind.comparable_to_published is (not class_agnostic)
    assert kind.name == ("class-agnostic mAP" if class_agnostic else "mAP")
    assert ("not comparable" in kind.label) is class_agnostic


def test_a_score_file_makes_anet_per_class(tmp_path):
    cfg = load_config("anet", ["test_cfg.ext_score_file=annotations/cuhk_val_simp_share.json"])
    kind = metric_kind_for_config(cfg, tmp_path)
    assert not kind.class_agnostic and kind.comparable_to_published and kind.note == ""


def test_synthetic_data_is_labelled(tmp_path):
    assert metric_kind_for_config(load_config("demo"), tmp_path).synthetic
    assert metric_kind_for_config(load_config("demo_videos"), tmp_path).synthetic  # the video demo's generated data
    thumos = load_config("thumos14")
    assert not metric_kind_for_config(thumos, tmp_path).synthetic
    (tmp_path / SYNTHETIC_MARKER).write_text("{}")
    kind = metric_kind_for_config(thumos, tmp_path)
    assert kind.synthetic and not kind.comparable_to_published and "synthetic" in kind.label


def test_note_names_the_published_number():
    kind = metric_kind(1, None, published="InternVideo 39.00")
    assert "not comparable to the published InternVideo 39.00" in kind.note
    assert kind.to_dict()["label"] == kind.label


def _table(average: float) -> dict:
    return {"last": {"tiou_thresholds": [0.5, 0.75], "mAP_mean": [average + 5, average - 5], "mAP_std": [0, 0],
                     "average_mAP_mean": average, "average_mAP_std": 0.0, "epochs": [14], "num_seeds": 1}}


def _cells(markdown: str, row_start: str) -> list[str]:
    row = next(line for line in markdown.splitlines() if line.startswith(f"| {row_start}"))
    return [cell.strip() for cell in row.strip("|").split("|")]


def test_class_agnostic_results_table_leaves_the_comparison_empty(tmp_path):
    metric = rp.metric_of(load_config("anet"), tmp_path)
    results = rp.collect_results("anet", tmp_path, [tmp_path], metric)
    assert results["published"] is None and results["published_not_comparable"]["average_mAP"] == 39.00
    results["table"] = _table(45.0)
    text = results_markdown(results)
    assert "class-agnostic mAP in %" in text and "not comparable to the published InternVideo 39.00" in text
    published = _cells(text, "published")
    assert "different metric" in published[0] and all(cell == "" for cell in published[1:])
    assert _cells(text, "tal_kit, last")[1:4] == ["50.00", "40.00", "45.00"]


def test_per_class_results_keep_the_published_row(tmp_path):
    metric = rp.metric_of(load_config("thumos14"), tmp_path)
    results = rp.collect_results("thumos14", tmp_path, [tmp_path], metric)
    results["table"] = _table(70.0)
    assert _cells(results_markdown(results), "published")[-2] == "71.58"


def test_metrics_json_of_a_class_agnostic_evaluation(tmp_path):
    """metrics.json of a single-class ANet-style evaluation carries the label (hand-made detections)."""
    from tal_kit.data.annotations import VideoRecord
    from tal_kit.detections import Detections
    from tal_kit.evaluate import evaluate_detections
    from tal_kit.evaluation.protocol import format_metrics_line
    from tal_kit.infer import Evaluation, write_evaluation

    gt = [VideoRecord("a", "validation", 100.0, 15.0, np.array([[0.0, 10.0]]), np.array([0]))]
    detections = Detections(np.array(["a"]), np.array([0.0]), np.array([10.0]), np.array([0]), np.array([0.9]))
    result = evaluate_detections(gt, detections, [0.5], label_names=["action"])
    evaluation = Evaluation(load_config("anet"), tmp_path, ["validation"], detections, result, gt, ["action"])
    write_evaluation(evaluation, metrics_path=tmp_path / "metrics.json")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["mAP"] == [1.0]
    assert metrics["metric"]["name"] == "class-agnostic mAP" and not metrics["metric"]["comparable_to_published"]
    line = format_metrics_line(metrics)
    assert line.startswith("class-agnostic mAP (%) at tIoU 0.5: 100.00") and "not comparable" in line


def test_training_history_and_curves_name_the_metric(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from tal_kit.viz.tables import history_markdown
    from tal_kit.viz.training import plot_training_curves

    summary = {"last": {"epoch": 1}, "best": {"epoch": 0},
               "history": [{"epoch": 0, "average_mAP": 0.5, "metric": "class-agnostic mAP"},
                           {"epoch": 1, "average_mAP": 0.25, "metric": "class-agnostic mAP"}]}
    table = history_markdown(summary)
    assert table.splitlines()[0] == "| epoch | average class-agnostic mAP (%) | |" and "| 0 | 50.00 | best |" in table
    assert history_markdown({"history": [{"epoch": 0, "average_mAP": 0.5}]}).startswith("| epoch | average mAP (%)")
    (tmp_path / "metrics.jsonl").write_text(json.dumps(
        {"type": "epoch", "epoch": 0, "step": 1, "lr": 0.1, "final_loss": 1.0, "cls_loss": 0.5, "reg_loss": 0.5,
         "eval": {"tiou_thresholds": [0.5], "mAP": [0.5], "average_mAP": 0.5, "metric": "class-agnostic mAP"}}) + "\n")
    fig = plot_training_curves(tmp_path)
    assert fig.axes[2].get_ylabel() == "class-agnostic mAP (%)"
