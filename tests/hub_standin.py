"""A stand-in for the Hugging Face hub on loopback, answering what ``huggingface_hub`` really asks for a file.

The real hub answers ``HEAD {endpoint}/datasets/{repo}/resolve/{revision}/{file}`` of an LFS file with a redirect
to a storage host and puts the file's metadata on that redirect: ``X-Repo-Commit``, ``X-Linked-Etag`` (the
sha256 of the content), ``X-Linked-Size`` and ``Location``. The client does not follow redirects to another host
for the HEAD; it then GETs the location, with ``Range: bytes=N-`` when it resumes. Here the hub is
``http://127.0.0.1:PORT`` and the storage host ``http://localhost:PORT`` (same server, another host name), so the
redirect leaves the hub exactly as on the real one.
"""
from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "d443035" + "0" * 33  # 40 hex digits, like the hub's commit ids


@dataclass
class HostedFile:
    content: bytes
    served: bytes | None = None  # what the storage host sends instead (a corrupt copy); None: the content
    drop_after: int | None = None  # the first GET sends this many bytes, then the connection drops

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


@dataclass
class StandInHub:
    files: dict[str, HostedFile] = field(default_factory=dict)  # "repo/filename" -> file
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # (method, path, Range header)
    port: int = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def gets(self) -> list[tuple[str, str, str | None]]:
        return [r for r in self.requests if r[0] == "GET"]


def _handler(hub: StandInHub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def _record(self) -> None:
            hub.requests.append((self.command, self.path, self.headers.get("Range")))

        def _resolve(self, with_body: bool) -> None:
            match = re.match(r"^/datasets/(.+?/.+?)/resolve/([^/]+)/(.+)$", self.path.split("?")[0])
            hosted = hub.files.get(f"{match.group(1)}/{match.group(3)}") if match else None
            if hosted is None:
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("X-Error-Message", "Entry not found")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(302)
            self.send_header("Location", f"http://localhost:{hub.port}/storage/{hosted.sha256}")
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", '"0123456789abcdef0123456789abcdef01234567"')  # the git oid of the pointer
            self.send_header("X-Linked-Etag", f'"{hosted.sha256}"')
            self.send_header("X-Linked-Size", str(len(hosted.content)))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _storage(self) -> None:
            sha = self.path.split("?")[0].rsplit("/", 1)[-1]
            hosted = next((f for f in hub.files.values() if f.sha256 == sha), None)
            if hosted is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = hosted.served if hosted.served is not None else hosted.content
            start = 0
            requested = self.headers.get("Range")
            if requested:
                start = int(re.match(r"bytes=(\d+)-", requested).group(1))
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(body) - start))
            self.send_header("ETag", f'"{hosted.sha256}"')
            self.end_headers()
            chunk = body[start:]
            if hosted.drop_after is not None:
                limit, hosted.drop_after = hosted.drop_after, None
                self.wfile.write(chunk[:limit])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)  # the client sees the body end early
                return
            self.wfile.write(chunk)

        def do_HEAD(self):  # noqa: N802 (http.server's naming)
            self._record()
            if self.path.startswith("/storage/"):
                self.send_response(405)
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self._resolve(with_body=False)

        def do_GET(self):  # noqa: N802
            self._record()
            if self.path.startswith("/storage/"):
                self._storage()
            else:
                self._resolve(with_body=True)

    return Handler


def serve(hub: StandInHub) -> tuple[ThreadingHTTPServer, threading.Thread]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    hub.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread
