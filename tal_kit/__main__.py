"""``python -m tal_kit`` / ``tal-kit``: one entry point, one subcommand per job.

Each subcommand lives in the module that owns the work; this file only dispatches (imports are lazy so that
``tal-kit config show`` does not pay for torch's import) and turns the errors that mean "this input or this
machine is not usable" into one ``error: ...`` line and exit status 2, in one place (:func:`user_error_message`).
Anything else is a bug in tal_kit and keeps its traceback.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import sys
from typing import Callable, Optional

# The exception classes that carry a message for the user (module, class). Looked up only in modules already
# imported by the failing command, so that this table costs no imports.
USER_ERRORS: tuple[tuple[str, str], ...] = (
    ("tal_kit.config", "ConfigError"),
    ("tal_kit.data.annotations", "AnnotationError"),
    ("tal_kit.data.features", "FeatureError"),
    ("tal_kit.detections", "DetectionsError"),
    ("tal_kit.evaluation.metrics", "EvaluationError"),
    ("tal_kit.evaluation.fusion", "FusionError"),
    ("tal_kit.training.checkpoint", "CheckpointError"),
    ("tal_kit.training.lock", "RunLockedError"),
    ("tal_kit.training.distributed", "DeviceError"),
    ("yaml", "YAMLError"),
)

_OS_ERRORS = {
    errno.ENOSPC: "disk full (no space left on device): free some space or write somewhere else",
    errno.EDQUOT: "disk quota exceeded: free some space or write somewhere else",
    errno.EROFS: "read-only file system: choose a writable folder",
    errno.EACCES: "permission denied: choose a folder you may write to (or a file you may read)",
    errno.EPERM: "operation not permitted here: choose another folder",
    errno.EISDIR: "is a folder where a file is expected: give a file name",
    errno.ENOTDIR: "part of this path is a file where a folder is expected",
    errno.EEXIST: "exists already and is a file where a folder is expected",
    errno.ENOENT: "no such file or folder",
}


def describe_os_error(err: OSError) -> str:
    """``PATH: what went wrong and what to do`` for a failed file operation."""
    where = err.filename if err.filename is not None else ""
    if err.filename2 is not None:
        where = f"{where} -> {err.filename2}"
    what = _OS_ERRORS.get(err.errno) if err.errno is not None else None
    if what is None:
        return str(err)
    return f"{where}: {what}" if where else what


def user_error_message(err: BaseException) -> Optional[str]:
    """The one-line (rarely a few lines) message for an error the user can act on, or None for a bug."""
    if isinstance(err, OSError):
        return describe_os_error(err)
    if isinstance(err, FloatingPointError):  # the training loop's NaN/inf-loss stop names the step and the remedy
        return str(err)
    for module_name, class_name in USER_ERRORS:
        cls = getattr(sys.modules.get(module_name), class_name, None)
        if cls is not None and isinstance(err, cls):
            return str(err).strip()
    return None

# name -> (module, function, one-line help). Each function takes the remaining argv and returns an exit code.
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "config": ("tal_kit.__main__", "cli_config", "show a fully resolved config preset"),
    "demo-data": ("tal_kit.data.demo", "cli_demo_data", "generate the embedded synthetic demo dataset"),
    "fetch": ("tal_kit.fetch", "cli_fetch", "download the VideoMAEv2-g features of thumos14/fineaction (HF hub)"),
    "check-data": ("tal_kit.check_data", "cli_check_data", "validate a real data folder before a long run"),
    "dry-run-data": ("tal_kit.dryrun", "cli_dry_run_data", "real annotation format + synthetic features, for smoke runs"),
    "train": ("tal_kit.train", "cli_train", "train ActionFormer (torchrun for several GPUs/processes)"),
    "infer": ("tal_kit.infer", "cli_infer", "run a checkpoint over a split and write detections"),
    "evaluate": ("tal_kit.evaluate", "cli_evaluate", "ActivityNet detection mAP of a results JSON"),
    "extract": ("tal_kit.extraction.cli", "cli_extract", "features from raw videos (VideoMAE/VideoMAEv2 ViT)"),
    "demo-videos": ("tal_kit.data.demo_videos", "cli_demo_videos", "generate short synthetic videos with visible actions"),
    "detect": ("tal_kit.detect", "cli_detect", "videos -> detections (seconds) + an HTML report beside the video"),
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

    argparse.ArgumentParser(prog="tal-kit info", description="Print the versions, the devices and the NMS backend "
                            "in use (what a bug report needs).").parse_args(argv)

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
    try:
        return int(_resolve(name)(rest) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - sorted into user errors (one line) and bugs (re-raised)
        message = user_error_message(err)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
