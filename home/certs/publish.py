"""The certificate tree under CLOUDATHOME_CERT_ROOT: which folders a domain may publish to,
and publishing `<folder>/<domain>/{fullchain,privkey,chain,cert}.pem` all at once without
ever replacing or deleting what the console did not create.

`<domain>` is a symlink to a hidden sibling version folder (`.<domain>.<random>`) holding one
complete set; a new set is written beside it and the link is exchanged atomically, so a reader
sees the old set or the new set, never a mix. Every step works on folder descriptors opened
without following symlinks, so a link planted while we publish cannot send a write elsewhere.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

from workers.common.names import validate_hostname

FILES = ("cert.pem", "chain.pem", "fullchain.pem", "privkey.pem")
# Certificates are public, read by the services they serve (often another account): 0644 in
# 0755 folders; only the key is the owner's alone.
FILE_MODES = {"cert.pem": 0o644, "chain.pem": 0o644, "fullchain.pem": 0o644, "privkey.pem": 0o600}
DIR_MODE = 0o755
_RENAME_EXCHANGE = 2  # linux/fs.h
_libc = ctypes.CDLL(None, use_errno=True)


class InTheWay(OSError):
    """A path the console must not touch is where it would publish; str() names it."""


def check_dir(cert_dir: str, root: Path) -> str:
    """The normalized folder, or ValueError('cert_dir: ...'): an absolute path without `.` or
    `..`, that is the root or below it, also once its existing part's symlinks are resolved."""
    if not cert_dir or not cert_dir.startswith("/"):
        raise ValueError(f"cert_dir: must be an absolute path under {root}")
    if "\0" in cert_dir or any(part in (".", "..") for part in cert_dir.split("/")):
        raise ValueError("cert_dir: must not contain '.' or '..' components")
    path = Path(os.path.normpath(cert_dir))
    if not path.is_relative_to(root):
        raise ValueError(f"cert_dir: must be {root} or a folder below it (CLOUDATHOME_CERT_ROOT)")
    if not Path(os.path.realpath(path)).is_relative_to(os.path.realpath(root)):
        raise ValueError(f"cert_dir: {path} leads outside {root} through a symbolic link")
    return str(path)


@contextlib.contextmanager
def _opened(path: Path, dir_fd: int | None = None) -> Iterator[int]:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def _walk(root: Path, out_dir: Path) -> Iterator[int]:
    """A descriptor of `out_dir`, reached from the root one component at a time without
    following a symlink; missing folders are created (0755)."""
    relative = out_dir.relative_to(root).parts
    if not root.exists():
        root.mkdir(mode=DIR_MODE, parents=True)
        root.chmod(DIR_MODE)
    with contextlib.ExitStack() as stack:
        fd = stack.enter_context(_opened(root))
        here = root
        for part in relative:
            here = here / part
            try:
                os.mkdir(part, DIR_MODE, dir_fd=fd)
                created = True
            except FileExistsError:
                created = False
            try:
                fd = stack.enter_context(_opened(Path(part), dir_fd=fd))
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise InTheWay(f"{here}: is a symbolic link or a file, not a folder") from None
                raise
            if created:
                os.fchmod(fd, DIR_MODE)  # the umask (0077) must not hide it from readers
        yield fd


def _is_version(fd: int, name: str, domain: str) -> bool:
    """A hidden version folder of ours: named for the domain, a real folder, holding only
    the files we write."""
    if not re.fullmatch(rf"\.{re.escape(domain)}\.[A-Za-z0-9_]{{8,32}}", name):
        return False
    try:
        with _opened(Path(name), dir_fd=fd) as version:
            return set(os.listdir(version)) <= set(FILES)
    except OSError:
        return False


def _ours(fd: int, name: str, domain: str) -> str | None:
    """The version a live link of ours points to; None for anything else at `name`."""
    try:
        target = os.readlink(name, dir_fd=fd)
    except OSError:
        return None
    return target if _is_version(fd, target, domain) else None


def _exchange(fd: int, a: str, b: str) -> None:
    if _libc.renameat2(fd, a.encode(), fd, b.encode(), _RENAME_EXCHANGE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), b)


def _remove_version(fd: int, name: str) -> None:
    """Delete our files of a version folder, then the folder if nothing else is left in it."""
    with _opened(Path(name), dir_fd=fd) as version:
        for file in FILES:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(file, dir_fd=version)
    with contextlib.suppress(OSError):  # not empty: someone else's file stays, with its folder
        os.rmdir(name, dir_fd=fd)


def _write_version(fd: int, domain: str, files: dict[str, str]) -> str:
    name = f".{domain}.{secrets.token_hex(8)}"
    os.mkdir(name, DIR_MODE, dir_fd=fd)
    with _opened(Path(name), dir_fd=fd) as version:
        os.fchmod(version, DIR_MODE)  # the umask must not narrow what readers need
        for file, text in files.items():
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            out = os.open(file, flags, FILE_MODES[file], dir_fd=version)
            try:
                os.fchmod(out, FILE_MODES[file])
                view = memoryview(text.encode("ascii"))
                while view:
                    view = view[os.write(out, view) :]
                os.fsync(out)
            finally:
                os.close(out)
        os.fsync(version)
    return name


def publish(root: Path, out_dir: Path, domain: str, files: dict[str, str]) -> Path:
    """Publish the four files of `domain` as `<out_dir>/<domain>`; returns that path.

    Refuses (InTheWay, naming the path, nothing written or deleted) when `<domain>` is
    anything but a link the console made, or a folder on the way is a link. Callers
    serialize publishing per domain."""
    domain = validate_hostname(domain, "domain")
    if sorted(files) != sorted(FILES):
        raise ValueError(f"files: must be exactly {', '.join(FILES)}")
    out_dir = Path(check_dir(str(out_dir), root))
    live = out_dir / domain
    with _walk(root, out_dir) as fd:
        try:
            os.lstat(domain, dir_fd=fd)
        except FileNotFoundError:
            previous = None
        else:
            previous = _ours(fd, domain, domain)
            if previous is None:
                raise InTheWay(_in_the_way(live))
        version = _write_version(fd, domain, files)
        try:
            if previous is None:
                # symlink() never replaces: whatever appeared meanwhile stays and we stop.
                try:
                    os.symlink(version, domain, dir_fd=fd)
                except FileExistsError:
                    raise InTheWay(_in_the_way(live)) from None
            else:
                staged = f".{domain}.link-{secrets.token_hex(6)}"
                os.symlink(version, staged, dir_fd=fd)
                try:
                    # Exchange, then look at what came out: if it is not the link we saw
                    # (swapped meanwhile), put it back untouched and refuse.
                    _exchange(fd, staged, domain)
                    if _ours(fd, staged, domain) != previous:
                        _exchange(fd, staged, domain)
                        raise InTheWay(_in_the_way(live))
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        if os.readlink(staged, dir_fd=fd) in (version, previous):
                            os.unlink(staged, dir_fd=fd)
            os.fsync(fd)
        except BaseException:
            _remove_version(fd, version)
            raise
        if previous is not None:
            _remove_version(fd, previous)
    return live


def _in_the_way(path: Path) -> str:
    return (
        f"{path}: is in the way: it is not a certificate link the console made, and the "
        "console never replaces what it did not create; move it away or choose another folder"
    )
