"""Tunnel workflows that race with the supervisor: a tunnel stopped now stays stopped even when
a reconciler run that read it as wanted is in progress (the lock they share is in a real Redis)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from home.tunnels import services, ssh
from home.tunnels.models import Tunnel
from workers.local.procs import running, wait_for
from workers.locks import exclusive

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def redis_url(tmp_path: Path, settings: Any) -> Iterator[str]:
    sock = tmp_path / "redis.sock"
    argv = ["redis-server", "--port", "0", "--unixsocket", str(sock), "--save", "",
            "--appendonly", "no"]  # fmt: skip
    with running(argv, log=tmp_path / "redis.log", ready=sock.exists):
        settings.REDIS_URL = f"redis+socket://{sock}"
        yield settings.REDIS_URL


def test_a_tunnel_stopped_now_stays_stopped_when_a_reconciler_run_respawned_it(
    cloud_down: dict[str, Any],
    redis_url: str,
    tmp_path: Path,
) -> None:
    tunnel = Tunnel.objects.create(
        name="acme nas.example.com", remote_port=2103, local_port=8443, temporary=True,
        desired_open=True,
    )  # fmt: skip
    held = threading.Event()
    # The process a supervisor run spawns and records for the tunnel while it holds the lock.
    with running(["sleep", "60"], log=tmp_path / "respawned.log") as respawned:
        start = wait_for(lambda: ssh.start_time_of(respawned.pid), what="a start time")

        def reconciler_run() -> None:
            with exclusive(redis_url, f"tunnel-{tunnel.pk}", timeout=60, wait=5):
                held.set()
                time.sleep(0.5)
                Tunnel.objects.filter(pk=tunnel.pk).update(pid=respawned.pid, start_time=start)
            connection.close()

        run = threading.Thread(target=reconciler_run)
        run.start()
        assert held.wait(10)
        services.tunnel_stop_now(tunnel)  # the certificate flow's cleanup
        run.join(10)
        assert respawned.wait(5) is not None, "the respawned process outlived the stop"
    tunnel.refresh_from_db()
    assert (tunnel.desired_open, tunnel.pid) == (False, None)
