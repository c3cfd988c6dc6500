"""The one way both sites and the harness stop a process by PID: a pidfd pins the process before
anything is checked or signalled, so a recycled PID is never hit; then SIGTERM (to the process,
or to the group it leads), a bounded wait, and SIGKILL for whatever is left.

Requires Linux >= 5.3 (pidfd_open)."""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path


def pidfd_of(pid: int, is_ours: Callable[[], bool] | None = None) -> int | None:
    """A pidfd for `pid`, or None when there is no such process or `is_ours()` says it is not
    the one meant. The pidfd is taken BEFORE the check: once the check passes, the fd refers to
    the process checked, and signals through it cannot reach a later owner of the PID."""
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return None  # 0 and negative PIDs mean groups or everyone to kill(2)
    try:
        pidfd = os.pidfd_open(pid)
    except (ProcessLookupError, PermissionError):
        return None
    if is_ours is not None and not is_ours():
        os.close(pidfd)
        return None
    return pidfd


def wait_exit(pidfds: Iterable[int], timeout: float) -> set[int]:
    """Wait until every process behind `pidfds` has ended (a pidfd turns readable then, zombie
    or not), at most `timeout` seconds; return the pidfds still running."""
    pending = set(pidfds)
    deadline = time.monotonic() + max(0.0, timeout)
    while pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        poller = select.poll()
        for fd in pending:
            poller.register(fd, select.POLLIN)
        pending -= {fd for fd, _ in poller.poll(remaining * 1000)}
    return pending


def stop_processes(
    pids: Iterable[int],
    *,
    timeout: float = 10.0,
    group: bool = False,
    is_ours: Callable[[int], bool] | None = None,
) -> list[int]:
    """SIGTERM each process, wait up to `timeout` s for all of them together, SIGKILL the ones
    left and wait again; return the PIDs that were signalled (the others had already gone).

    `is_ours(pid)` guards each PID before it is signalled (a start time, a UID). With `group`,
    a PID that leads a process group has the signals sent to its whole group: only for
    children of this process not reaped yet, whose PID (so group id) cannot be reused."""
    pidfds: dict[int, int] = {}
    try:
        for pid in dict.fromkeys(pids):
            check = None if is_ours is None else (lambda pid=pid: is_ours(pid))
            pidfd = pidfd_of(pid, check)
            if pidfd is not None:
                pidfds[pid] = pidfd
        groups = {pid for pid in pidfds if group and _leads_group(pid)}
        signalled = {
            pid: fd for pid, fd in pidfds.items() if _send(pid, fd, signal.SIGTERM, pid in groups)
        }
        left = wait_exit(signalled.values(), timeout)
        for pid, fd in signalled.items():
            if fd in left:
                _send(pid, fd, signal.SIGKILL, pid in groups)
        wait_exit(left, timeout)
        return list(signalled)
    finally:
        for fd in pidfds.values():
            os.close(fd)


def stop_process(
    pid: int,
    *,
    timeout: float = 10.0,
    group: bool = False,
    is_ours: Callable[[], bool] | None = None,
) -> bool:
    """stop_processes for one PID; True when it was signalled (it was there to stop)."""
    check = None if is_ours is None else (lambda _pid: is_ours())
    return bool(stop_processes([pid], timeout=timeout, group=group, is_ours=check))


def _send(pid: int, pidfd: int, sig: int, group: bool) -> bool:
    try:
        if group:
            os.killpg(pid, sig)
        else:
            signal.pidfd_send_signal(pidfd, sig)
    except ProcessLookupError:
        return False
    return True


def _leads_group(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False


def uids_of(pid: int) -> tuple[int, ...] | None:
    """The real, effective, saved and file-system UIDs of `pid`, None when it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("Uid:"):
            return tuple(int(part) for part in line.split()[1:])
    return None


def processes_of_user(uid: int) -> list[int]:
    """PIDs of every process running with `uid` as any of its UIDs."""
    return [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and uid in (uids_of(int(entry.name)) or ())
    ]


def stop_user_processes(uid: int, timeout: float = 5.0) -> list[int]:
    """Stop every process of `uid` (each one checked to still run as it once pinned); for a
    UID that only ever runs what we started, such as a home's own account."""
    return stop_processes(
        processes_of_user(uid), timeout=timeout, is_ours=lambda pid: uid in (uids_of(pid) or ())
    )
