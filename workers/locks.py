"""One Redis lock where two runs must not overlap (edge sync, tunnel supervisor)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import redis

from workers.celery import TransientError


def redis_client(url: str) -> redis.Redis:
    if url.startswith("redis+socket://"):
        return redis.Redis(unix_socket_path=url.removeprefix("redis+socket://"), socket_timeout=5)
    return redis.Redis.from_url(url, socket_timeout=5)


@contextlib.contextmanager
def exclusive(url: str, name: str, timeout: float = 120, wait: float = 30) -> Iterator[None]:
    """Hold `name` while the block runs; a run that cannot get it in `wait` s is retried."""
    lock = redis_client(url).lock(
        f"cloudathome:lock:{name}", timeout=timeout, blocking_timeout=wait
    )
    if not lock.acquire():
        raise TransientError(f"lock {name} is held by another run")
    try:
        yield
    finally:
        with contextlib.suppress(redis.exceptions.LockError):
            lock.release()
