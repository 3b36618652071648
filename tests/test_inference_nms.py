"""NMS settings by the config's names: the same call as by tal_kit.ops' keywords, and a sweep of variants."""
from __future__ import annotations

import numpy as np
import pytest

from tal_kit.config import TestConfig
from tal_kit.inference.candidates import VideoCandidates
from tal_kit.inference.nms import apply_nms, default_nms_variants, nms_settings, nms_sweep


def test_config_names_and_ops_keywords_give_the_same_settings():
    by_config = nms_settings(TestConfig(), nms_method="hard", nms_sigma=0.9, soft_nms_kind="linear",
                             multiclass_nms=False, iou_threshold=0.3, max_seg_num=7)
    by_ops = nms_settings(TestConfig(), method="hard", sigma=0.9, soft_kind="linear", multiclass=False,
                          iou_threshold=0.3, max_seg_num=7)
    assert by_config == by_ops
    assert by_config["method"] == "hard" and by_config["sigma"] == 0.9 and by_config["multiclass"] is False
    assert by_config["voting_thresh"] == TestConfig().voting_thresh  # untouched settings stay the config's


def test_unknown_or_twice_named_settings_are_refused():
    with pytest.raises(ValueError, match="unknown setting 'pre_nms_topk'"):
        nms_settings(pre_nms_topk=10)  # a test_cfg key, but not an NMS setting
    with pytest.raises(ValueError, match="nms_method given twice"):
        nms_settings(nms_method="hard", method="soft")


def test_sweep_rows_hand_worked():
    # Two overlapping candidates (tIoU 8/12) and one apart, on the identity grid (grid units = seconds).
    cand = VideoCandidates("v", np.array([[0, 10], [2, 12], [50, 60]], np.float32),
                           np.array([0.9, 0.8, 0.7], np.float32), np.zeros(3, np.int64), 1.0, 1.0, 0.0, 100.0)
    variants = {"hard 0.5": {"nms_method": "hard", "iou_threshold": 0.5}, "none": {"nms_method": "none"}}
    counts = []

    class FakeScore:  # the sweep only reads mAP and average_mAP; report the detection count through them
        def __init__(self, detections):
            counts.append(len(detections))
            self.mAP, self.average_mAP = [len(detections) / 10], len(detections) / 10

    rows = nms_sweep({"v": cand}, variants, FakeScore, TestConfig(min_score=0.0))
    assert counts == [2, 3]  # hard NMS at 0.5 drops the second; no NMS keeps all three
    assert rows[0] == {"name": "hard 0.5", "nms_method": "hard", "iou_threshold": 0.5, "mAP": [0.2],
                       "average_mAP": 0.2, "num_detections": 2}
    assert len(apply_nms(cand, nms_settings(nms_method="hard", iou_threshold=0.7))) == 3  # 2/3 < 0.7 keeps it


def test_default_variants_are_valid_settings():
    cfg = TestConfig()
    for changes in default_nms_variants(cfg).values():
        nms_settings(cfg, **changes)  # raises on a name nms_settings does not know
    with pytest.raises(ValueError, match="no pre-NMS candidates"):
        nms_sweep({}, default_nms_variants(cfg), lambda detections: None, cfg)
