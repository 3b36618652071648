"""check-data on dry-run folders, each break introduced by hand and expected by name in the report."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tal_kit.check_data import check_data, cli_check_data, expected_length
from tal_kit.config import load_config
from tal_kit.data.features import feature_length, feature_path, write_feature_file
from tal_kit.dryrun import make_dryrun_data


@pytest.fixture
def hacs_folder(tmp_path):
    info = make_dryrun_data("hacs", tmp_path / "hacs")
    return tmp_path / "hacs", info


def _only_chosen(root, info):
    """Drop the annotation entries that have no features, so the folder is complete."""
    path = root / "annotations" / "HACS_segments_v1.1.1_af.json"
    data = json.loads(path.read_text())
    data["database"] = {k: v for k, v in data["database"].items() if k in info["videos"]}
    path.write_text(json.dumps(data))


def test_complete_folder_is_ready(hacs_folder):
    root, info = hacs_folder
    _only_chosen(root, info)
    report = check_data("hacs", root, progress=False)
    assert report.ok, report.render()
    assert report.checked_files == len(info["videos"])


def test_each_break_is_reported_by_kind(hacs_folder):
    root, info = hacs_folder
    _only_chosen(root, info)
    cfg = load_config("hacs")
    first, second, third = info["videos"][:3]
    folder = root / "features"
    feature_path(folder, first, "v_", ".pkl").unlink()
    write_feature_file(feature_path(folder, second, "v_", ".pkl"), np.zeros((50, 7), np.float32))  # wrong dim
    bad = np.zeros((50, cfg.dataset.input_dim), np.float32)
    bad[3, 5] = np.nan
    write_feature_file(feature_path(folder, third, "v_", ".pkl"), bad)
    report = check_data("hacs", root, progress=False)
    assert not report.ok
    assert any(first in item for item in report.errors["feature file missing"])
    unusable = " ".join(report.errors["feature file unusable"])
    assert "feature dimension is 7" in unusable and second in unusable
    assert "non-finite" in unusable and third in unusable
    text = report.render()
    assert "NOT READY" in text and "feature file missing: 1" in text


def test_length_mismatch_is_a_warning(hacs_folder):
    root, info = hacs_folder
    _only_chosen(root, info)
    cfg = load_config("hacs")
    vid = info["videos"][0]
    write_feature_file(feature_path(root / "features", vid, "v_", ".pkl"),
                       np.zeros((1000, cfg.dataset.input_dim), np.float32))
    report = check_data("hacs", root, progress=False)
    assert report.ok
    assert any(vid in w for w in report.warnings["length disagrees with duration"])


def test_expected_length_hand_worked():
    cfg = load_config("anet")  # 15 fps, stride 16, 16-frame clips: 60 s = 900 frames -> (900-16)//16 + 1 = 56
    assert expected_length(cfg, 60.0, 15.0) == 56
    assert expected_length(load_config("fineaction"), 60.0, 15.0) is None


def test_missing_annotation_file_and_cli_exit_code(tmp_path, capsys):
    assert cli_check_data(["--config", "hacs", "--data-root", str(tmp_path)]) == 1
    assert "annotation file missing" in capsys.readouterr().out


def test_thumos_dry_run_uses_the_real_file_and_reference_grid(tmp_path, thumos_json):
    info = make_dryrun_data("thumos14", tmp_path / "th", annotation_file=thumos_json, videos_per_split=2)
    assert json.loads((tmp_path / "th/annotations/thumos14.json").read_text()) == json.loads(thumos_json.read_text())
    assert len(info["videos"]) == 4
    for vid in info["videos"]:
        ref = feature_length(feature_path(tmp_path / "th/i3d_features", vid, "", ".npy"))
        mae = feature_length(feature_path(tmp_path / "th/mae_features", vid, "", ".npy"))
        assert abs(ref - mae) <= 3  # different lengths: the run must resample MAE onto the I3D grid
    report = check_data("thumos14", tmp_path / "th", ["dataset.missing_features=skip"], progress=False)
    assert report.ok and report.checked_files == 8


@pytest.mark.parametrize("headers_only", [False, True])
def test_empty_and_integer_feature_files(hacs_folder, headers_only):
    """--headers-only passed a file of 0 time steps (training then fails on it); integer features were cast to
    float32 without a word (quantised features, or labels saved by mistake, deserve a look)."""
    root, info = hacs_folder
    _only_chosen(root, info)
    cfg = load_config("hacs")
    empty, integer = info["videos"][:2]
    folder = root / "features"
    write_feature_file(feature_path(folder, empty, "v_", ".pkl"), np.zeros((0, cfg.dataset.input_dim), np.float32))
    length = feature_length(feature_path(folder, integer, "v_", ".pkl"))
    write_feature_file(feature_path(folder, integer, "v_", ".pkl"),
                       np.ones((length, cfg.dataset.input_dim), np.int32))
    report = check_data("hacs", root, progress=False, scan_values=not headers_only)
    assert not report.ok
    unusable = report.errors["feature file unusable"]
    assert len(unusable) == 1 and empty in unusable[0] and "holds no time steps" in unusable[0]
    (kind, items), = [(k, v) for k, v in report.warnings.items() if k.startswith("integer feature values")]
    assert items == [f"{feature_path(folder, integer, 'v_', '.pkl')}: int32"]
