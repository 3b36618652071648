"""Atomic file writes: write a temporary file next to the target, flush it to disk, then rename over the target.

A reader (or a resumed run after a crash) therefore sees either the old file or the complete new one, never a
half-written one.

Temporary names carry the writer's process id and a tag of its host (``.<name>.tal<pid>.<host>-<random>.tmp``),
so a temporary orphaned by a killed process is recognisable: the next write of the same target removes those whose
process is gone (a live writer's temporary is never touched, nor one written from another machine on a shared
file system, whose processes cannot be checked from here). New files and folders get the permissions a plain
``open(path, "w")`` or ``os.mkdir`` would give them (the umask's). This module imports neither torch nor numpy, so
every layer can use it.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

__all__ = ["atomic_open", "atomic_path", "write_json_atomic", "write_text_atomic", "new_file_mode", "new_dir_mode",
           "temp_prefix", "remove_stale_temporaries", "process_alive"]

_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.tal(?P<pid>\d+)\.(?P<host>[0-9a-f]{6})-[^/]*$")


def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]


def temp_prefix(target_name: str, pid: int | None = None) -> str:
    """The ``prefix`` for mkstemp/mkdtemp beside a file called ``target_name`` (``pid``: this process)."""
    return f".{target_name}.tal{os.getpid() if pid is None else pid}.{_host_tag()}-"


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine (one owned by another user counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike, target_name: str | None = None) -> list[Path]:
    """Remove the temporaries a killed tal_kit process left in ``folder`` (only those of ``target_name`` when
    given); returns what was removed. Temporaries of running processes and files of any other name stay."""
    folder = Path(folder)
    removed: list[Path] = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if match is None or (target_name is not None and match["target"] != target_name) \
                or match["host"] != _host_tag():
            continue
        if process_alive(int(match["pid"])):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
        except OSError:
            pass  # someone else cleaned it, or we may not: leave it
    return removed


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent, path.name)
    fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=".tmp", dir=path.parent)
    os.chmod(tmp_name, new_file_mode())  # mkstemp creates 0600; a result gets what a plain open() would give it
    handle = os.fdopen(fd, mode, encoding=encoding)
    try:
        yield handle
        try:
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
        except OSError as err:  # a full disk shows up here for small files: name the file it was meant for
            raise OSError(err.errno, err.strerror, str(path)) from err
        os.replace(tmp_name, path)
    except BaseException:
        try:
            handle.close()  # (flushing what is left may fail again on a full disk: the first error is the one)
        except OSError:
            pass
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)


def _umask() -> int:
    """The process's umask. Read from /proc where Linux offers it, since setting and restoring it (the only portable
    way to read it) briefly changes it for every thread."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The permissions ``open(path, "w")`` gives a new file: 0o666 less the umask."""
    return 0o666 & ~_umask()


def new_dir_mode() -> int:
    """The permissions ``os.mkdir`` gives a new folder: 0o777 less the umask (mkdtemp's are 0o700)."""
    return 0o777 & ~_umask()


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside ``path`` for writers that need a file name (``savefig``, ``np.savez``, a copy); on
    success it is flushed and replaces ``path`` with normal permissions, on error it is removed. ``suffix`` keeps
    the extension such writers read the format from."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent, path.name)
    fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp_name)
        os.chmod(tmp_name, new_file_mode())
        fd = os.open(tmp_name, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)


@contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary folder beside ``path`` to build a whole folder in (a generated dataset); on success it takes
    ``path``'s place (an existing folder there is replaced, never left half-old, half-new), with the permissions
    ``os.mkdir`` would give it; on error it is removed. A folder left by a killed process is removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent, path.name)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(path.name), dir=path.parent))
    os.chmod(tmp, new_dir_mode())  # mkdtemp makes it 0700
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            if old.exists():
                shutil.rmtree(old)
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old)
        else:
            tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Persist the rename itself (best effort: not every platform lets a directory be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int | None = 2, **dump_kwargs: Any) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically; returns the path."""
    with atomic_open(path, "w", encoding="utf8") as handle:
        json.dump(obj, handle, indent=indent, **dump_kwargs)
        handle.write("\n")
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically; returns the path."""
    with atomic_open(path, "w", encoding="utf8") as handle:
        handle.write(text)
    return Path(path)
