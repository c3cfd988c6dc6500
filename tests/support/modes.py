"""The modes table (docs/decisions.md, issue 12): every file and folder either site writes, the
mode it must have, and why. `unexpected()` walks a folder against it; a path the table does not
know is itself a failure, so a new file gets a deliberate mode before it lands."""

from __future__ import annotations

import fnmatch
import stat
from pathlib import Path

PRIVATE = "the owner's alone"
# (glob relative to the walked folder, mode, why); the first match wins. "." is the folder.
STATE: list[tuple[str, int, str]] = [
    (
        ".",
        0o711,
        "others traverse, never list: sshd reads a home's key file as the home's user; services read certificates",
    ),
    ("secret_key", 0o600, "signs sessions"),
    ("db.sqlite3*", 0o600, "sessions, token hashes, every row (journals copy the database's mode)"),
    ("beat-schedule*", 0o600, PRIVATE + " (Celery writes it; the umask decides)"),
    (
        "redis.sock",
        0o700,
        "the broker: whoever speaks to it runs tasks (x means nothing on a socket)",
    ),
    ("logs", 0o700, PRIVATE),
    ("logs/*.log", 0o600, "hostnames, addresses, errors"),
    # cloud
    ("ssh", 0o711, "sshd reaches the key files as each home's user: traverse only"),
    ("ssh/keys", 0o711, "as above"),
    ("ssh/keys/.lock", 0o600, PRIVATE),
    ("ssh/sessions", 0o711, "each home's forced command reaches its own slots: traverse only"),
    ("ssh/sessions/*/*", 0o644, "a home's user opens its session slots to flock them (read only)"),
    ("ssh/sessions/*", 0o755, "a home's user lists its own slots"),
    (
        "ssh/keys/*",
        0o644,
        "sshd reads a key file as the login's user (a home's, or the single account), not its owner: the exception",
    ),
    (
        "ssh/ssh_host_*",
        0o600,
        "host keys; the public halves reach homes through the API, not the file",
    ),
    ("ssh/sshd_config", 0o600, PRIVATE),
    ("ssh/sshd.pid", 0o600, PRIVATE),
    ("haproxy", 0o700, PRIVATE),
    ("haproxy/haproxy.cfg", 0o600, PRIVATE),
    ("haproxy/haproxy.pid", 0o600, PRIVATE),
    ("haproxy/*.sock", 0o600, "the Runtime API changes every route; the metrics socket shows them"),
    ("haproxy/maps", 0o700, PRIVATE),
    ("web", 0o700, "the wall around the control plane's socket: only our account (HAProxy) enters"),
    (
        "web/gunicorn.sock",
        0o777,
        "gunicorn binds with its own umask 0; the 0700 folder above is the wall",
    ),
    ("haproxy/maps/*.map", 0o600, "every tenant's routes"),
    ("haproxy/public.pem", 0o600, "the public host's certificate with its private key"),
    # both: the ACME account (the home's domains, the cloud's public host)
    ("acme", 0o700, PRIVATE),
    ("acme/account.key", 0o600, "the ACME account's key"),
    # home
    ("tunnels", 0o700, PRIVATE),
    ("tunnels/*", 0o600, "tunnel logs and control sockets"),
]
# The home's registration: cloudlink.yaml holds the API token, the key opens the tunnels.
LINK: list[tuple[str, int, str]] = [
    (".", 0o700, PRIVATE),
    ("cloudlink.yaml", 0o600, "the API token"),
    ("known_hosts", 0o600, PRIVATE),
    ("*.pub", 0o644, "a public key, as ssh-keygen writes it (pasted into the cloud)"),
    ("*", 0o600, "the home's SSH private key"),
]
# The certificate root: read by the services they serve, often another account.
CERTS: list[tuple[str, int, str]] = [
    (".", 0o755, "services of other accounts read certificates"),
    ("*/privkey.pem", 0o600, "the certificate's key"),
    ("*.pem", 0o644, "public certificates and chains"),
    ("*", 0o755, "certificate folders (and the root's sub-folders), read by services"),
]


def unexpected(base: Path, table: list[tuple[str, int, str]]) -> list[str]:
    """Every path below `base` (and `base`) whose mode differs from the table, or that the
    table does not list. Symbolic links have no mode of their own and are skipped."""
    wrong = []
    for path in [base, *sorted(base.rglob("*"))]:
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            continue
        rel = "." if path == base else path.relative_to(base).as_posix()
        mode = stat.S_IMODE(info.st_mode)
        expected = next((m for glob, m, _ in table if fnmatch.fnmatchcase(rel, glob)), None)
        if expected is None:
            wrong.append(f"{rel}: {oct(mode)} and not in the table")
        elif mode != expected:
            wrong.append(f"{rel}: {oct(mode)}, expected {oct(expected)}")
    return wrong


def walk(**folders: tuple[Path, list[tuple[str, int, str]]]) -> list[str]:
    """unexpected() of each folder (each must exist), prefixed with its name."""
    return [
        f"{name}: {line}"
        for name, (path, table) in folders.items()
        for line in (unexpected(path, table) if path.is_dir() else ["missing"])
    ]
