"""Dataset statistics (notebook 02) on hand-made videos, and on the real THUMOS-14 file's known quirks."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from tal_kit.data.annotations import VideoRecord, load_annotations
from tal_kit.data.stats import (class_statistics, coverage, overlap_stats, pyramid_level_shares,
                                segment_union_length, summarize)
from tal_kit.viz.tables import records_table


def _video(vid, duration, segments, labels):
    return VideoRecord(vid, "Test", duration, 30.0, np.array(segments, float).reshape(-1, 2),
                       np.array(labels, np.int64))


def test_union_and_coverage():
    assert segment_union_length(np.array([[5.0, 7.0], [1.0, 3.0], [2.0, 4.0], [6.0, 6.5]])) == pytest.approx(5.0)
    assert segment_union_length(np.zeros((0, 2))) == 0.0
    # [8, 12] is clipped to the 10 s duration: union = [1, 3] + [8, 10] = 4 s
    assert coverage(_video("a", 10.0, [[1, 3], [8, 12]], [0, 1])) == pytest.approx(0.4)


def test_overlap_counts():
    videos = [_video("a", 20.0, [[0, 4], [2, 6], [2, 6], [10, 11]], [0, 0, 1, 2]),  # (0,1) same, (0,2) diff, (1,2) identical diff
              _video("b", 20.0, [[0, 1], [1, 2]], [0, 0])]  # touching, not overlapping
    stats = overlap_stats(videos)
    assert (stats.pairs, stats.same_label, stats.different_label, stats.identical_different_label) == (3, 1, 2, 1)
    assert stats.videos_with_overlap == 1 and stats.max_tiou == pytest.approx(1.0)


def test_summary_and_class_table():
    videos = [_video("a", 20.0, [[0, 4], [10, 11]], [0, 1]), _video("b", 40.0, [[5, 7]], [1])]
    s = summarize(videos, "Test")
    assert (s.videos, s.segments, s.classes) == (2, 3, 2)
    assert s.hours == pytest.approx(60 / 3600)
    assert s.segments_per_video == (1.5, 1.5, 2)
    assert s.duration_s == pytest.approx((7 / 3, 2.0, 1.0, 4.0))
    assert s.mean_coverage == pytest.approx((5 / 20 + 2 / 40) / 2)
    rows = class_statistics(videos, ["A", "B", "C"])
    assert [(r["instances"], r["videos"]) for r in rows] == [(1, 1), (2, 2), (0, 0)]
    assert rows[1]["mean_s"] == pytest.approx(1.5) and np.isnan(rows[2]["mean_s"])
    table = records_table([s.as_row()])
    assert table.splitlines()[2].startswith("| Test | 2 |")


def test_pyramid_level_shares():
    ranges = [[0, 4], [4, 8], [8, 10000]]
    # half-lengths 1, 4, 6, 50: 4 is in both [0, 4] and [4, 8] (inclusive ends, as in label assignment)
    np.testing.assert_allclose(pyramid_level_shares(np.array([2.0, 8.0, 12.0, 100.0]), ranges), [0.5, 0.5, 0.25])


def test_thumos_quirks_visible(thumos_json):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        db = load_annotations(thumos_json)
    test = db.select(["test"])
    s = summarize(test, "Test")
    assert s.videos == 212 and s.segments_per_video[0] == pytest.approx(15, abs=1.5)  # ~15 per test video
    assert s.duration_s[0] == pytest.approx(4.3, abs=0.5)  # mean instance 4.3 s
    assert s.overlaps.identical_different_label > 0  # CliffDiving segments also labelled Diving


def test_instance_lengths_in_steps():
    from types import SimpleNamespace

    from tal_kit.data.stats import instance_lengths_in_steps

    cfg = SimpleNamespace(feat_stride=4, num_frames=16, downsample_rate=1, max_seq_len=192, force_upsampling=False,
                          variable_length_upsampling="ignore", fixed_length_num_frames="stride_x_frames",
                          default_fps=None)
    videos = [_video("a", 20.0, [[0, 4], [10, 11]], [0, 1])]  # fps 30: 4 s = 120 frames = 30 steps of 4 frames
    np.testing.assert_allclose(instance_lengths_in_steps(videos, cfg), [30.0, 7.5])
    fixed = SimpleNamespace(**{**vars(cfg), "feat_stride": -1, "force_upsampling": True})
    np.testing.assert_allclose(instance_lengths_in_steps(videos, fixed), [4 / 20 * 192, 1 / 20 * 192])


def test_class_counts_figure_names_few_classes_and_bounds_many():
    """The bars are the per-subset counts; 20 classes get one named row each, 200 (ActivityNet) a figure of
    bounded height without 200 unreadable names."""
    import matplotlib

    matplotlib.use("Agg")
    from tal_kit.tutorial.dataset import plot_class_counts

    videos = [_video("a", 10.0, [[1, 2], [3, 4], [5, 6]], [0, 0, 2]), _video("b", 10.0, [[1, 2]], [2])]
    for num_classes, height in ((20, 0.22 * 20 + 1), (200, 8.0)):
        names = [f"class {i}" for i in range(num_classes)]
        fig = plot_class_counts({"Test": videos}, names)
        ax = fig.axes[0]
        assert fig.get_size_inches()[1] == pytest.approx(height)
        widths = [patch.get_width() for patch in ax.patches]
        assert widths[:3] == [2, 0, 2] and sum(widths) == 4  # class 0: 2, class 1: 0, class 2: 2
        shown = [t.get_text() for t in ax.get_yticklabels()]
        assert shown == (names if num_classes == 20 else [])


def test_class_statistics_hand_worked():
    """Two instances of class 0 in one video count one video; medians of 1, 2 and 6 s; an empty video counts
    nowhere; class 2 has no instance."""
    videos = [_video("a", 30.0, [[0, 1], [5, 7]], [0, 0]), _video("b", 30.0, [[10, 16], [3, 4]], [0, 1]),
              _video("c", 30.0, [], [])]
    rows = class_statistics(videos, ["A", "B", "C"])
    assert [(r["label"], r["instances"], r["videos"]) for r in rows] == [("A", 3, 2), ("B", 1, 1), ("C", 0, 0)]
    assert rows[0]["mean_s"] == pytest.approx(3.0) and rows[0]["median_s"] == pytest.approx(2.0)
    assert rows[1]["median_s"] == pytest.approx(1.0) and np.isnan(rows[2]["median_s"])
    assert class_statistics([], ["A"])[0]["instances"] == 0
