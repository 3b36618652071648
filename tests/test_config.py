"""Config presets against SPEC §B's tables (typed in here by hand), merging, overrides and validation errors."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tal_kit.config import ConfigError, available_presets, config_from_dict, load_config, parse_override

# SPEC §B.1, column "IV thumos" (values marked "d" come from SPEC §B.0 DEFAULTS).
SPEC_THUMOS = {
    "train_split": ["validation"], "val_split": ["test"], "init_rand_seed": 1234567891,
    "dataset.file_prefix": "", "dataset.file_ext": ".npy", "dataset.num_classes": 20, "dataset.input_dim": 1408,
    "dataset.feat_stride": 4, "dataset.num_frames": 16, "dataset.default_fps": None, "dataset.downsample_rate": 1,
    "dataset.max_seq_len": 2304, "dataset.trunc_thresh": 0.5, "dataset.crop_ratio": [0.9, 1.0],
    "dataset.force_upsampling": False, "dataset.tiou_thresholds": [0.3, 0.4, 0.5, 0.6, 0.7],
    "model.backbone_type": "convTransformer", "model.backbone_arch": [2, 2, 5], "model.scale_factor": 2,
    "model.fpn_type": "identity", "model.n_head": 4, "model.embd_dim": 512, "model.fpn_dim": 512,
    "model.head_dim": 512, "model.n_mha_win_size": 19, "model.max_buffer_len_factor": 6.0,
    "model.use_abs_pe": False, "model.use_rel_pe": False,
    "model.regression_range": [[0, 4], [4, 8], [8, 16], [16, 32], [32, 64], [64, 10000]],
    "model.embd_kernel_size": 3, "model.head_kernel_size": 3, "model.head_num_layers": 3,
    "model.embd_with_ln": True, "model.fpn_with_ln": True, "model.head_with_ln": True,
    "train_cfg.center_sample": "radius", "train_cfg.center_sample_radius": 1.5, "train_cfg.loss_weight": 1.0,
    "train_cfg.cls_prior_prob": 0.01, "train_cfg.init_loss_norm": 100, "train_cfg.clip_grad_l2norm": 1.0,
    "train_cfg.head_empty_cls": [], "train_cfg.dropout": 0.0, "train_cfg.droppath": 0.1,
    "train_cfg.label_smoothing": 0.0,
    "test_cfg.pre_nms_thresh": 0.001, "test_cfg.pre_nms_topk": 2000, "test_cfg.iou_threshold": 0.1,
    "test_cfg.min_score": 0.001, "test_cfg.max_seg_num": 200, "test_cfg.nms_method": "soft",
    "test_cfg.nms_sigma": 0.5, "test_cfg.duration_thresh": 0.05, "test_cfg.multiclass_nms": True,
    "test_cfg.ext_score_file": None, "test_cfg.voting_thresh": 0.7, "test_cfg.voting_weight": "score",
    "test_cfg.soft_nms_kind": "gaussian",
    "opt.type": "AdamW", "opt.momentum": 0.9, "opt.learning_rate": 1e-4, "opt.weight_decay": 0.05,
    "opt.epochs": 45, "opt.warmup": True, "opt.warmup_epochs": 5, "opt.schedule_type": "cosine",
    "loader.batch_size": 2, "loader.num_workers": 4,
    "trainer.ema_decay": 0.999, "trainer.eval_start_epoch": 5, "trainer.deterministic": "strict",
}

# SPEC §B.1, column "IV anet".
SPEC_ANET = {
    "train_split": ["training"], "val_split": ["validation"], "init_rand_seed": 1234567891,
    "dataset.file_prefix": "v_", "dataset.file_ext": ".npy", "dataset.num_classes": 1, "dataset.input_dim": 1280,
    "dataset.feat_stride": 16, "dataset.num_frames": 16, "dataset.default_fps": 15, "dataset.downsample_rate": 1,
    "dataset.max_seq_len": 768, "dataset.trunc_thresh": 0.5, "dataset.crop_ratio": [0.9, 1.0],
    "dataset.force_upsampling": False,
    "dataset.tiou_thresholds": [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95],
    "model.backbone_type": "convTransformer", "model.backbone_arch": [2, 2, 5], "model.scale_factor": 2,
    "model.fpn_type": "identity", "model.n_head": 4, "model.embd_dim": 256, "model.fpn_dim": 256,
    "model.head_dim": 256, "model.n_mha_win_size": [25, 25, 25, 25, 25, -1], "model.max_buffer_len_factor": 1.0,
    "model.use_abs_pe": True, "model.use_rel_pe": False,
    "model.regression_range": [[0, 4], [4, 8], [8, 16], [16, 32], [32, 64], [64, 10000]],
    "model.embd_kernel_size": 3, "model.head_kernel_size": 3, "model.head_num_layers": 3,
    "train_cfg.center_sample": "radius", "train_cfg.center_sample_radius": 1.5, "train_cfg.loss_weight": 1.0,
    "train_cfg.cls_prior_prob": 0.01, "train_cfg.init_loss_norm": 400, "train_cfg.clip_grad_l2norm": 1.0,
    "train_cfg.head_empty_cls": [], "train_cfg.dropout": 0.0, "train_cfg.droppath": 0.1,
    "train_cfg.label_smoothing": 0.1,
    "test_cfg.pre_nms_thresh": 0.001, "test_cfg.pre_nms_topk": 2000, "test_cfg.iou_threshold": 0.1,
    "test_cfg.min_score": 0.001, "test_cfg.max_seg_num": 100, "test_cfg.nms_method": "soft",
    "test_cfg.nms_sigma": 0.75, "test_cfg.duration_thresh": 0.1, "test_cfg.multiclass_nms": False,
    "test_cfg.voting_thresh": 0.9, "test_cfg.voting_weight": "score",
    "opt.type": "AdamW", "opt.learning_rate": 1e-3, "opt.weight_decay": 0.05, "opt.epochs": 10,
    "opt.warmup": True, "opt.warmup_epochs": 5, "opt.schedule_type": "cosine",
    "loader.batch_size": 8, "loader.num_workers": 4,
    "trainer.ema_decay": 0.999, "trainer.eval_start_epoch": 5,
}


def _get(cfg, dotted: str):
    node = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


@pytest.mark.parametrize("preset,table", [("thumos14", SPEC_THUMOS), ("anet", SPEC_ANET)])
def test_preset_matches_spec_table(preset, table):
    cfg = load_config(preset)
    mismatches = {k: (_get(cfg, k), v) for k, v in table.items() if _get(cfg, k) != v}
    assert not mismatches, f"{preset} differs from SPEC §B: {mismatches}"


@pytest.mark.parametrize("preset,overrides", [
    # SPEC §B.1 columns "IV hacs" and "IV fineaction": the keys where they differ from anet.
    ("hacs", {"dataset.input_dim": 2560, "dataset.file_ext": ".pkl", "dataset.default_fps": 30,
              "dataset.max_seq_len": 2304, "loader.batch_size": 16, "opt.epochs": 20,
              "test_cfg.voting_thresh": 0.7, "dataset.num_classes": 1}),
    ("fineaction", {"dataset.input_dim": 1408, "dataset.file_ext": ".csv", "dataset.feat_stride": -1,
                    "dataset.max_seq_len": 192, "dataset.force_upsampling": True, "dataset.default_fps": 15,
                    "model.n_mha_win_size": [7, 7, 7, 7, 7, -1], "train_cfg.init_loss_norm": 200,
                    "train_cfg.loss_weight": 2.0, "test_cfg.duration_thresh": 0.001, "loader.batch_size": 16,
                    "opt.epochs": 20, "test_cfg.voting_thresh": 0.9}),
    ("thumos14_i3d", {"dataset.input_dim": 2048, "opt.epochs": 30, "dataset.reference_feat_folder": None}),
])
def test_other_presets_spec_values(preset, overrides):
    cfg = load_config(preset)
    mismatches = {k: (_get(cfg, k), v) for k, v in overrides.items() if _get(cfg, k) != v}
    assert not mismatches


@pytest.mark.parametrize("preset,expected", [
    # SPEC §B.1 "max_div_factor (derived)" row.
    ("thumos14", 576), ("anet", 384), ("hacs", 384), ("fineaction", 96), ("thumos14_i3d", 576),
])
def test_max_div_factor_matches_spec(preset, expected):
    assert load_config(preset).model.max_div_factor == expected


def test_all_presets_load_and_total_epochs():
    presets = available_presets()
    assert {"thumos14", "anet", "hacs", "fineaction", "thumos14_i3d", "demo"} <= set(presets)
    totals = {p: load_config(p).opt.total_epochs for p in ("thumos14", "anet", "hacs", "fineaction")}
    assert totals == {"thumos14": 50, "anet": 15, "hacs": 25, "fineaction": 25}  # SPEC "total epochs trained"


def test_dotted_overrides_are_typed():
    cfg = load_config("thumos14", ["opt.learning_rate=2e-4", "loader.batch_size=4", "dataset.crop_ratio=null",
                                   "test_cfg.multiclass_nms=false"])
    assert cfg.opt.learning_rate == pytest.approx(2e-4)
    assert cfg.loader.batch_size == 4
    assert cfg.dataset.crop_ratio is None
    assert cfg.test_cfg.multiclass_nms is False


def test_parse_override_reads_yaml_values():
    assert parse_override("model.n_mha_win_size=[7, 7, 7, 7, 7, -1]") == (["model", "n_mha_win_size"],
                                                                         [7, 7, 7, 7, 7, -1])
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_override("opt.learning_rate")


def test_unknown_key_suggests_the_close_one():
    with pytest.raises(ConfigError, match=r"unknown key 'opt.learning_rte'.*did you mean 'learning_rate'"):
        load_config("thumos14", ["opt.learning_rte=1e-3"])


def test_unknown_preset_suggests():
    with pytest.raises(ConfigError, match="did you mean 'thumos14'"):
        load_config("thumos")


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match=r"loader.batch_size must be an integer"):
        load_config("thumos14", ["loader.batch_size=two"])


def test_max_seq_len_not_divisible_is_rejected():
    with pytest.raises(ConfigError, match=r"max_seq_len \(2300\) must be divisible by 576"):
        load_config("thumos14", ["dataset.max_seq_len=2300"])


def test_regression_ranges_must_match_levels():
    with pytest.raises(ConfigError, match="5 ranges but the backbone has 6 pyramid levels"):
        load_config("thumos14", ["model.regression_range=[[0,4],[4,8],[8,16],[16,32],[32,10000]]"])


def test_window_list_length_and_parity():
    with pytest.raises(ConfigError, match="lists 5 windows for 6 pyramid levels"):
        load_config("anet", ["model.n_mha_win_size=[25,25,25,25,25]"])
    with pytest.raises(ConfigError, match="must be odd"):
        load_config("anet", ["model.n_mha_win_size=[24,25,25,25,25,-1]"])


def test_choice_fields_are_checked():
    with pytest.raises(ConfigError, match="test_cfg.nms_method = 'softer'"):
        load_config("thumos14", ["test_cfg.nms_method=softer"])


def test_yaml_file_path_and_base(tmp_path):
    custom = tmp_path / "mine.yaml"
    custom.write_text("base: anet\nopt:\n  epochs: 3\n")
    cfg = load_config(custom)
    assert cfg.name == "mine" and cfg.opt.epochs == 3 and cfg.dataset.input_dim == 1280


def test_round_trip_through_dict():
    cfg = load_config("fineaction")
    assert config_from_dict(cfg.to_dict()) == cfg


def test_cli_config_show_json():
    out = subprocess.run([sys.executable, "-m", "tal_kit", "config", "show", "anet", "--json"],
                         capture_output=True, text=True, check=True).stdout
    data = json.loads(out)
    assert data["dataset"]["input_dim"] == 1280 and data["derived"]["max_div_factor"] == 384


def test_cli_config_error_is_clear():
    proc = subprocess.run([sys.executable, "-m", "tal_kit", "config", "show", "anet", "--set", "opt.epoch=3"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "did you mean 'epochs'" in proc.stderr


@pytest.mark.parametrize("override, message", [
    # issue 15 item 3: a negative warmup made total_epochs 0, and a 0-epoch run reported finished: true
    ("opt.warmup_epochs=-1", r"opt\.warmup_epochs must be >= 0, got -1"),
    ("opt.learning_rate=1e400", r"opt\.learning_rate must be a finite number, got inf"),
    ("opt.learning_rate=.inf", r"opt\.learning_rate must be a finite number"),
    ("opt.learning_rate=1000", r"opt\.learning_rate must be in \(0, 1\], got 1000"),
    ("opt.learning_rate=0", r"opt\.learning_rate must be in \(0, 1\]"),
    ("loader.batch_size=0", r"loader\.batch_size must be >= 1, got 0"),
    ("loader.num_workers=-2", r"loader\.num_workers must be >= 0"),
    ("opt.epochs=0", r"opt\.epochs must be >= 1"),
    ("test_cfg.iou_threshold=1.5", r"test_cfg\.iou_threshold must be in \[0, 1\], got 1\.5"),
    ("test_cfg.pre_nms_thresh=-0.1", r"test_cfg\.pre_nms_thresh must be in \[0, 1\]"),
    ("train_cfg.cls_prior_prob=1", r"train_cfg\.cls_prior_prob must be in \(0, 1\)"),
    ("dataset.trunc_thresh=.nan", r"dataset\.trunc_thresh must be a finite number, got nan"),
    ("trainer.checkpoint_every=0", r"trainer\.checkpoint_every must be >= 1"),
])
def test_numeric_ranges_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("demo", [override])


def test_range_edges_that_are_allowed():
    cfg = load_config("demo", ["opt.warmup_epochs=0", "loader.num_workers=0", "test_cfg.iou_threshold=1",
                               "opt.learning_rate=1", "trainer.ema_decay=0"])
    assert cfg.opt.total_epochs == cfg.opt.epochs and cfg.test_cfg.iou_threshold == 1.0


def test_cli_config_show_rejects_what_train_would():
    """`config show` and `train` share one validation: batch size 0 is refused by both, with exit 2."""
    proc = subprocess.run([sys.executable, "-m", "tal_kit", "config", "show", "demo", "--set", "loader.batch_size=0"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "loader.batch_size must be >= 1, got 0" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_overrides_given_as_one_string_are_one_override():
    """A notebook's `overrides` parameter set from the papermill command line arrives as a string: iterating it
    gave one 'override' per character ('o', 'p', ...)."""
    from tal_kit.config import resolve_config

    assert load_config("demo", "opt.epochs=3").opt.epochs == 3
    assert resolve_config("demo", "loader.batch_size=2").loader.batch_size == 2
    assert load_config("demo", "").opt.epochs == load_config("demo").opt.epochs
    with pytest.raises(ConfigError, match="overrides must be a list"):
        load_config("demo", [3])
