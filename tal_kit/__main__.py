"""``python -m tal_kit`` / ``tal-kit``: one entry point, one subcommand per job.

This file is the dispatch table: each subcommand lives in the module that owns the work, and is imported only when
it runs (so that ``tal-kit config show`` does not pay for torch's import). The common options and the error rule
(bad input: one ``error: ...`` line, exit status 2; a bug keeps its traceback) are in :mod:`tal_kit.cli`.
"""
from __future__ import annotations

import importlib
import sys
from typing import Callable

# name -> (module, function, one-line help). Each function takes the remaining argv and returns an exit code.
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "config": ("tal_kit.cli", "cli_config", "show a fully resolved config preset"),
    "demo-data": ("tal_kit.data.demo", "cli_demo_data", "generate the embedded synthetic demo dataset"),
    "fetch": ("tal_kit.fetch", "cli_fetch", "download the VideoMAEv2-g features of thumos14/fineaction (HF hub)"),
    "check-data": ("tal_kit.check_data", "cli_check_data", "validate a real data folder before a long run"),
    "dry-run-data": ("tal_kit.dryrun", "cli_dry_run_data", "real annotation format + synthetic features (smoke runs)"),
    "train": ("tal_kit.train", "cli_train", "train ActionFormer (torchrun for several GPUs/processes)"),
    "infer": ("tal_kit.infer", "cli_infer", "run a checkpoint over a split and write detections"),
    "evaluate": ("tal_kit.evaluate", "cli_evaluate", "ActivityNet detection mAP of a results JSON"),
    "extract": ("tal_kit.extraction.cli", "cli_extract", "features from raw videos (VideoMAE/VideoMAEv2 ViT)"),
    "demo-videos": ("tal_kit.data.demo_videos", "cli_demo_videos", "short synthetic videos with visible actions"),
    "detect": ("tal_kit.detect", "cli_detect", "videos -> detections (seconds) + an HTML report beside the video"),
    "compare-features": ("tal_kit.compare_features", "cli_compare_features",
                         "compare two feature folders (cosine, rel. L2, lag)"),
    "viz": ("tal_kit.viz.cli", "cli_viz", "timelines HTML + report figures of a run folder"),
    "reproduce": ("tal_kit.reproduce", "cli_reproduce", "run notebooks 01-06 for a preset with papermill"),
    "build-ext": ("tal_kit.ops", "cli_build_ext", "compile the NMS extension ahead of time"),
    "info": ("tal_kit.cli", "cli_info", "versions, devices and the NMS backend in use"),
}


def _resolve(name: str) -> Callable[[list[str]], int]:
    module_name, func_name, _ = SUBCOMMANDS[name]
    return getattr(importlib.import_module(module_name), func_name)


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``argv`` (default: the command line) to its subcommand; returns the exit status."""
    from tal_kit.cli import run_command

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
    return run_command(lambda args: _resolve(name)(args), rest)


if __name__ == "__main__":
    sys.exit(main())
