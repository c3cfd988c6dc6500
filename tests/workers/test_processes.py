"""Stopping processes by PID (workers.common.processes): SIGTERM, a bounded wait, SIGKILL; the
whole group when asked; never a process that the guard says is not the one meant."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from workers.common.processes import (
    pidfd_of,
    processes_of_user,
    stop_process,
    stop_processes,
    stop_user_processes,
)
from workers.local.procs import wait_for

# A child that must be killed: it ignores SIGTERM (sleep inherits that), and says so once it does.
STUBBORN = "trap '' TERM; echo ready; exec sleep 300"


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@contextlib.contextmanager
def child(*argv: str, **options: object) -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, **options)  # type: ignore[call-overload]
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


@contextlib.contextmanager
def stubborn(**options: object) -> Iterator[subprocess.Popen]:
    with child("sh", "-c", STUBBORN, **options) as proc:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        yield proc


def test_a_process_that_ends_on_sigterm_is_stopped_at_once() -> None:
    with child("sleep", "300") as proc:
        started = time.monotonic()
        assert stop_process(proc.pid, timeout=10) is True
        assert time.monotonic() - started < 5
        assert proc.wait(5) == -15


def test_a_process_that_ignores_sigterm_is_killed_after_the_timeout() -> None:
    with stubborn() as proc:
        started = time.monotonic()
        assert stop_process(proc.pid, timeout=0.5) is True
        took = time.monotonic() - started
        assert proc.wait(5) == -9
        assert 0.5 <= took < 5


def test_several_processes_share_one_timeout() -> None:
    with stubborn() as one, stubborn() as two, stubborn() as three:
        started = time.monotonic()
        assert sorted(stop_processes([one.pid, two.pid, three.pid], timeout=1)) == sorted(
            [one.pid, two.pid, three.pid]
        )
        assert time.monotonic() - started < 2.5  # one wait for all, not one each
        assert [p.wait(5) for p in (one, two, three)] == [-9, -9, -9]


def test_a_group_leader_is_stopped_with_everything_in_its_group() -> None:
    script = "sleep 300 & echo $!; wait"
    with child("sh", "-c", script, start_new_session=True) as leader:
        assert leader.stdout is not None
        grandchild = int(leader.stdout.readline())
        assert alive(grandchild)
        assert stop_process(leader.pid, timeout=5, group=True) is True
        leader.wait(5)
        wait_for(lambda: not alive(grandchild), timeout=5, what="the grandchild to end")


def test_without_group_only_the_process_itself_is_signalled() -> None:
    script = "trap 'exit 0' TERM; sleep 300 & echo $!; wait"
    with child("sh", "-c", script, start_new_session=True) as leader:
        assert leader.stdout is not None
        grandchild = int(leader.stdout.readline())
        try:
            assert stop_process(leader.pid, timeout=5) is True
            leader.wait(5)
            assert alive(grandchild)
        finally:
            stop_process(grandchild, timeout=5)


def test_a_process_the_guard_disowns_is_never_signalled() -> None:
    with child("sleep", "300") as proc:
        assert stop_process(proc.pid, timeout=0.2, is_ours=lambda: False) is False
        assert proc.poll() is None and alive(proc.pid)


def test_a_process_that_is_gone_is_not_reported_stopped() -> None:
    with child("true") as proc:
        proc.wait(5)
    assert stop_process(proc.pid, timeout=0.2) is False


@pytest.mark.parametrize("pid", [0, -1, True])
def test_pids_that_mean_groups_or_everyone_never_get_a_pidfd(pid: int) -> None:
    assert pidfd_of(pid) is None


def test_every_process_of_a_user_is_stopped() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run processes as another UID")
    # A UID no account has, so nothing else on the machine can run as it.
    uid = 3_000_000 + secrets.randbelow(1_000_000)
    assert processes_of_user(uid) == []
    with stubborn(user=uid, group=uid) as one, child("sleep", "300", user=uid) as two:
        assert sorted(processes_of_user(uid)) == sorted([one.pid, two.pid])
        assert sorted(stop_user_processes(uid, timeout=0.5)) == sorted([one.pid, two.pid])
        assert (one.wait(5), two.wait(5)) == (-9, -15)
    assert processes_of_user(uid) == []
