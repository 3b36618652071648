"""What every ``python -m tal_kit`` subcommand shares: the common options and the one rule for errors.

The five options most commands take (``--config --set --data-root --run-dir --device``) are declared here once
(:func:`add_common_options`); a command picks the ones it has and says, where its meaning differs, how (required,
its default, its help text where its meaning or default differs).

The error rule (:func:`run_command`), applied by ``__main__`` to every subcommand:

* bad input or an unusable machine (a config key, a missing file, a full disk, no GPU, ...): one line
  ``error: ...`` naming the file or field and what to do, exit status 2;
* a job that ran but failed (a notebook raised, a download broke off): its message, exit status 1 (commands whose
  result is a verdict, such as ``check-data`` or ``compare-features``, return 1 themselves);
* anything else is a bug in tal_kit and keeps its traceback.

Commands therefore raise instead of printing: they need no ``try/except`` of their own.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import sys
from typing import Callable, Mapping, Sequence


class UsageError(ValueError):
    """Command-line input that argparse cannot check (a value out of range, a video not in the split): exit 2."""


# The exception classes that carry a message for the user (module, class): exit status 2. Looked up only in modules
# already imported by the failing command, so that this table costs no imports.
USER_ERRORS: tuple[tuple[str, str], ...] = (
    ("tal_kit.cli", "UsageError"),
    ("tal_kit.config", "ConfigError"),
    ("tal_kit.data.annotations", "AnnotationError"),
    ("tal_kit.data.features", "FeatureError"),
    ("tal_kit.detections", "DetectionsError"),
    ("tal_kit.evaluation.metrics", "EvaluationError"),
    ("tal_kit.evaluation.fusion", "FusionError"),
    ("tal_kit.model.checkpoint", "CheckpointMismatchError"),
    ("tal_kit.model.checkpoint", "CheckpointReadError"),
    ("tal_kit.training.checkpoint", "CheckpointError"),
    ("tal_kit.training.lock", "RunLockedError"),
    ("tal_kit.runtime", "DeviceError"),
    ("tal_kit.extraction.checkpoints", "CheckpointError"),
    ("tal_kit.extraction.runner", "ExtractionError"),
    ("tal_kit.detect", "DetectError"),
    ("tal_kit.data.demo", "DemoSettingsError"),
    ("tal_kit.compare_features", "CompareError"),
    ("yaml", "YAMLError"),
)

# Jobs that started and failed for a reason outside tal_kit (module, class): exit status 1.
JOB_FAILURES: tuple[tuple[str, str], ...] = (
    ("tal_kit.reproduce", "NotebookFailed"),
    ("tal_kit.fetch", "FetchError"),
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


def _is_one_of(err: BaseException, table: tuple[tuple[str, str], ...]) -> bool:
    for module_name, class_name in table:
        cls = getattr(sys.modules.get(module_name), class_name, None)
        if cls is not None and isinstance(err, cls):
            return True
    return False


def user_error_message(err: BaseException) -> str | None:
    """The one-line (rarely a few lines) message for an error the user can act on, or None for a bug."""
    if isinstance(err, OSError):
        return describe_os_error(err)
    if isinstance(err, FloatingPointError):  # the training loop's NaN/inf-loss stop names the step and the remedy
        return str(err)
    if _is_one_of(err, USER_ERRORS) or _is_one_of(err, JOB_FAILURES):
        return str(err).strip()
    return None


def exit_status(err: BaseException) -> int:
    """1 for a job that failed (:data:`JOB_FAILURES`), 2 for any other error with a user message."""
    return 1 if _is_one_of(err, JOB_FAILURES) else 2


def run_command(command: Callable[[list[str]], int | None], argv: list[str]) -> int:
    """Run one subcommand under the error rule of the module docstring; returns its exit status."""
    try:
        return int(command(argv) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - sorted into user errors (one line) and bugs (re-raised)
        message = user_error_message(err)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return exit_status(err)


# ----------------------------------------------------------------------------------------------------------------------
# The common options
# ----------------------------------------------------------------------------------------------------------------------

COMMON_OPTIONS = ("config", "set", "data-root", "run-dir", "device")

# name -> (argparse keyword arguments, help text). Defaults are the ones every command uses unless it says otherwise.
_OPTIONS: dict[str, tuple[dict, str]] = {
    "config": ({}, "preset name or path to a YAML file"),
    "set": ({"dest": "overrides", "action": "append", "default": [], "metavar": "KEY=VALUE"},
            "dotted config override, e.g. opt.learning_rate=1e-4 (repeatable)"),
    "data-root": ({}, "folder the config's dataset paths are relative to (default data/<preset>)"),
    "run-dir": ({}, "output folder (default runs/<preset>)"),
    "device": ({"default": "auto"}, "auto | cpu | cuda | cuda:N"),
}


def add_common_options(parser: argparse.ArgumentParser, *names: str, required: Sequence[str] = (),
                       defaults: Mapping[str, str] | None = None,
                       help_texts: Mapping[str, str] | None = None) -> None:
    """Add the common options ``names`` (default: all five, in :data:`COMMON_OPTIONS` order) to ``parser``.

    ``required`` names options the command cannot do without; ``defaults`` gives an option a default value (its
    help then says it); ``help_texts`` replaces an option's help where the command gives it another meaning or default
    (infer's ``--config`` falls back to the checkpoint's, reproduce's ``--run-dir`` to runs/<preset>-quick with
    ``--quick``).
    """
    defaults, help_texts = dict(defaults or {}), dict(help_texts or {})
    unknown = (set(names) | set(required) | set(defaults) | set(help_texts)) - set(COMMON_OPTIONS)
    if unknown:
        raise ValueError(f"not a common option: {sorted(unknown)}; the common options are {COMMON_OPTIONS}")
    for name in names or COMMON_OPTIONS:
        kwargs, text = _OPTIONS[name]
        kwargs = dict(kwargs)
        if name in defaults:
            kwargs["default"] = defaults[name]
            text = f"{text} (default: {defaults[name]})"
        if name in required:
            kwargs["required"] = True
        parser.add_argument(f"--{name}", help=help_texts.get(name, text), **kwargs)


# ----------------------------------------------------------------------------------------------------------------------
# The two subcommands that belong to no module: config and info
# ----------------------------------------------------------------------------------------------------------------------

def cli_config(argv: list[str]) -> int:
    """``tal-kit config show PRESET [--json] [--set k=v ...]``"""
    from tal_kit.config import dump_config, load_config

    parser = argparse.ArgumentParser(prog="tal-kit config", description="Show a fully resolved config.")
    parser.add_argument("action", choices=["show"])
    parser.add_argument("preset", help="preset name or path to a YAML file")
    parser.add_argument("--json", action="store_true", help="print JSON instead of YAML")
    add_common_options(parser, "set")
    args = parser.parse_args(argv)
    print(dump_config(load_config(args.preset, args.overrides), as_json=args.json))
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
