"""``python -m tal_kit`` / ``tal-kit``: one entry point, one subcommand per job.

Each subcommand lives in the module that owns the work; this file only dispatches (imports are lazy so that
``tal-kit config show`` does not pay for torch's import).
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable

# name -> (module, function, one-line help). Each function takes the remaining argv and returns an exit code.
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "config": ("tal_kit.__main__", "cli_config", "show a fully resolved config preset"),
    "demo-data": ("tal_kit.data.demo", "cli_demo_data", "generate the embedded synthetic demo dataset"),
    "check-data": ("tal_kit.check_data", "cli_check_data", "validate a real data folder before a long run"),
    "dry-run-data": ("tal_kit.dryrun", "cli_dry_run_data", "real annotation format + synthetic features, for smoke runs"),
    "train": ("tal_kit.train", "cli_train", "train ActionFormer (torchrun for several GPUs/processes)"),
    "infer": ("tal_kit.infer", "cli_infer", "run a checkpoint over a split and write detections"),
    "evaluate": ("tal_kit.evaluate", "cli_evaluate", "ActivityNet detection mAP of a results JSON"),
    "extract": ("tal_kit.extraction.cli", "cli_extract", "features from raw videos (VideoMAE/VideoMAEv2 ViT)"),
    "compare-features": ("tal_kit.compare_features", "cli_compare_features",
                         "compare two feature folders (cosine, rel. L2, lag)"),
    "viz": ("tal_kit.viz.cli", "cli_viz", "timelines HTML + report figures of a run folder"),
    "reproduce": ("tal_kit.reproduce", "cli_reproduce", "run notebooks 01-06 for a preset with papermill"),
    "build-ext": ("tal_kit.ops", "cli_build_ext", "compile the NMS extension ahead of time"),
    "info": ("tal_kit.__main__", "cli_info", "versions, devices and the NMS backend in use"),
}


def cli_config(argv: list[str]) -> int:
    """``tal-kit config show PRESET [--json] [--set k=v ...]``"""
    from tal_kit.config import ConfigError, dump_config, load_config

    parser = argparse.ArgumentParser(prog="tal-kit config", description="Show a fully resolved config.")
    parser.add_argument("action", choices=["show"])
    parser.add_argument("preset", help="preset name or path to a YAML file")
    parser.add_argument("--json", action="store_true", help="print JSON instead of YAML")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="dotted override, e.g. opt.learning_rate=1e-4 (repeatable)")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.preset, args.overrides)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(dump_config(cfg, as_json=args.json))
    return 0


def cli_info(argv: list[str]) -> int:
    """``tal-kit info``: what a bug report needs."""
    import platform

    import torch

    import tal_kit

    print(f"tal_kit {tal_kit.__version__}  python {platform.python_version()}  torch {torch.__version__}"
          f"  (CUDA build: {torch.version.cuda or 'no'})")
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        print(f"GPUs: {names}")
    else:
        print("GPUs: none visible")
    try:
        ops = importlib.import_module("tal_kit.ops")
        for line in ops.cli_info_lines():
            print(line)
    except (ImportError, AttributeError) as err:
        print(f"NMS: unavailable ({err})")
    return 0


def _resolve(name: str) -> Callable[[list[str]], int]:
    module_name, func_name, _ = SUBCOMMANDS[name]
    module = importlib.import_module(module_name)
    return getattr(module, func_name)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m tal_kit <command> [options]\n\ncommands:")
        for name, (_, _, help_text) in SUBCOMMANDS.items():
            print(f"  {name:<16} {help_text}")
        print("\n'python -m tal_kit <command> --help' shows a command's options.")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        import difflib

        hint = difflib.get_close_matches(name, SUBCOMMANDS, n=1)
        print(f"error: unknown command '{name}'" + (f"; did you mean '{hint[0]}'?" if hint else ""), file=sys.stderr)
        return 2
    return int(_resolve(name)(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
