"""Section 3, recovery: SIGKILL to the ssh of a tunnel the Home Console opened -> the first
request through the edge again, brought back by the console's supervisor."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from typing import Any

import requests

from workers.bench import certs
from workers.bench import tools as bt
from workers.bench.harness import Bench, in_s, log
from workers.local.procs import wait_for


def measure(bench: Bench) -> dict[str, Any]:
    m, console = bench.main(), bench.console()
    home, api = console.home, console.api
    domain = console.domains[0] if console.domains else certs.issue(bench, console)
    host = domain["name"]
    r = api.post(
        f"{home.url}/api/domains/{domain['id']}/proxy-entries",
        json={"hostname": host, "home_port": m.direct_port},
        timeout=30,
    )
    r.raise_for_status()
    url = f"{home.url}/api/proxy-entries/{r.json()['id']}"
    api.post(f"{url}/tunnel", json={"open": True}, timeout=10).raise_for_status()
    bench.stack.callback(_close_entry, api, url)

    def open_pid() -> int | None:
        tunnel = api.get(url, timeout=10).json()["tunnel"]
        if tunnel["state"] == "open" and tunnel["pid"]:
            pid = int(tunnel["pid"])
            if (started := bt.start_time(pid)) is not None:
                bench.strays.append((pid, started))
                return pid
        return None

    pid = wait_for(open_pid, timeout=60, interval=0.1, what="the entry's tunnel")
    if bt.time_until(lambda: bt.tls_ok(m.cloud.https_port, host), 20) is None:
        raise RuntimeError(f"{host} is not served through the console's tunnel")
    back: list[float] = []
    for i in range(bench.plan.recoveries):
        log(f"· recovery {i + 1}/{bench.plan.recoveries}: kill the tunnel's ssh (pid {pid})")
        if bt.comm(pid) != "ssh":
            raise RuntimeError(f"pid {pid} is not the tunnel's ssh any more")
        os.kill(pid, signal.SIGKILL)
        took = bt.time_until(lambda: bt.tls_ok(m.cloud.https_port, host), 60, interval=0.02)
        if took is None:
            raise RuntimeError("traffic did not come back within 60 s after killing ssh")
        back.append(took)
        pid = wait_for(
            _other_than(open_pid, pid),
            timeout=30,
            interval=0.1,
            what="the respawned tunnel recorded",
        )
    period = home.env.get("CLOUDATHOME_TUNNEL_SUPERVISE_SECONDS", "3 (default)")
    return {"kill_to_traffic": in_s(back), "supervise_every_s": period}


def _other_than(current: Callable[[], int | None], old: int) -> Callable[[], int | None]:
    def check() -> int | None:
        pid = current()
        return pid if pid != old else None

    return check


def _close_entry(api: requests.Session, url: str) -> None:
    with contextlib.suppress(requests.RequestException, TimeoutError):
        api.post(f"{url}/tunnel", json={"open": False}, timeout=10)
        wait_for(lambda: api.get(url, timeout=10).json()["tunnel"]["state"] == "closed", timeout=20)
