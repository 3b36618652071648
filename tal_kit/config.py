"""Typed run configuration: YAML presets merged over defaults, dotted overrides, validation with clear errors.

Keys mirror the upstream ActionFormer YAML layout (``dataset``, ``loader``, ``model``, ``train_cfg``, ``test_cfg``,
``opt``), so the names here are the names in SPEC.md and in published configs. tal_kit adds a ``trainer`` block for
what upstream hard-codes (EMA decay, first evaluated epoch, determinism) and dataset options for the places where the
published code is ambiguous or differs between the InternVideo fork and upstream HEAD; every such option defaults to
the fork's behaviour.

Usage::

    cfg = load_config("thumos14", overrides=["opt.learning_rate=2e-4", "loader.batch_size=4"])
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

PRESET_DIR = Path(__file__).resolve().parent / "configs"
REPO_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(ValueError):
    """A configuration value is missing, unknown or inconsistent; the message names the source and the key."""


# ----------------------------------------------------------------------------------------------------------------------
# Schema. Defaults are upstream ActionFormer's DEFAULTS (SPEC §B.0) unless a comment says otherwise.
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class DatasetConfig:
    json_file: str = "annotations.json"  # annotation JSON, relative to data_root unless absolute
    feat_folder: str = "features"  # folder of per-video features fed to the model, relative to data_root
    # InternVideo resamples its MAE features onto the grid of another feature set (I3D for THUMOS, TSP for ANet):
    # when set, each video's length on that folder's files defines the grid (SPEC §A.4, §C.3).
    reference_feat_folder: str | None = None
    file_prefix: str = ""  # e.g. "v_" for ActivityNet-style file names
    file_ext: str = ".npy"  # .npy .npz .pt .pkl .csv
    num_classes: int = 97
    input_dim: int = 2304
    feat_stride: float = 16  # frames between consecutive features; <= 0 means fixed-length features
    num_frames: float = 32  # frames per clip (a feature describes the clip centred on its grid point)
    default_fps: float | None = None  # None: read fps from the annotation JSON
    downsample_rate: int = 1
    max_seq_len: int = 2304
    trunc_thresh: float = 0.5
    crop_ratio: list[float] | None = None
    force_upsampling: bool = False
    # Fixed-length grids: the fork sets num_frames = feat_stride * num_frames (an 8-cell shift for FineAction),
    # upstream HEAD sets num_frames = feat_stride. SPEC §C.3 [ambiguous].
    fixed_length_num_frames: str = "stride_x_frames"  # "stride_x_frames" (fork) | "stride" (AF HEAD)
    crop_window_offset: bool = False  # AF HEAD widens the crop window by the grid offset; the fork does not
    # force_upsampling with variable-length features (feat_stride > 0): the fork ignores it there (it only resizes
    # fixed-length features); AF HEAD's "case 2" resizes them to max_seq_len with stride ((T-1)*stride+frames)/len.
    variable_length_upsampling: str = "ignore"  # "ignore" (fork) | "resize" (AF HEAD case 2); SPEC §C.3
    remove_duplicates: bool = False  # drop duplicate training annotations (the ANet loader does)
    clip_segments_to_features: bool = False  # drop/clamp segments beyond the feature length (the fork's ANet fix)
    missing_features: str = "error"  # "error": list every missing file; "skip": skip those videos, counted
    tiou_thresholds: list[float] = field(default_factory=lambda: [0.3, 0.4, 0.5, 0.6, 0.7])


@dataclass
class LoaderConfig:
    batch_size: int = 8
    num_workers: int = 4
    # evaluation: at most this many videos per forward pass (and at most eval_batch_size x max_seq_len padded
    # steps); 1 is one video at a time. The detections are the same either way (see tal_kit.model.batching).
    eval_batch_size: int = 8


@dataclass
class ModelConfig:
    backbone_type: str = "convTransformer"
    fpn_type: str = "identity"  # "identity" | "fpn"
    backbone_arch: list[int] = field(default_factory=lambda: [2, 2, 5])
    scale_factor: int = 2
    regression_range: list[list[float]] = field(
        default_factory=lambda: [[0, 4], [4, 8], [8, 16], [16, 32], [32, 64], [64, 10000]])
    n_head: int = 4
    n_mha_win_size: int | list[int] = -1  # one window for every level, or one per level; <= 1 is global
    embd_kernel_size: int = 3
    embd_dim: int = 512
    embd_with_ln: bool = True
    fpn_dim: int = 512
    fpn_with_ln: bool = True
    head_dim: int = 512
    head_kernel_size: int = 3
    head_num_layers: int = 3
    head_with_ln: bool = True
    # Accepted (and range-checked) so that upstream YAMLs load, but unused: upstream sizes a fixed buffer of points
    # (max_seq_len x this factor); tal_kit makes the points for the lengths at hand (tal_kit.model.points).
    max_buffer_len_factor: float = 6.0
    use_abs_pe: bool = False
    use_rel_pe: bool = False

    @property
    def num_levels(self) -> int:
        """Pyramid levels: the stem's output plus one per branch block."""
        return self.backbone_arch[-1] + 1

    @property
    def window_sizes(self) -> list[int]:
        """Local attention window per pyramid level."""
        if isinstance(self.n_mha_win_size, int):
            return [self.n_mha_win_size] * self.num_levels
        return list(self.n_mha_win_size)

    @property
    def level_strides(self) -> list[int]:
        """Stride of each pyramid level in input steps: ``scale_factor ** level``."""
        return [self.scale_factor ** level for level in range(self.num_levels)]

    @property
    def max_div_factor(self) -> int:
        """The length every padded input must be divisible by (SPEC §D.1.7): max over levels of stride x 2h
        (local attention's chunks of a level with window w = 2h + 1), or the stride for global attention."""
        return max(stride * (window // 2) * 2 if window > 1 else stride
                   for stride, window in zip(self.level_strides, self.window_sizes))


@dataclass
class TrainConfig:
    center_sample: str = "radius"  # "radius" | "none"
    center_sample_radius: float = 1.5
    loss_weight: float = 1.0  # <= 0: balance the losses adaptively (SPEC §D.6)
    cls_prior_prob: float = 0.01
    init_loss_norm: float = 2000
    clip_grad_l2norm: float = -1
    head_empty_cls: list[int] = field(default_factory=list)
    dropout: float = 0.0
    droppath: float = 0.1
    label_smoothing: float = 0.0


@dataclass
class TestConfig:
    __test__ = False  # not a pytest test class

    pre_nms_thresh: float = 0.001
    pre_nms_topk: int = 5000
    iou_threshold: float = 0.1
    min_score: float = 0.01
    max_seg_num: int = 1000
    nms_method: str = "soft"  # "soft" | "hard" | "none"
    soft_nms_kind: str = "gaussian"  # upstream hard-codes Gaussian; "linear" is the other published variant
    nms_sigma: float = 0.5
    duration_thresh: float = 0.05  # feature-grid units
    multiclass_nms: bool = True
    voting_thresh: float = 0.75
    voting_weight: str = "score"  # "score" (fork, InternVideo) | "score_iou" (AF HEAD)
    ext_score_file: str | None = None  # video-level class scores for fusion (SPEC §B.3), relative to data_root
    fusion_topk: int = 2
    fusion_num_pred: int = 200
    # InternVideo softmaxes a score vector with any value outside [0, 1]; upstream uses the scores as they are.
    fusion_softmax: bool = True


@dataclass
class OptConfig:
    type: str = "AdamW"
    momentum: float = 0.9
    weight_decay: float = 0.0
    learning_rate: float = 1e-3
    epochs: int = 30  # after warmup
    warmup: bool = True
    warmup_epochs: int = 5
    schedule_type: str = "cosine"  # "cosine" | "multistep"
    schedule_steps: list[int] = field(default_factory=list)
    schedule_gamma: float = 0.1
    eta_min: float = 1e-8

    @property
    def total_epochs(self) -> int:
        """Epochs trained in all: ``epochs`` plus ``warmup_epochs`` when warmup is on (THUMOS: 45 + 5 = 50)."""
        return self.epochs + (self.warmup_epochs if self.warmup else 0)


@dataclass
class TrainerConfig:
    """What upstream's train_eval.py hard-codes (SPEC §A.3, §D.10)."""

    ema_decay: float = 0.999
    eval_start_epoch: int = 5  # 0-based epoch index from which the EMA model is evaluated each epoch
    deterministic: str = "strict"  # "strict" (InternVideo) | "warn" (upstream) | "off"
    amp: str = "none"  # "none" | "bf16" (GPU only)
    checkpoint_every: int = 1
    # true: pad every training batch to max_seq_len as the reference does (for parity checks); false: pad it only
    # to the length its longest crop needs. Same losses and gradients, fewer steps computed.
    pad_to_max_seq_len: bool = False


@dataclass
class Config:
    name: str = "custom"
    dataset_name: str = "custom"
    init_rand_seed: int = 1234567891
    train_split: list[str] = field(default_factory=lambda: ["training"])
    val_split: list[str] = field(default_factory=lambda: ["validation"])
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    loader: LoaderConfig = field(default_factory=LoaderConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train_cfg: TrainConfig = field(default_factory=TrainConfig)
    test_cfg: TestConfig = field(default_factory=TestConfig)
    opt: OptConfig = field(default_factory=OptConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------------------------------------------------
# Loading and merging
# ----------------------------------------------------------------------------------------------------------------------


def available_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def _preset_path(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.exists():
            raise ConfigError(f"config file {path} does not exist")
        return path
    candidate = PRESET_DIR / f"{name_or_path}.yaml"
    if not candidate.exists():
        hint = difflib.get_close_matches(str(name_or_path), available_presets(), n=1)
        extra = f"; did you mean '{hint[0]}'?" if hint else ""
        raise ConfigError(f"unknown preset '{name_or_path}' (presets: {', '.join(available_presets())}){extra}")
    return candidate


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive merge: mappings merge key by key, everything else (lists included) replaces."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _load_with_bases(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A preset may name another with ``base: <preset>``; the base is loaded first and this file merged over it."""
    if path in seen:
        raise ConfigError(f"{path}: circular 'base' chain: {' -> '.join(map(str, seen + (path,)))}")
    data = _read_yaml(path)
    base = data.pop("base", None)
    if base is None:
        return data
    return _merge(_load_with_bases(_preset_path(base), seen + (path,)), data)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"opt.learning_rate=1e-4"`` -> (["opt", "learning_rate"], 0.0001). Values are parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.key=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        detail = str(getattr(err, "problem", None) or err).splitlines()[0]
        raise ConfigError(f"override '{text}': the value is not valid YAML ({detail}); quote strings and write "
                          f"lists as [a, b]") from None
    # YAML 1.1 reads "1e-4" as a string; accept plain float syntax too.
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value for c in ".eE") else value
        except ValueError:
            pass
    return key.strip().split("."), value


def _apply_override(data: dict[str, Any], path: list[str], value: Any) -> None:
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {'.'.join(path)}: '{part}' is not a section")
    node[path[-1]] = value


def _unknown_key_error(source: str, section: str, key: str, known: list[str]) -> ConfigError:
    where = f"{section}.{key}" if section else key
    hint = difflib.get_close_matches(key, known, n=1)
    extra = f"; did you mean '{hint[0]}'?" if hint else ""
    return ConfigError(f"{source}: unknown key '{where}'{extra}")


def _coerce(value: Any, hint: Any, source: str, where: str) -> Any:
    """Check a YAML value against a field's type, converting the harmless cases (int -> float, tuple -> list)."""
    origin = get_origin(hint)
    if origin is Union or origin is types.UnionType:  # typing.Optional[X] (older annotations) or X | None
        options = get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, source, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{source}: {where} = {value!r} has the wrong type (expected {hint})")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {where} must be a list, got {value!r}")
        (item_hint,) = get_args(hint) or (Any,)
        return [_coerce(v, item_hint, source, f"{where}[{i}]") for i, v in enumerate(value)]
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {where} must be true or false, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: {where} must be a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise ConfigError(f"{source}: {where} must be an integer, got {value!r}")
        return int(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {where} must be a string, got {value!r}")
        return value
    raise ConfigError(f"{source}: {where}: unsupported type {hint}")


def _build(cls: type, data: dict[str, Any], source: str, section: str = "") -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: '{section}' must be a mapping, got {data!r}")
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise _unknown_key_error(source, section, key, names)
        hint = hints[key]
        where = f"{section}.{key}" if section else key
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value or {}, source, key)
        else:
            kwargs[key] = _coerce(value, hint, source, where)
    return cls(**kwargs)


def as_override_list(overrides: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """Overrides as a list: a single string is one override (a notebook parameter given on the papermill command
    line arrives as a string, which iterating would split into characters); "" and None are none."""
    if overrides is None:
        return []
    if isinstance(overrides, str):
        return [overrides] if overrides.strip() else []
    if not isinstance(overrides, (list, tuple)) or not all(isinstance(o, str) for o in overrides):
        raise ConfigError(f"overrides must be a list of 'section.key=value' strings, got {overrides!r}")
    return list(overrides)


def load_config(name_or_path: str | Path = "demo",
                overrides: str | list[str] | tuple[str, ...] | None = None) -> Config:
    """Load a preset (by name) or YAML file, apply ``section.key=value`` overrides, validate, and return a Config."""
    overrides = as_override_list(overrides)
    path = _preset_path(name_or_path)
    data = _load_with_bases(path)
    data.setdefault("name", path.stem)
    for text in overrides or []:
        key_path, value = parse_override(text)
        _apply_override(data, key_path, value)
    source = f"{path}" + (f" with overrides {overrides}" if overrides else "")
    cfg = _build(Config, data, source)
    validate(cfg, source)
    return cfg


def config_from_dict(data: dict[str, Any], source: str = "<dict>") -> Config:
    """Rebuild a Config from ``Config.to_dict()`` output (e.g. the copy stored in a checkpoint)."""
    cfg = _build(Config, data, source)
    validate(cfg, source)
    return cfg


# ----------------------------------------------------------------------------------------------------------------------
# Validation: catch at load time what would otherwise fail deep inside a training run
# ----------------------------------------------------------------------------------------------------------------------

_CHOICES = {
    ("dataset", "file_ext"): (".npy", ".npz", ".pt", ".pth", ".pkl", ".csv"),
    ("dataset", "fixed_length_num_frames"): ("stride_x_frames", "stride"),
    ("dataset", "variable_length_upsampling"): ("ignore", "resize"),
    ("dataset", "missing_features"): ("error", "skip"),
    ("model", "backbone_type"): ("convTransformer",),
    ("model", "fpn_type"): ("identity", "fpn"),
    ("train_cfg", "center_sample"): ("radius", "none"),
    ("test_cfg", "nms_method"): ("soft", "hard", "none"),
    ("test_cfg", "soft_nms_kind"): ("gaussian", "linear"),
    ("test_cfg", "voting_weight"): ("score", "score_iou"),
    ("opt", "type"): ("AdamW", "SGD"),
    ("opt", "schedule_type"): ("cosine", "multistep"),
    ("trainer", "deterministic"): ("strict", "warn", "off"),
    ("trainer", "amp"): ("none", "bf16"),
}


# Numeric ranges, checked once here so that no command accepts what another one rejects later:
# (section, key) -> (low, high, kind) where kind says which ends are included: "[]", "[)", "(]", "()".
# None means unbounded on that side. Every float field must also be finite (no nan, no inf).
_RANGES: dict[tuple[str, str], tuple[float | None, float | None, str]] = {
    ("loader", "batch_size"): (1, None, "[]"),
    ("loader", "num_workers"): (0, None, "[]"),
    ("loader", "eval_batch_size"): (1, None, "[]"),
    ("dataset", "trunc_thresh"): (0, 1, "[]"),
    ("dataset", "max_seq_len"): (1, None, "[]"),
    ("model", "scale_factor"): (1, None, "[]"),
    ("model", "n_head"): (1, None, "[]"),
    ("model", "max_buffer_len_factor"): (0, None, "()"),
    ("train_cfg", "center_sample_radius"): (0, None, "()"),
    ("train_cfg", "cls_prior_prob"): (0, 1, "()"),
    ("train_cfg", "init_loss_norm"): (0, None, "()"),
    ("train_cfg", "dropout"): (0, 1, "[)"),
    ("train_cfg", "droppath"): (0, 1, "[)"),
    ("train_cfg", "label_smoothing"): (0, 1, "[)"),
    ("test_cfg", "pre_nms_thresh"): (0, 1, "[]"),
    ("test_cfg", "pre_nms_topk"): (1, None, "[]"),
    ("test_cfg", "iou_threshold"): (0, 1, "[]"),
    ("test_cfg", "min_score"): (0, 1, "[]"),
    ("test_cfg", "max_seg_num"): (1, None, "[]"),
    ("test_cfg", "nms_sigma"): (0, None, "()"),
    ("test_cfg", "duration_thresh"): (0, None, "[]"),
    ("test_cfg", "voting_thresh"): (0, 1, "[]"),
    ("test_cfg", "fusion_topk"): (1, None, "[]"),
    ("test_cfg", "fusion_num_pred"): (1, None, "[]"),
    ("opt", "learning_rate"): (0, 1, "(]"),  # an lr above 1 is a typo for AdamW/SGD: the loss turns NaN
    ("opt", "momentum"): (0, 1, "[)"),
    ("opt", "weight_decay"): (0, None, "[]"),
    ("opt", "epochs"): (1, None, "[]"),
    ("opt", "warmup_epochs"): (0, None, "[]"),
    ("opt", "schedule_gamma"): (0, None, "()"),
    ("opt", "eta_min"): (0, None, "[]"),
    ("trainer", "ema_decay"): (0, 1, "[)"),
    ("trainer", "eval_start_epoch"): (0, None, "[]"),
    ("trainer", "checkpoint_every"): (1, None, "[]"),
}


def _range_text(low: float | None, high: float | None, kind: str) -> str:
    if high is None:
        return f"{'>=' if kind[0] == '[' else '>'} {low:g}"
    return f"in {kind[0]}{low:g}, {high:g}{kind[1]}"


def _in_range(value: float, low: float | None, high: float | None, kind: str) -> bool:
    if low is not None and (value < low or (kind[0] == "(" and value == low)):
        return False
    return high is None or (value < high or (kind[1] == "]" and value == high))


def _check_finite_floats(cfg: Config, fail) -> None:
    """No float field may be nan or inf (YAML's .nan/.inf or an overflowing literal like 1e400)."""
    import math

    for section in dataclasses.fields(cfg):
        block = getattr(cfg, section.name)
        if not dataclasses.is_dataclass(block):
            continue
        for item in dataclasses.fields(block):
            value = getattr(block, item.name)
            values = value if isinstance(value, list) else [value]
            flat = [v for x in values for v in (x if isinstance(x, list) else [x])]
            if any(isinstance(v, float) and not math.isfinite(v) for v in flat):
                fail(f"{section.name}.{item.name} must be a finite number, got {value!r}")


def validate(cfg: Config, source: str = "config") -> None:
    """Raise ConfigError naming the key when values are inconsistent with each other or with the architecture."""

    def fail(message: str) -> None:
        raise ConfigError(f"{source}: {message}")

    for (section, key), choices in _CHOICES.items():
        value = getattr(getattr(cfg, section), key)
        if value not in choices:
            fail(f"{section}.{key} = {value!r}; expected one of {', '.join(map(repr, choices))}")
    _check_finite_floats(cfg, fail)
    for (section, key), (low, high, kind) in _RANGES.items():
        value = getattr(getattr(cfg, section), key)
        if not _in_range(value, low, high, kind):
            fail(f"{section}.{key} must be {_range_text(low, high, kind)}, got {value!r}")
    for step in cfg.opt.schedule_steps:
        if step < 0:
            fail(f"opt.schedule_steps must hold epoch indices >= 0, got {cfg.opt.schedule_steps}")

    d, m = cfg.dataset, cfg.model
    for key in ("num_classes", "input_dim", "max_seq_len", "downsample_rate"):
        if getattr(d, key) <= 0:
            fail(f"dataset.{key} must be positive, got {getattr(d, key)}")
    if d.feat_stride > 0 and d.num_frames <= 0:
        fail(f"dataset.num_frames must be positive, got {d.num_frames}")
    if d.default_fps is not None and d.default_fps <= 0:
        fail(f"dataset.default_fps must be positive or null, got {d.default_fps}")
    if d.crop_ratio is not None and not (len(d.crop_ratio) == 2 and 0 < d.crop_ratio[0] <= d.crop_ratio[1] <= 1):
        fail(f"dataset.crop_ratio must be [low, high] with 0 < low <= high <= 1, got {d.crop_ratio}")
    if not d.tiou_thresholds or not all(0 < x <= 1 for x in d.tiou_thresholds):
        fail(f"dataset.tiou_thresholds must be a non-empty list of values in (0, 1], got {d.tiou_thresholds}")
    if not cfg.train_split or not cfg.val_split:
        fail("train_split and val_split must name at least one subset each")

    if len(m.backbone_arch) != 3 or min(m.backbone_arch) < 0:
        fail(f"model.backbone_arch must be three non-negative integers (embedding, stem, branch), got {m.backbone_arch}")
    if len(m.regression_range) != m.num_levels:
        fail(f"model.regression_range has {len(m.regression_range)} ranges but the backbone has {m.num_levels} "
             f"pyramid levels (backbone_arch[2] + 1)")
    for level, bounds in enumerate(m.regression_range):
        if len(bounds) != 2 or bounds[0] > bounds[1]:
            fail(f"model.regression_range[{level}] must be [low, high] with low <= high, got {bounds}")
    if isinstance(m.n_mha_win_size, list) and len(m.n_mha_win_size) != m.num_levels:
        fail(f"model.n_mha_win_size lists {len(m.n_mha_win_size)} windows for {m.num_levels} pyramid levels")
    for level, window in enumerate(m.window_sizes):
        if window > 1 and window % 2 == 0:
            fail(f"model.n_mha_win_size at level {level} is {window}; local windows must be odd (2h+1 keys)")
    if m.embd_dim % m.n_head != 0:
        fail(f"model.embd_dim ({m.embd_dim}) must be divisible by model.n_head ({m.n_head})")
    if m.fpn_type == "identity" and m.fpn_dim != m.embd_dim:
        fail(f"model.fpn_type 'identity' needs fpn_dim == embd_dim, got {m.fpn_dim} and {m.embd_dim}")
    if d.max_seq_len % cfg.model.max_div_factor != 0:
        fail(f"dataset.max_seq_len ({d.max_seq_len}) must be divisible by {cfg.model.max_div_factor}, the largest "
             f"level stride x local-attention span (scale_factor^level x 2*(window//2)) of this model")
    for cls_id in cfg.train_cfg.head_empty_cls:
        if not 0 <= cls_id < d.num_classes:
            fail(f"train_cfg.head_empty_cls contains {cls_id}, outside 0..{d.num_classes - 1}")


# ----------------------------------------------------------------------------------------------------------------------
# Paths and display
# ----------------------------------------------------------------------------------------------------------------------


def default_data_root(cfg: Config) -> Path:
    """Where a preset's data lives unless told otherwise: data/<preset name> in the repository."""
    return REPO_ROOT / "data" / cfg.name


def resolve_path(cfg: Config, data_root: str | Path | None, relative: str | None) -> Path | None:
    """A dataset path from the config, resolved against data_root (absolute paths are kept as they are)."""
    if relative is None:
        return None
    path = Path(relative)
    if path.is_absolute():
        return path
    root = Path(data_root) if data_root is not None else default_data_root(cfg)
    return root / path


def dump_config(cfg: Config, as_json: bool = False) -> str:
    data = cfg.to_dict()
    data["derived"] = {"max_div_factor": cfg.model.max_div_factor, "num_levels": cfg.model.num_levels,
                       "window_sizes": cfg.model.window_sizes, "total_epochs": cfg.opt.total_epochs}
    if as_json:
        return json.dumps(data, indent=2)
    return yaml.safe_dump(data, sort_keys=False)


# ----------------------------------------------------------------------------------------------------------------------
# A run: which config, which folders (the one owner of these rules for the CLI, reproduce and the notebooks)
# ----------------------------------------------------------------------------------------------------------------------

# What a smoke run (``--quick``, the notebooks' ``quick``) changes: two epochs (one of warmup), both evaluated, no
# worker processes, and determinism that warns instead of failing on a GPU op without a deterministic kernel.
QUICK_OVERRIDES: tuple[str, ...] = ("opt.epochs=1", "opt.warmup_epochs=1", "trainer.eval_start_epoch=0",
                                    "loader.num_workers=0", "trainer.deterministic=warn")


def resolve_config(config: str | Path | Config, overrides: str | list[str] | tuple[str, ...] | None = None,
                   seed: int | None = None) -> Config:
    """A Config from a preset name/YAML path (+ overrides), or the Config itself; ``seed`` >= 0 replaces the seed
    (-1 and None keep the config's ``init_rand_seed``)."""
    cfg = config if isinstance(config, Config) else load_config(config, as_override_list(overrides))
    if seed is not None and seed >= 0:
        cfg.init_rand_seed = int(seed)
    return cfg


@dataclass(frozen=True)
class RunPaths:
    """The folders of one run: where the data is read, where outputs and figures are written."""

    data_root: Path
    run_dir: Path
    figure_dir: Path


def run_paths(cfg: Config, data_root: str | Path | None = None, run_dir: str | Path | None = None,
              figure_dir: str | Path | None = None, *, quick: bool = False) -> RunPaths:
    """The folders of a run; each one given ("" counts as not given, as in the notebooks' parameters) is kept.

    * data root: data/<preset> in the repository;
    * run folder: runs/<preset>, or runs/<preset>-quick for ``quick`` (reproduce's smoke run gets its own folder:
      notebook 04 resumes, and must not resume a full run with quick settings);
    * figures: figures/<preset> in the repository for the preset's default run (runs/<preset>); for any other run
      folder (a quick run, a seed, a run elsewhere) RUN_DIR/figures, so that such a run never overwrites the full
      run's figures.
    """
    default_run = REPO_ROOT / "runs" / cfg.name
    data = Path(data_root) if data_root else default_data_root(cfg)
    run = Path(run_dir) if run_dir else default_run.with_name(f"{cfg.name}-quick") if quick else default_run
    if figure_dir:
        figures = Path(figure_dir)
    elif run.resolve() == default_run.resolve():
        figures = REPO_ROOT / "figures" / cfg.name
    else:
        figures = run / "figures"
    return RunPaths(data_root=data, run_dir=run, figure_dir=figures)
