"""One Redis lock where two runs must not overlap (edge sync, tunnel supervisor, one
certificate flow per domain). The lock's value names its holder (host and PID), so a lock
left by a process that was killed on this machine is broken at once instead of blocking
recovery until it expires."""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
from collections.abc import Iterator

import redis

from workers.celery import TransientError


def redis_client(url: str, timeout: float = 5) -> redis.Redis:
    if url.startswith("redis+socket://"):
        path = url.removeprefix("redis+socket://")
        return redis.Redis(unix_socket_path=path, socket_timeout=timeout)
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)


def _holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"


def _held_by_dead_local_process(value: bytes | str | None) -> bool:
    text = value.decode(errors="replace") if isinstance(value, bytes) else value or ""
    host, _, rest = text.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, someone else's
    return False


def _break_if_stale(client: redis.Redis, key: str) -> bool:
    """Delete `key` if (and only while) it still names a dead local holder."""
    with client.pipeline() as pipe:
        try:
            pipe.watch(key)
            if not _held_by_dead_local_process(pipe.get(key)):
                return False
            pipe.multi()
            pipe.delete(key)
            pipe.execute()
        except redis.exceptions.WatchError:
            return False
    return True


@contextlib.contextmanager
def exclusive(url: str, name: str, timeout: float = 120, wait: float = 30) -> Iterator[None]:
    """Hold `name` while the block runs; a run that cannot get it in `wait` s is retried."""
    client = redis_client(url)
    key = f"cloudathome:lock:{name}"
    lock = client.lock(key, timeout=timeout)
    token = _holder()
    deadline = time.monotonic() + wait
    try:
        while not lock.acquire(token=token, blocking=False):
            # Checked on every try, so a holder killed meanwhile frees the lock at once too.
            if _break_if_stale(client, key):
                continue
            if time.monotonic() >= deadline:
                raise TransientError(f"lock {name} is held by another run")
            time.sleep(0.1)
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise TransientError(f"lock {name}: Redis is not reachable ({exc})") from exc
    try:
        yield
    finally:
        # Lost meanwhile (expired, or Redis went away): the work is done, and the key, if any,
        # expires by itself.
        with contextlib.suppress(
            redis.exceptions.LockError,
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
        ):
            lock.release()
