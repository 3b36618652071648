"""One training per run directory: ``RUN_DIR/.train.lock`` names the holder (pid, host, start time).

Two trainings writing into one folder would interleave their checkpoints and logs. The lock is an advisory
``flock`` on the lock file, which the kernel drops when its process dies however it dies, so a run killed with
``kill -9`` never leaves a lock that blocks the next one; the file's content only says who holds it (or held it:
a lock file whose recorded process is gone is stale and simply taken over). Several processes of one torchrun
training share the lock of rank 0. Without ``fcntl`` (Windows) no lock is taken.
"""
from __future__ import annotations

import json
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

LOCK_NAME = ".train.lock"


class RunLockedError(RuntimeError):
    """The run directory is in use by another training; the message names the holder."""


def describe_holder(info: dict[str, Any]) -> str:
    return (f"pid {info.get('pid', '?')} on host {info.get('host', '?')}, started {info.get('started', '?')}"
            + (f" ({info['command']})" if info.get("command") else ""))


class RunLock:
    """``with RunLock(run_dir):`` holds the run directory for this process; raises RunLockedError if it is held."""

    def __init__(self, run_dir: str | os.PathLike, command: str = "train"):
        self.path = Path(run_dir) / LOCK_NAME
        self.command = command
        self._fd: int | None = None
        self.previous: dict[str, Any] | None = None  # what a stale lock file said, if there was one

    def acquire(self) -> "RunLock":
        if fcntl is None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)  # less the umask, as open(path, "w") gives
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = read_lock_info(self.path)
            os.close(fd)
            raise RunLockedError(
                f"{self.path.parent} is in use by another training ({describe_holder(holder)}); wait for it to "
                f"finish or stop it, or choose another run directory") from None
        except OSError as err:  # a file system without locks (some network mounts): train, but say so
            os.close(fd)
            warnings.warn(f"{self.path}: cannot lock the run directory ({err.strerror}); nothing stops a second "
                          f"training from writing into it at the same time", RuntimeWarning, stacklevel=2)
            return self
        self.previous = read_lock_info(self.path, attempts=1) or None  # left by a run that died: stale, taken over
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)  # an empty lock file: nobody holds the folder
        except OSError:
            pass
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def read_lock_info(path: str | os.PathLike, attempts: int = 20) -> dict[str, Any]:
    """The holder recorded in a lock file ({} when empty or unreadable)."""
    for _ in range(attempts):  # a new holder may be between truncating and writing it
        try:
            text = Path(path).read_text()
        except OSError:
            return {}
        if text.strip():
            try:
                return json.loads(text)
            except ValueError:
                pass
        time.sleep(0.01)
    return {}
