"""Training curves: metrics.jsonl parsing, the plotted LR schedule, the EMA illustration (hand-worked)."""
from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tal_kit.config import OptConfig  # noqa: E402
from tal_kit.tutorial.training import ema_illustration  # noqa: E402
from tal_kit.viz.figures import save_figure  # noqa: E402
from tal_kit.viz.training import LiveLossPlot, plot_lr_schedule, plot_training_curves, read_metrics  # noqa: E402


def write_log(run_dir, lines):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines) + '{"type": "it')


def test_read_metrics_and_plot(tmp_path):
    lines = [{"type": "iter", "epoch": 0, "step": s, "lr": 0.1 * s, "final_loss": 3.0 - s, "cls_loss": 2.0,
              "reg_loss": 1.0 - s / 10} for s in (1, 2)]
    lines.append({"type": "epoch", "epoch": 0, "step": 2, "lr": 0.2, "final_loss": 1.5, "cls_loss": 2.0,
                  "reg_loss": 0.85, "eval": {"tiou_thresholds": [0.3, 0.5], "mAP": [0.6, 0.4], "average_mAP": 0.5}})
    write_log(tmp_path, lines)
    iters, epochs = read_metrics(tmp_path)  # the cut-off last line is skipped
    assert [r["step"] for r in iters] == [1, 2] and len(epochs) == 1
    fig = plot_training_curves(tmp_path)
    save_figure(fig, tmp_path / "fig" / "curves.png")
    assert (tmp_path / "fig" / "curves.png").stat().st_size > 0
    map_axis = fig.axes[2]
    average = map_axis.lines[0]
    assert list(average.get_ydata()) == [50.0]
    with pytest.raises(FileNotFoundError, match="has this run trained"):
        read_metrics(tmp_path / "none")


def test_lr_schedule_plot_shows_the_schedule():
    opt = OptConfig(learning_rate=1e-3, warmup=True, warmup_epochs=2, epochs=2, schedule_type="cosine",
                    eta_min=0.0, schedule_steps=[], schedule_gamma=0.1)
    fig = plot_lr_schedule(opt, iters_per_epoch=3)
    y = fig.axes[0].lines[0].get_ydata()
    # W = 6, M = 12: lr(k) = k·base/5 for k < 6, then 0.5·base·(1 + cos(pi·(k − 6)/6))
    expected = [k * 1e-3 / 5 for k in range(6)] + [0.5e-3 * (1 + np.cos(np.pi * j / 6)) for j in range(6)]
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-18)


def test_ema_illustration_hand_worked():
    out = ema_illustration([0.0, 4.0, 8.0], decays=(0.5, 0.75))
    np.testing.assert_array_equal(out[0.5], [0.0, 2.0, 5.0])      # 0.5·0 + 0.5·4, 0.5·2 + 0.5·8
    np.testing.assert_array_equal(out[0.75], [0.0, 1.0, 2.75])    # 0.75·0 + 0.25·4, 0.75·1 + 0.25·8


def test_live_plot_is_silent_outside_notebooks():
    plot = LiveLossPlot(every=1)
    assert not plot.active
    plot.on_iteration({"step": 1, "lr": 0.0, "final_loss": 1.0, "cls_loss": 0.5, "reg_loss": 0.5})
    plot.on_epoch_end({"step": 1, "eval": {"average_mAP": 0.25}})
    fig = plot.figure()  # still drawable on demand
    assert list(fig.axes[0].lines[0].get_ydata()) == [1.0]


def test_smoke_run_edge_cases():
    # a run shorter than the logging interval has no logged losses; a too-large batch has no iterations at all
    assert ema_illustration([], decays=(0.9,))[0.9].shape == (0,)
    from tal_kit.config import load_config

    with pytest.raises(ValueError, match="batch_size exceeds the number of training videos"):
        plot_lr_schedule(load_config("demo").opt, 0)
