#!/usr/bin/env python3
"""Container health checks of both sites (installed as `cloudathome-healthcheck`): each asks
the running process something only a working one answers, and exits 0 (healthy) or 1.

    cloudathome-healthcheck http URL              any HTTP answer below 500
    cloudathome-healthcheck http-unix SOCKET PATH likewise, for GET PATH on a unix socket
    cloudathome-healthcheck banner HOST PORT TEXT the first bytes the server sends start with TEXT
    cloudathome-healthcheck haproxy PATH          HAProxy answers `show info` on its admin socket PATH
    cloudathome-healthcheck fresh PATH SECONDS    PATH (or PATH.*) was written in the last SECONDS
    cloudathome-healthcheck celery SITE           this container's worker `<SITE>@<hostname>` pongs
"""

from __future__ import annotations

import glob
import importlib
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from http.client import HTTPConnection

TIMEOUT = 5.0


def http(url: str) -> str | None:
    """gunicorn and Django answer. Any status below 500 counts: a DisallowedHost 400 (the
    operator's CLOUDATHOME_ALLOWED_HOSTS need not list 127.0.0.1) still proves both run."""
    if not url.startswith(("http://", "https://")):
        return f"not an http(s) URL: {url!r}"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as reply:  # noqa: S310 (scheme checked)
            status = int(reply.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError as exc:
        return f"{url}: {exc}"
    return None if status < 500 else f"{url}: HTTP {status}"


class _UnixHTTPConnection(HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=TIMEOUT)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(self.path)


def http_unix(path: str, url_path: str) -> str | None:
    """The cloud's gunicorn listens only on a unix socket (HAProxy fronts it): same rule."""
    conn = _UnixHTTPConnection(path)
    try:
        conn.request("GET", url_path)
        status = conn.getresponse().status
    except OSError as exc:
        return f"{path}: {exc}"
    finally:
        conn.close()
    return None if status < 500 else f"{path} {url_path}: HTTP {status}"


def banner(host: str, port: str, text: str) -> str | None:
    """A server that greets first (sshd: "SSH-2.0-...") is accepting and serving connections."""
    try:
        with socket.create_connection((host, int(port)), timeout=TIMEOUT) as sock:
            got = sock.recv(256)
    except OSError as exc:
        return f"{host}:{port}: {exc}"
    return None if got.startswith(text.encode()) else f"{host}:{port}: greeted with {got[:40]!r}"


def unix(path: str, command: str, text: str) -> str | None:
    """The reply to `command` on the unix socket `path` contains `text`."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(TIMEOUT)
            sock.connect(path)
            sock.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    except OSError as exc:
        return f"{path}: {exc}"
    reply = b"".join(chunks).decode(errors="replace")
    return None if text in reply else f"{path}: no {text!r} in the reply to {command!r}"


def haproxy(path: str) -> str | None:
    """HAProxy's admin socket answers `show info` only while the master and a worker live.
    A check of its own, so that no argument holds a space: podman's Docker API splits them."""
    return unix(path, "show info", "Name: HAProxy")


def fresh(path: str, seconds: str, now: float | None = None) -> str | None:
    """Celery beat rewrites its schedule file at least every 3 minutes while its loop runs
    (the shelve is synced every 180 s; dbm may add a suffix to the name)."""
    candidates = [path, *glob.glob(glob.escape(path) + ".*")]
    mtimes = [os.stat(p).st_mtime for p in candidates if os.path.exists(p)]
    if not mtimes:
        return f"{path}: missing"
    age = (time.time() if now is None else now) - max(mtimes)
    return None if age <= float(seconds) else f"{path}: last written {age:.0f}s ago"


def celery(site: str) -> str | None:
    """The worker of this container (`-n <site>@%h`, %h being the hostname) answers a ping
    through the broker, so both the worker and its broker connection are alive."""
    app = importlib.import_module(f"{site}.celery").app
    node = f"{site}@{socket.gethostname()}"
    replies = app.control.ping(destination=[node], timeout=TIMEOUT)
    return None if any(node in reply for reply in replies) else f"{node}: no pong"


CHECKS: dict[str, Callable[..., str | None]] = {
    "http": http,
    "http-unix": http_unix,
    "banner": banner,
    "haproxy": haproxy,
    "fresh": fresh,
    "celery": celery,
}
ARITY = {"http": 1, "http-unix": 2, "banner": 3, "haproxy": 1, "fresh": 2, "celery": 1}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in CHECKS or len(argv) - 1 != ARITY[argv[0]]:
        print(__doc__, file=sys.stderr)
        return 2
    problem = CHECKS[argv[0]](*argv[1:])
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
