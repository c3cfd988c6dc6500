"""Post-renewal actions: the operator's named argument vectors (CLOUDATHOME_POST_RENEW_ACTIONS,
read and checked at start-up), the only programs a domain may run after its certificate is
issued. A web request picks one by name; it never names a program."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import yaml

from workers.common.conf import ConfigError

VARIABLE = "CLOUDATHOME_POST_RENEW_ACTIONS"
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,39}")
MAX_ARGS = 64
# What the dashboard keeps of an action's output (stdout and stderr together): the tail.
OUTPUT_LIMIT = 4000


def parse_actions(text: str, variable: str = VARIABLE) -> dict[str, tuple[str, ...]]:
    """`{name: [program, arg, ...]}` as JSON or YAML (a file through `<variable>_FILE`), or
    ConfigError naming the variable and the entry: the console refuses to start."""
    if not text.strip():
        return {}
    try:
        data = yaml.safe_load(text)  # JSON is YAML: one parser for both
    except yaml.YAMLError as exc:
        raise ConfigError(f"{variable}: not JSON or YAML: {exc}".splitlines()[0]) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{variable}: must be a mapping of action name to argument list")
    actions: dict[str, tuple[str, ...]] = {}
    for name, argv in data.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ConfigError(
                f"{variable}: action name {name!r} must be 1-40 lower-case letters, digits, "
                "'.', '_' or '-'"
            )
        if (
            not isinstance(argv, list)
            or not argv
            or len(argv) > MAX_ARGS
            or not all(isinstance(a, str) and a and "\0" not in a for a in argv)
        ):
            raise ConfigError(
                f"{variable}: {name}: must be a list of 1 to {MAX_ARGS} non-empty strings "
                "(program, then its arguments; no shell ever reads them)"
            )
        if not Path(argv[0]).is_absolute():
            raise ConfigError(f"{variable}: {name}: the program must be an absolute path")
        actions[name] = tuple(argv)
    return actions


def _tail(data: bytes) -> str:
    text = data.decode(errors="replace")
    return text if len(text) <= OUTPUT_LIMIT else "…" + text[-OUTPUT_LIMIT:]


def run(argv: tuple[str, ...], timeout: float, env: dict[str, str]) -> tuple[int | None, str]:
    """Run `argv` (never through a shell, in its own session, stdin closed) as this process's
    user; return (exit code or None when it was stopped at the time limit, output tail).

    Refuses as root: the console is not meant to run as root (decisions, issue 12), and an
    action must not become the way a console login owns the machine."""
    if os.geteuid() == 0:
        return None, (
            "refused: the console runs as root, and post-renewal actions only ever run as an "
            "unprivileged user; run the console as its own user"
        )
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd="/",
            start_new_session=True,
            close_fds=True,
        )
    except OSError as exc:
        return None, f"could not start {argv[0]}: {exc.strerror or exc}"
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # The whole session: a reload script's own children must not outlive the limit.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        elapsed = time.monotonic() - started
        return None, _tail(out) + f"\nstopped after {elapsed:.0f} s (time limit {timeout:g} s)"
    return proc.returncode, _tail(out)


def environment(domain: str, cert_path: str) -> dict[str, str]:
    """What an action sees: a plain PATH and which certificate changed, nothing of the
    console's own environment (its secrets stay out)."""
    return {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "CLOUDATHOME_DOMAIN": domain,
        "CLOUDATHOME_CERT_PATH": cert_path,
    }
