"""``tal-kit extract VIDEO_OR_FOLDER... --out DIR``: raw videos -> feature files a preset reads.

With ``--preset NAME`` the preset decides the grid (``feat_stride``, ``num_frames``, its fps when it fixes one),
the backbone (by ``input_dim``: 1408 -> vit-g/14, 1280 -> vit-h/16, ...) and where files go: ``--out`` is then the
data root and the features land in the preset's ``feat_folder`` with its ``file_prefix`` and format (``.npy`` for
thumos14/anet, ``.csv`` for fineaction), [T, C] float32. Fixed-length presets (fineaction) get VideoMAEv2's
FineAction stride of 16 at native fps.
Without a preset ``--out`` is the feature folder itself. Bad input: one line, exit 2 (tal_kit.cli's rule). Bad
videos are skipped, listed at the end, and make the exit status 1.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from tal_kit.cli import UsageError, add_common_options

if TYPE_CHECKING:
    from tal_kit.config import Config
    from tal_kit.extraction.checkpoints import LoadedBackbone

__all__ = ["cli_extract", "build_parser", "add_backbone_options", "backbone_from_args", "EXAMPLE_COMMAND"]

EXAMPLE_COMMAND = ("python -m tal_kit extract data/thumos14/videos --out data/thumos14 --preset thumos14 "
                   "--checkpoint vit_g_hybrid_pt_1200e_k710_ft.pth --device cuda --dtype bf16 --batch-size 32")

ARCH_FLAGS = ("embed_dim", "depth", "num_heads", "mlp_dim", "patch_size", "tubelet_size", "img_size")


def add_backbone_options(p: argparse.ArgumentParser, *, weights_flag: str = "--checkpoint",
                         backbone_default: str = "the preset's, else vit-g/14") -> None:
    """The options that name a feature backbone and how it runs, for every command that extracts features
    (``extract``; ``detect``, whose own ``--checkpoint`` is the detector's, names the weights
    ``--backbone-checkpoint``)."""
    from tal_kit.extraction.checkpoints import BACKBONES
    from tal_kit.extraction.recipes import RECIPES

    p.add_argument("--backbone", choices=list(BACKBONES), help=f"named architecture (default: {backbone_default}); "
                   "shapes in the checkpoint override width/depth/patch/tubelet/MLP")
    p.set_defaults(weights_flag=weights_flag)  # for the message when neither weights option is given
    weights = p.add_mutually_exclusive_group()
    weights.add_argument(weights_flag, dest="backbone_checkpoint",
                         help="local checkpoint: .pth/.pt/.bin/.safetensors or a Hugging Face dir")
    weights.add_argument("--random-weights", action="store_true",
                         help="random weights (shows the pipeline; the features carry no semantics)")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="allow a checkpoint pickle holding non-tensor objects (this runs code from the file)")
    p.add_argument("--seed", type=int, default=0, help="seed for --random-weights")
    p.add_argument("--recipe", choices=list(RECIPES), default="videomae2_tad", help="pixel preprocessing")
    p.add_argument("--batch-size", type=int, default=16, help="clips per forward pass")
    p.add_argument("--dtype", choices=["auto", "fp32", "bf16", "fp16"], default="auto",
                   help="auto: bf16 on GPU, fp32 on CPU")
    for name in ARCH_FLAGS:
        p.add_argument(f"--{name.replace('_', '-')}", type=int, help=f"override the architecture's {name}")
    p.add_argument("--norm-eps", type=float, help="override the block LayerNorm eps")
    p.add_argument("--fc-norm-eps", type=float, help="override the pooled LayerNorm eps")


def backbone_from_args(args: argparse.Namespace, name: str, *, num_frames: int, command: str) -> LoadedBackbone:
    """The backbone :func:`add_backbone_options`' options describe: architecture ``name`` with the flags'
    overrides, clips of ``num_frames`` frames, random or loaded weights."""
    from tal_kit.extraction.checkpoints import load_backbone, random_backbone

    if args.batch_size < 1:
        raise UsageError("--batch-size must be >= 1")
    overrides = {k: getattr(args, k) for k in ARCH_FLAGS}
    overrides.update(norm_eps=args.norm_eps, fc_norm_eps=args.fc_norm_eps, num_frames=num_frames)
    if args.random_weights:
        return random_backbone(name, seed=args.seed, **overrides)
    if not args.backbone_checkpoint:
        raise UsageError(f"{command}: name the backbone's weights ({args.weights_flag}) or pass --random-weights")
    print(f"{command}: loading {args.backbone_checkpoint} ...", file=sys.stderr)
    return load_backbone(args.backbone_checkpoint, name, trust=args.trust_checkpoint, **overrides)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tal-kit extract", description=__doc__.split("\n\n")[0],
                                epilog=f"example: {EXAMPLE_COMMAND}")
    p.add_argument("videos", nargs="+", help="video files and/or folders (searched recursively)")
    p.add_argument("--out", required=True, help="the data root with --preset, else the feature folder")
    p.add_argument("--preset", help="a config preset (thumos14, anet, fineaction, demo, or a YAML file)")
    add_common_options(p, "set", help_texts={"set": "config override for --preset (repeatable)"})
    add_backbone_options(p)
    p.add_argument("--stride", type=int, help="frames between clip starts (default: preset's feat_stride, else 4)")
    p.add_argument("--clip-len", type=int, help="frames per clip (default: preset's num_frames, else 16)")
    p.add_argument("--resample-fps", type=float, help="resample to this constant fps by timestamps first "
                   "(default: the preset's default_fps when it fixes one, else native frames)")
    add_common_options(p, "device")
    p.add_argument("--shard", help="i/n: this process takes videos i, i+n, ... (default under torchrun: its rank)")
    p.add_argument("--annotations", help="where the ActionFormer JSON for unannotated videos goes (default: the "
                   "preset's json_file when absent, else <feature folder>/video_info.json)")
    p.add_argument("--subset", help="subset name in that JSON (default: the preset's first val_split, else test)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _grid_from(args: argparse.Namespace, cfg: Config | None) -> tuple[int, int, float | None]:
    from tal_kit.extraction.features import ClipSettings, preset_clip_settings

    preset = preset_clip_settings(cfg) if cfg is not None else ClipSettings()  # the preset's grid, else 4/16 native
    stride = args.stride or preset.stride
    clip_len = args.clip_len or preset.clip_len
    fps = args.resample_fps if args.resample_fps is not None else preset.resample_fps
    if fps is not None and not fps > 0:
        raise UsageError(f"--resample-fps must be > 0, got {fps}")
    if stride < 1 or clip_len < 1:
        raise UsageError(f"--stride and --clip-len must be >= 1 (got {stride}, {clip_len})")
    return stride, clip_len, fps


def _device_and_dtype(args: argparse.Namespace) -> tuple[str, str, tuple[int, int]]:
    import os

    from tal_kit.extraction.runner import resolve_shard
    from tal_kit.runtime import resolve_device

    shard = resolve_shard(args.shard)
    device = str(resolve_device(args.device, int(os.environ.get("LOCAL_RANK", "0"))))  # each torchrun rank its GPU
    dtype = args.dtype if args.dtype != "auto" else ("bf16" if device.startswith("cuda") else "fp32")
    return device, dtype, shard


def _run(args: argparse.Namespace) -> int:
    from tal_kit.config import load_config, resolve_path
    from tal_kit.extraction.checkpoints import backbone_for_dim
    from tal_kit.extraction.features import ClipSettings
    from tal_kit.extraction.recipes import get_recipe
    from tal_kit.extraction.runner import find_videos, run_extraction

    cfg = load_config(args.preset, args.overrides) if args.preset else None
    stride, clip_len, fps = _grid_from(args, cfg)
    videos = find_videos(args.videos)  # cheap checks first: building a ViT-g takes a while
    device, dtype, shard = _device_and_dtype(args)
    backbone_name = args.backbone
    if backbone_name is None and cfg is not None:
        backbone_name = backbone_for_dim(cfg.dataset.input_dim)
        if backbone_name is None and args.embed_dim is None:
            raise UsageError(f"--preset {args.preset}: no named backbone gives dataset.input_dim = "
                            f"{cfg.dataset.input_dim} features (no published recipe is known for it); pass "
                            "--backbone and the architecture flags")
    backbone_name = backbone_name or "vit-g/14"
    backbone = backbone_from_args(args, backbone_name, num_frames=clip_len, command="extract")
    if cfg is not None and backbone.model.feature_dim != cfg.dataset.input_dim:
        raise UsageError(f"--preset {args.preset}: dataset.input_dim is {cfg.dataset.input_dim} but the backbone "
                        f"gives {backbone.model.feature_dim}-d features")
    out = Path(args.out)
    file_prefix, file_ext = "", ".npy"
    feature_dir = out
    annotations = Path(args.annotations) if args.annotations else None
    subset = args.subset or "test"
    if cfg is not None:
        d = cfg.dataset
        file_ext = d.file_ext
        feature_dir = resolve_path(cfg, out, d.feat_folder)
        file_prefix = d.file_prefix or ""
        subset = args.subset or (cfg.val_split[0] if cfg.val_split else "test")
        if annotations is None:
            preset_json = resolve_path(cfg, out, d.json_file)
            ours = preset_json.exists() and '"written_by": "tal_kit extract"' in preset_json.read_text()[:4096]
            annotations = preset_json if (not preset_json.exists() or ours) else None
    if annotations is None:
        annotations = feature_dir / "video_info.json"
    grid = ClipSettings(stride, clip_len, fps)
    recipe = get_recipe(args.recipe, backbone.model.arch.img_size)
    print(f"extract: {len(videos)} video(s), shard {shard[0]}/{shard[1]}, {backbone.name} "
          f"{backbone.model.feature_dim}-d ({backbone.checkpoint}), {recipe.describe()}, clips of {clip_len} every "
          f"{stride} frames{f' at {fps:g} fps' if fps else ' at native fps'}, {device} {dtype}, batch "
          f"{args.batch_size} -> {feature_dir}", file=sys.stderr)
    report = run_extraction(videos, feature_dir, backbone, recipe, grid, batch_size=args.batch_size, device=device,
                            dtype=dtype, shard=shard, file_prefix=file_prefix, file_ext=file_ext,
                            annotations=annotations, subset=subset,
                            num_classes=cfg.dataset.num_classes if cfg is not None else None,
                            progress=not args.no_progress)
    print(report.render())
    print(f"manifest: {feature_dir / 'manifest.json'}; annotations without segments: {annotations}")
    return 0 if report.ok else 1


def cli_extract(argv: list[str]) -> int:
    """Entry point of ``tal-kit extract`` (see the module docstring)."""
    return _run(build_parser().parse_args(argv))
