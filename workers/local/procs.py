"""Processes started by the demo, the benchmarks and the tests: free ports, polling with a
deadline, and children that are always stopped by PID (never by name)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from workers.common.processes import stop_process
from workers.common.supervise import port_open

__all__ = ["Account", "free_port", "port_open", "running", "stop_pid", "wait_for"]

T = TypeVar("T")


@dataclass(frozen=True)
class Account:
    """An ordinary user to run a site as, with an interpreter that user may execute."""

    uid: int
    gid: int
    python: str
    home: Path

    def popen_args(self) -> dict[str, Any]:
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for(
    predicate: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll `predicate` until it returns something truthy; fail loudly at the deadline."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # the condition may raise until it holds
            last_exc = exc
        time.sleep(interval)
    raise TimeoutError(
        f"timed out after {timeout}s waiting for {what or predicate!r}: {last_exc!r}"
    )


def stop_pid(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Stop a process we started (and its process group when it leads one), then reap it."""
    if proc.poll() is None:
        stop_process(proc.pid, timeout=timeout, group=True)
    proc.wait(timeout)


@contextlib.contextmanager
def running(
    argv: Sequence[str],
    *,
    log: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    ready: Callable[[], object] | None = None,
    timeout: float = 30.0,
    account: Account | None = None,
) -> Iterator[subprocess.Popen]:
    """Run `argv` in its own process group, logging to `log`; wait for `ready`; always stop it.
    With `account`, as that user and group only (root drops to it before exec)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
            **(account.popen_args() if account else {}),
        )
    try:
        if ready is not None:
            try:
                # An exit ends the wait at once: wait_for would take an exception for "not yet".
                wait_for(
                    lambda: proc.poll() is not None or ready(),
                    timeout=timeout,
                    what=f"{argv[0]} to be ready",
                )
            except TimeoutError as exc:
                raise TimeoutError(f"{exc}\n--- {log} ---\n{log.read_text()[-3000:]}") from exc
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{argv[0]} exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
                )
        yield proc
    finally:
        stop_pid(proc)
