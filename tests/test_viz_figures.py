"""Static report figures: what is drawn is the data given (read back from the matplotlib artists)."""
from __future__ import annotations

import numpy as np
import pytest

from tal_kit.data.annotations import VideoRecord
from tal_kit.detections import Detections
from tal_kit.evaluate import evaluate_detections
from tal_kit.evaluation.detad import false_positive_analysis, sensitivity_analysis
from tal_kit.viz import (
    ap_vs_tiou_figure, duration_histograms_figure, false_positive_figure, per_class_ap_figure, pr_curves_figure,
    save_report_figures, sensitivity_figure,
)

LABELS = ["jump", "run", "swim", "unused"]
GT = [VideoRecord("a", "test", 100.0, 30.0, np.array([[0, 10], [20, 30], [50, 52]], float), np.array([0, 0, 1])),
      VideoRecord("b", "test", 40.0, 30.0, np.array([[5, 25]], float), np.array([2]))]
DETS = Detections(np.array(["a", "a", "a", "a", "b", "b"]), np.array([0, 60, 21, 50, 5, 0], float),
                  np.array([10, 70, 29, 51, 24, 3], float), np.array([0, 0, 0, 1, 2, 2]),
                  np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4]))


@pytest.fixture(scope="module")
def result():
    return evaluate_detections(GT, DETS, [0.3, 0.5, 0.7], label_names=LABELS)


def test_ap_vs_tiou_plots_the_map_in_percent(result):
    ax = ap_vs_tiou_figure(result).axes[0]
    np.testing.assert_allclose(ax.lines[0].get_xdata(), [0.3, 0.5, 0.7])
    np.testing.assert_allclose(ax.lines[0].get_ydata(), 100 * result.mAP)
    assert ax.lines[1].get_ydata()[0] == pytest.approx(100 * result.average_mAP)


def test_per_class_ap_is_sorted_and_skips_classes_without_ground_truth(result):
    ax = per_class_ap_figure(result, LABELS).axes[0]
    widths = [bar.get_width() for bar in ax.patches]
    names = [tick.get_text() for tick in ax.get_yticklabels()]
    assert "unused" not in names and len(names) == 3
    expected = {LABELS[c]: 100 * result.ap[c].mean() for c in result.class_ids}
    np.testing.assert_allclose(widths, [expected[n] for n in names])
    assert widths == sorted(widths)


def test_pr_curves_are_the_evaluator_curves(result):
    ax = pr_curves_figure(result, LABELS, tiou_threshold=0.5, classes=[0]).axes[0]
    curve = result.pr_curves[0]
    np.testing.assert_allclose(ax.lines[0].get_xdata(), curve.recall[1])
    np.testing.assert_allclose(ax.lines[0].get_ydata(), curve.precision[1])


def test_duration_histograms_count_every_video():
    fig = duration_histograms_figure(GT, DETS, score_threshold=0.55)
    videos = fig.axes[1]
    assert sum(bar.get_height() for bar in videos.patches) == len(GT)
    assert "(4)" in fig.axes[0].get_legend().get_texts()[1].get_text()  # 4 detections score >= 0.55


def test_false_positive_and_sensitivity_figures_draw_the_analysis():
    analysis = false_positive_analysis(GT, DETS, [0.5], num_groups=3)
    ax_profile, ax_gain = false_positive_figure(analysis).axes[:2]
    heights = np.array([bar.get_height() for bar in ax_profile.patches]).reshape(6, 3).T  # [group, outcome]
    np.testing.assert_allclose(heights, 100 * analysis.profile)
    np.testing.assert_allclose([bar.get_height() for bar in ax_gain.patches],
                               [100 * v for v in analysis.map_n_gain.values()])
    sens = sensitivity_analysis(GT, DETS, [0.5])
    ax = sensitivity_figure(sens).axes[0]
    np.testing.assert_allclose([bar.get_height() for bar in ax.patches], np.nan_to_num(100 * sens.average_map_n))


def test_save_report_figures_writes_png_files(tmp_path, result):
    paths = save_report_figures(tmp_path / "figs", result=result, label_names=LABELS, ground_truth=GT,
                                detections=DETS, false_positives=false_positive_analysis(GT, DETS, [0.5]),
                                sensitivities=[sensitivity_analysis(GT, DETS, [0.5])])
    assert sorted(paths) == ["ap_vs_tiou", "durations", "false_positive_analysis", "per_class_ap", "pr_curves",
                             "sensitivity_analysis"]
    for path in paths.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == sorted(p.name for p in paths.values())


def test_cli_viz_writes_the_report_and_names_bad_input(tmp_path, capsys):
    from tal_kit.data.demo import DemoSpec, generate_demo_dataset
    from tal_kit.viz.cli import cli_viz

    data_root = tmp_path / "demo"
    generate_demo_dataset(data_root, DemoSpec(seed=3, num_train_videos=40, num_test_videos=4, min_duration=15.0,
                                              max_duration=30.0))
    out = tmp_path / "out"
    code = cli_viz(["--config", "demo", "--data-root", str(data_root), "--run-dir", str(tmp_path / "no_run"),
                    "--out", str(out), "--videos", "2"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "STAND-IN" in printed  # no run yet: it says the detections are made from the ground truth
    assert {p.name for p in out.iterdir()} == {"timelines.html", "ap_vs_tiou.png", "per_class_ap.png",
                                                "pr_curves.png", "durations.png", "false_positive_analysis.png",
                                                "sensitivity_analysis.png"}
    assert (out / "timelines.html").read_text().count('class="tal-figure"') == 2
    from tal_kit.__main__ import main

    assert main(["viz", "--config", "demo", "--data-root", str(data_root), "--video", "no_such_video",
                 "--run-dir", str(tmp_path / "no_run"), "--out", str(out)]) == 2
    assert "no_such_video" in capsys.readouterr().err
