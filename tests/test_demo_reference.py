"""``reproduce`` says whether a default demo run falls inside the spread a fresh machine reproduces (README)."""
from __future__ import annotations

import pytest

from tal_kit import reproduce as rp
from tal_kit.viz.tables import results_markdown


def _results(config: str, average: float) -> dict:
    return {"config": config, "table": {"last": {"average_mAP_mean": average}}}


@pytest.fixture
def reference(monkeypatch):
    # mean 70, sample std 1 (values 69, 70, 71): inside = 67 .. 73
    monkeypatch.setitem(rp.DEMO_REFERENCE, "average_mAP", [69.0, 70.0, 71.0])


def test_inside_and_outside(reference):
    inside = rp.demo_reference_check(_results("demo", 72.9), quick=False, overrides=[])
    assert inside["inside"] and inside["low"] == pytest.approx(67.0) and inside["high"] == pytest.approx(73.0)
    assert "72.90 is inside" in inside["text"] and "70.00 ± 1.00" in inside["text"]
    outside = rp.demo_reference_check(_results("demo", 66.5), quick=False, overrides=[])
    assert not outside["inside"] and "OUTSIDE" in outside["text"]


def test_only_for_the_default_demo_setting(reference):
    assert rp.demo_reference_check(_results("thumos14", 70.0), quick=False, overrides=[]) is None
    assert rp.demo_reference_check(_results("demo", 70.0), quick=True, overrides=[]) is None
    assert rp.demo_reference_check(_results("demo", 70.0), quick=False, overrides=["opt.epochs=2"]) is None


def test_the_check_reaches_results_md(reference):
    results = {**_results("demo", 70.5), "run_dir": "x", "published": None,
               "table": {"last": {"tiou_thresholds": [0.5], "mAP_mean": [70.5], "mAP_std": [0.0],
                                  "average_mAP_mean": 70.5, "average_mAP_std": 0.0, "epochs": [7], "num_seeds": 1}}}
    results["reference_check"] = rp.demo_reference_check(results, quick=False, overrides=[])
    assert "demo check: last-epoch average mAP 70.50 is inside" in results_markdown(results)
