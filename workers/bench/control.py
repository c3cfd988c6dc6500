"""Section 2, the control plane: a mapping created through the API -> the first request through
the edge, deleted -> unreachable; keygen + register -> the first tunnel the cloud accepts."""

from __future__ import annotations

import secrets
import time
from typing import Any

from workers.bench import tools as bt
from workers.bench.harness import Bench, Main, check, in_ms, in_s, load_link, log, users_with
from workers.local.procs import wait_for
from workers.local.sites import register_home


def measure(bench: Bench) -> dict[str, Any]:
    m = bench.main()
    https, slug = m.cloud.https_port, m.link["home_slug"]
    created: list[float] = []
    deleted: list[float] = []
    failures = 0
    log(f"· control plane: {bench.plan.mappings} mappings created, then deleted")
    for i in range(bench.plan.mappings):
        host = f"cp{i}.bench.test"
        started = time.monotonic()
        bench.create_mapping(m.cloud, m.home_api, m.link, host, m.edge_port)
        if bt.time_until(bt.routable(https, host), 10) is None:
            failures += 1
            continue
        created.append(time.monotonic() - started)
        started = time.monotonic()
        r = m.home_api.delete(f"{m.cloud.url}/api/homes/{slug}/proxy-mappings/{host}", timeout=10)
        if r.status_code != 204:
            raise RuntimeError(f"deleting mapping {host}: HTTP {r.status_code}")
        if bt.time_until(bt.unroutable(https, host), 10) is None:
            failures += 1
            continue
        deleted.append(time.monotonic() - started)
    registrations, tunnel_parts = _registrations(bench, m)
    return {
        "create_to_routable": in_ms(created),
        "delete_to_unreachable": in_ms(deleted),
        "failures": failures,
        "register_to_tunnel": in_s(registrations),
        "tunnel_accepted_after_register": in_s(tunnel_parts),
    }


def _registrations(bench: Bench, m: Main) -> tuple[list[float], list[float]]:
    """(keygen + register + tunnel accepted, of which the tunnel) per new home. The tunnel's
    part is the master connection spawned -> its forward accepted, as the command running it
    measured it, so the start-up of that command is not counted (the console's worker is up
    already)."""
    totals: list[float] = []
    tunnels: list[float] = []
    for i in range(bench.plan.registrations):
        log(f"· registration -> first tunnel ({i + 1}/{bench.plan.registrations})")
        user, password = f"reg{i}", secrets.token_urlsafe(12)
        m.cloud.create_user(user, password)
        root = bench.root / f"reg{i}"
        started = time.monotonic()
        config, done = register_home(m.cloud, root, user, password)
        check(done, f"register {user}")
        registered = time.monotonic() - started
        link = load_link(config)
        forwards = [(int(link["ports"]["base"]), m.direct_port)]
        with bench.tunnel(root, config, forwards) as tunnel:
            totals.append(registered + tunnel.ready_s)
            tunnels.append(tunnel.ready_s)
        api = m.cloud.api(str(link["auth_token"]))
        api.delete(f"{m.cloud.url}/api/homes/{link['home_slug']}", timeout=10)
        identity = f"_{user}"
        wait_for(
            lambda: not users_with(m.prefix, identity),  # noqa: B023
            timeout=30,
            what=f"{user}'s system user removed",
        )
    return totals, tunnels
