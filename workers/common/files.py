"""Crash-safe file writes for both sites: a reader (sshd, HAProxy, a web server reading a
certificate) sees the old content or the new, never half, and a secret is never readable by
others even for an instant."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """Make a rename or link in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _beside(path: Path) -> Iterator[Path]:
    """A fresh temporary name beside `path` (one file system, so the last rename or link is
    atomic); whatever is left under it afterwards is removed, and on success the directory is
    synced so the move is durable."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    fsync_dir(path.parent)


def write_atomic(
    path: Path,
    data: bytes | str,
    mode: int = 0o644,
    replace: bool = True,
    check: Callable[[Path], None] | None = None,
) -> None:
    """Write `data` to a fresh temporary file beside `path` created with `mode`, fsync it,
    then move it into place. With `replace=False` the last step is link(), which raises
    FileExistsError instead of overwriting a file that appeared meanwhile.

    `check(temporary)` runs on the complete file before it moves: whatever it raises stops the
    write with `path` left as it was (HAProxy validates a staged config this way)."""
    raw = data.encode() if isinstance(data, str) else data
    with _beside(path) as tmp:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(tmp, flags, mode)
        try:
            os.fchmod(fd, mode)  # the umask must not loosen or tighten what we ask for
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if check is not None:
            check(tmp)
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)


def symlink_atomic(target: str | Path, link: Path) -> None:
    """Point `link` at `target` with one rename: a reader follows the old target or the new,
    never a missing link."""
    with _beside(link) as tmp:
        os.symlink(target, tmp)
        os.replace(tmp, link)
