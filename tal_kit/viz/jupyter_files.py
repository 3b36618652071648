"""Where a file on disk is served by the Jupyter server this kernel runs under: ``<base_url>files/<path under the
server's root_dir>`` (the /files/ route; it answers range requests, so a browser can seek in a video).

The kernel knows its working directory, not the server's root: the server is found among the running servers
(``jupyter_server.serverapp.list_running_servers``, the runtime folder's ``jpserver-*.json``) as this kernel's
parent process, else as the deepest root that contains the working directory.
"""
from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

__all__ = ["JupyterServer", "current_server", "files_url"]


@dataclass(frozen=True)
class JupyterServer:
    root_dir: Path
    base_url: str = "/"


def current_server() -> JupyterServer | None:
    """The Jupyter server this kernel was started by (None outside one, or when it cannot be told)."""
    try:
        from jupyter_server.serverapp import list_running_servers
        servers = list(list_running_servers())
    except Exception:  # noqa: BLE001 - no jupyter_server, unreadable runtime folder: no server known
        return None
    parent = os.getppid()
    mine = [s for s in servers if s.get("pid") == parent]
    if not mine:
        cwd = Path.cwd().resolve()
        mine = sorted((s for s in servers if s.get("root_dir") and cwd.is_relative_to(Path(s["root_dir"]).resolve())),
                      key=lambda s: len(Path(s["root_dir"]).resolve().parts), reverse=True)
    if not mine:
        return None
    return JupyterServer(Path(mine[0]["root_dir"]).resolve(), mine[0].get("base_url") or "/")


def files_url(path: str | os.PathLike, server: JupyterServer) -> str | None:
    """The URL (absolute path on the server's origin) serving ``path``, or None when it lies outside the root or
    in a hidden folder (the server refuses those)."""
    target = Path(path).resolve()
    if not target.is_relative_to(server.root_dir):
        return None
    rel = target.relative_to(server.root_dir)
    if any(part.startswith(".") for part in rel.parts):
        return None
    base = server.base_url if server.base_url.endswith("/") else server.base_url + "/"
    return f"{base}files/{urllib.parse.quote(rel.as_posix())}"
