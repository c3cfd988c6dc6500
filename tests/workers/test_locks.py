"""The Redis lock (workers.locks) against the machine's real Redis: one holder at a time, a
held lock is a transient error, and a lock left by a killed process is broken at once."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from workers.celery import TransientError
from workers.local.procs import free_port, running, stop_pid
from workers.locks import exclusive, redis_client

REDIS = os.environ.get("CLOUDATHOME_TEST_REDIS", "redis://127.0.0.1:6379/0")
ROOT = Path(__file__).resolve().parents[2]
HOLD = (
    "import sys, time; from workers.locks import exclusive\n"
    "with exclusive(sys.argv[1], sys.argv[2], timeout=120):\n"
    "    print('held', flush=True); time.sleep(300)\n"
)


@pytest.fixture
def name() -> Iterator[str]:
    """A lock name of this test's own; its key is removed afterwards whatever happened."""
    lock = f"test-{secrets.token_hex(6)}"
    yield lock
    redis_client(REDIS).delete(f"cloudathome:lock:{lock}")


def holder(name: str) -> subprocess.Popen:
    """Another process holding `name` (it says 'held' once it does)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, REDIS, name], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


def test_the_lock_is_held_during_the_block_and_released_after(name: str) -> None:
    client = redis_client(REDIS)
    with exclusive(REDIS, name):
        value = client.get(f"cloudathome:lock:{name}")
        assert value is not None
        assert value.decode().startswith(f"{socket.gethostname()}:{os.getpid()}:")
    assert client.get(f"cloudathome:lock:{name}") is None


def test_a_second_run_waits_then_gives_up_with_a_transient_error(name: str) -> None:
    proc = holder(name)
    try:
        started = time.monotonic()
        with (
            pytest.raises(TransientError, match=rf"lock {name} is held by another run"),
            exclusive(REDIS, name, wait=0.5),
        ):
            pass
        assert 0.4 <= time.monotonic() - started < 5
    finally:
        stop_pid(proc)


def test_a_lock_left_by_a_killed_holder_is_broken_at_once(name: str) -> None:
    proc = holder(name)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    started = time.monotonic()
    with exclusive(REDIS, name, timeout=120, wait=30):
        took = time.monotonic() - started
    assert took < 5  # not the 30 s wait, let alone the 120 s expiry


def test_a_holder_killed_while_another_run_waits_frees_the_lock_at_once(name: str) -> None:
    proc = holder(name)

    def kill_and_reap() -> None:  # as a worker's parent reaps it; a zombie still has its PID
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    killer = threading.Timer(1.0, kill_and_reap)
    killer.start()
    try:
        started = time.monotonic()
        with exclusive(REDIS, name, timeout=120, wait=30):
            took = time.monotonic() - started
        assert 0.9 <= took < 5
    finally:
        killer.cancel()
        proc.wait(10)


def test_a_lock_of_a_holder_on_another_host_is_never_broken(name: str) -> None:
    client = redis_client(REDIS)
    client.set(f"cloudathome:lock:{name}", f"elsewhere.example:1:{'0' * 32}", ex=60)
    with pytest.raises(TransientError), exclusive(REDIS, name, wait=0.2):
        pass
    assert client.get(f"cloudathome:lock:{name}") is not None


def test_a_lock_that_expired_meanwhile_is_not_released_from_under_its_new_holder(
    name: str,
) -> None:
    client = redis_client(REDIS)
    with exclusive(REDIS, name, timeout=0.3):
        time.sleep(0.6)  # expired: someone else takes it
        client.set(f"cloudathome:lock:{name}", "elsewhere.example:1:new", ex=60)
    assert client.get(f"cloudathome:lock:{name}") == b"elsewhere.example:1:new"


def test_a_stopped_redis_is_a_transient_error(tmp_path: Path, name: str) -> None:
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    with running(argv, log=tmp_path / "redis.log", ready=lambda: _answers(port)) as proc:
        url = f"redis://127.0.0.1:{port}/0"
        with exclusive(url, name, wait=1):
            pass
        stop_pid(proc)
        with (
            pytest.raises(TransientError, match=rf"lock {name}: Redis is not reachable"),
            exclusive(url, name, wait=1),
        ):
            pass


def _answers(port: int) -> bool:
    return bool(redis_client(f"redis://127.0.0.1:{port}/0").ping())
