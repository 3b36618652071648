"""The one markdown writer (tal_kit.viz.tables) on hand-written tables, and the builders that go through it."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from tal_kit.viz.tables import (checkpoint_markdown, format_summary, markdown_table, recipe_markdown, records_table,
                                results_markdown)


def test_markdown_table_hand_written():
    text = markdown_table(["name", "value", "note"], [("a", 1.0, "x"), ("b", 2, ""), ("c", 0.125, None)])
    assert text == ("| name | value | note |\n"
                    "|---|---|---|\n"
                    "| a | 1.00 | x |\n"
                    "| b | 2 | |\n"         # ints as they are; an empty cell is "| |"
                    "| c | 0.12 | None |")  # floats with floatfmt (round half to even: 0.125 -> 0.12)
    assert markdown_table(["x"], [[0.5]], floatfmt=".0%") == "| x |\n|---|\n| 50% |"
    assert markdown_table(["only", "header"], []) == "| only | header |\n|---|---|"
    with pytest.raises(ValueError, match="2 cells for 3 columns"):
        markdown_table(["a", "b", "c"], [(1, 2)])


def test_records_table_takes_the_first_records_keys_as_columns():
    rows = [{"class": "Jump", "AP": 0.5}, {"AP": 0.25, "class": "Run"}]  # key order of the first row decides
    assert records_table(rows, floatfmt=".1f") == "| class | AP |\n|---|---|\n| Jump | 0.5 |\n| Run | 0.2 |"
    assert records_table([]) == ""


def test_recipe_names_each_setting_of_the_config():
    cfg = SimpleNamespace(
        opt=SimpleNamespace(type="AdamW", weight_decay=0.05, learning_rate=1e-4, schedule_type="cosine", eta_min=0.0,
                            warmup=True, warmup_epochs=5, total_epochs=35, epochs=30),
        trainer=SimpleNamespace(ema_decay=0.999, eval_start_epoch=7, deterministic="strict"),
        loader=SimpleNamespace(batch_size=2), dataset=SimpleNamespace(max_seq_len=2304),
        train_cfg=SimpleNamespace(clip_grad_l2norm=1.0), init_rand_seed=1234567891)
    lines = recipe_markdown(cfg).splitlines()
    assert lines[:2] == ["| setting | value |", "|---|---|"]
    assert "| epochs | 35 (30 + 5 warmup) |" in lines
    assert "| warmup | 5 epoch(s), linear from 0 |" in lines
    assert "| gradient clipping | L2 norm 1 |" in lines
    assert lines[-1] == "| seed | 1234567891 |"
    cfg.opt.warmup, cfg.train_cfg.clip_grad_l2norm = False, 0.0
    lines = recipe_markdown(cfg).splitlines()
    assert "| warmup | none |" in lines and "| epochs | 35 (30 + 0 warmup) |" in lines
    assert "| gradient clipping | none |" in lines


def test_checkpoint_and_summary_text():
    assert checkpoint_markdown([("epoch", "3"), ("ema", "the EMA copy")]) == \
        "| field | content |\n|---|---|\n| epoch | 3 |\n| ema | the EMA copy |"
    summary = {"run_dir": "runs/x", "epochs_completed": 2, "epochs": 4, "final": None,
               "last": {"epoch": 1, "mAP": [0.5, 0.25], "average_mAP": 0.375}}
    assert format_summary(summary) == ("run runs/x: 2/4 epochs\n"
                                       "  last epoch 1: average mAP 37.50 % (per tIoU: 50.00 25.00)")


def test_results_table_rows_and_the_incomparable_published_row():
    block = {"tiou_thresholds": [0.5, 0.75], "mAP_mean": [60.0, 40.0], "mAP_std": [1.0, 0.5],
             "average_mAP_mean": 50.0, "average_mAP_std": 0.75, "epochs": [9, 9], "num_seeds": 2}
    text = results_markdown({"config": "x", "run_dir": "r", "table": {"last": block},
                             "published_not_comparable": {"source": "paper"}})
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert table == ["| row | tIoU 0.5 | tIoU 0.75 | average | epoch(s) |",
                     "|---|---|---|---|---|",
                     "| tal_kit, last epoch | 60.00 ± 1.00 | 40.00 ± 0.50 | 50.00 ± 0.75 | 9,9 |",
                     "| published: paper (a different metric: left empty) | | | | |"]
    assert results_markdown({"config": "x", "run_dir": "r", "table": {}}).startswith("No metrics found under r")
