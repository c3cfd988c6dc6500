"""Section 4, scale: a cloud site of its own seeded with 1,000 homes (single-account mode) and
10,000 mappings (`cloud manage seed_scale`): the edge sync from scratch, one-mapping changes
through the API, HAProxy's memory and latency with the large map against one route; then
homes provisioned (system users) and released through the API on the main site."""

from __future__ import annotations

import json
import time
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from workers.bench import tools as bt
from workers.bench.harness import (
    ONE_CLIENT,
    Bench,
    check,
    free_port_range,
    haproxy_pids,
    in_ms,
    log,
    users_with,
)
from workers.local.pebble import mock_dns
from workers.local.procs import wait_for
from workers.local.sites import CloudSite, prove_domain, start_cloud

# Only the first home's ports are ever bound (nginx, for the probe): they are below the
# ephemeral range and above the test suites' sites (tests.support.sites.port_base).
SCALE_PORTS = range(30000, 32768)
PROBE = "probe.scale.test"


def measure(bench: Bench) -> dict[str, Any]:
    result = _edge(bench)
    result["provision"] = _provision(bench)
    return result


def seed(cloud: CloudSite, homes: int, mappings: int, *extra: str) -> dict[str, Any]:
    """`cloud manage seed_scale`: the rows go in with bulk inserts, which are not what this
    section measures (section 2 measures the API path)."""
    args = ["--homes", str(homes), "--mappings", str(mappings), "--first-host", PROBE, *extra]
    return dict(json.loads(check(cloud.manage("seed_scale", *args), "seed_scale")))


def _edge(bench: Bench) -> dict[str, Any]:
    plan = bench.plan
    homes, total = plan.scale_homes, plan.scale_homes * plan.scale_mappings_per_home
    log(f"· scale: a cloud site with {homes} homes (single-account) and {total} mappings")
    dns = bench.stack.enter_context(mock_dns(bench.root / "scale-dns"))
    settings = {
        "CLOUDATHOME_DNS_RESOLVERS": dns.resolver,
        "CLOUDATHOME_SSH_MODE": "single-account",
        "CLOUDATHOME_HOME_SLOTS": str(homes),
        "CLOUDATHOME_PORT_STRIDE": "10",
        "CLOUDATHOME_PORTS_PER_HOME": "10",
        "CLOUDATHOME_PORT_BASE": str(free_port_range(10, SCALE_PORTS)),
        "CLOUDATHOME_SSH_USER_PREFIX": "bs",
        **ONE_CLIENT,
    }
    cloud = bench.stack.enter_context(start_cloud(bench.root / "scale", settings))
    admin = cloud.api(cloud.token("admin", cloud.admin_password))
    token_file = bench.root / "scale" / "tokens.json"
    started = time.monotonic()
    seeded = seed(cloud, homes, total, "--token-file", str(token_file))
    bulk_s = time.monotonic() - started
    first_home, probe_port = seeded["first_home"], int(seeded["first_mapping"]["tunnel_port"])
    owner = cloud.api(json.loads(token_file.read_text())[first_home["owner"]])
    # The first home proves scale.test as a user would, to map change*.scale.test through the API.
    prove_domain(cloud, owner, first_home["slug"], dns, "scale.test")
    bench.stack.enter_context(bt.nginx_server(bench.root / "scale-nginx", [probe_port]))
    rss_empty = _rss(haproxy_pids(cloud))
    workers_before = set(haproxy_pids(cloud))

    def sync() -> tuple[float, dict[str, int]]:
        began = time.monotonic()
        r = admin.post(f"{cloud.url}/api/admin/proxy-mappings/sync", timeout=120)
        r.raise_for_status()
        return time.monotonic() - began, r.json()

    sync_s, counts = sync()
    if counts["added"] < total:  # beat's periodic sync got there first: start from empty
        seed(cloud, homes, 0)
        sync()
        seed(cloud, homes, total)
        sync_s, counts = sync()
    log(f"· scale: sync from scratch took {sync_s:.3f} s ({counts})")
    noop_s, _ = sync()
    https = cloud.https_port
    if bt.time_until(lambda: bt.tls_ok(https, PROBE), 20) is None:
        raise RuntimeError(f"{PROBE} is not routable after the sync")
    rss_large = _rss(haproxy_pids(cloud))
    probe_url = f"https://{PROBE}:{https}/{bt.SMALL_FILE}"
    large = bench.wrk(probe_url, plan.latency_seconds, new_connections=True)
    changes: list[float] = []
    log(f"· scale: {plan.scale_changes} one-mapping changes through the API")
    for i in range(plan.scale_changes):
        host = f"change{i}.scale.test"
        began = time.monotonic()
        r = owner.post(
            f"{cloud.url}/api/homes/{first_home['slug']}/proxy-mappings",
            json={"host": host, "scheme": "https", "tunnel_port": probe_port},
            timeout=10,
        )
        if r.status_code != 201:
            raise RuntimeError(f"mapping {host}: HTTP {r.status_code} {r.text[:200]}")
        if bt.time_until(bt.routable(https, host), 20) is None:
            raise RuntimeError(f"{host} never became routable")
        changes.append(time.monotonic() - began)
    reloads = len(set(haproxy_pids(cloud)) - workers_before)
    runtime_ms = _runtime_api_ms(cloud)
    began = time.monotonic()
    seed(cloud, homes, 1)
    sync()
    shrink_s = time.monotonic() - began
    if bt.time_until(lambda: bt.tls_ok(https, PROBE), 20) is None:
        raise RuntimeError(f"{PROBE} lost its route with the small map")
    small = bench.wrk(probe_url, plan.latency_seconds, new_connections=True)
    return {
        "homes": homes,
        "mappings": counts["added"],
        "bulk_insert_s": round(bulk_s, 3),
        "sync_from_scratch_s": round(sync_s, 3),
        "sync_noop_s": round(noop_s, 3),
        "shrink_to_one_s": round(shrink_s, 3),
        "change_to_routable": in_ms(changes),
        "runtime_api_ms": runtime_ms,
        "reloads": reloads,
        "haproxy_rss_kb": {"empty": rss_empty, "large": rss_large},
        "latency_new_connection": {
            "large_map": {
                "p50_ms": large.p50_ms,
                "p99_ms": large.p99_ms,
                "per_s": round(large.rps, 1),
            },
            "small_map": {
                "p50_ms": small.p50_ms,
                "p99_ms": small.p99_ms,
                "per_s": round(small.rps, 1),
            },
        },
    }


def _provision(bench: Bench) -> dict[str, Any]:
    m = bench.main()
    count = bench.plan.provision_homes
    log(f"· scale: provisioning {count} homes (system users) through the API")
    token_file = bench.root / "provision-tokens.json"
    accounts = seed(m.cloud, 0, 0, "--accounts", str(count), "--token-file", str(token_file))
    tokens: dict[str, str] = json.loads(token_file.read_text())
    sessions = {user: m.cloud.api(tokens[user]) for user in accounts["accounts"]}
    keys = {user: _public_key() for user in sessions}
    started = time.monotonic()
    slugs: dict[str, str] = {}
    for user, api in sessions.items():
        r = api.post(f"{m.cloud.url}/api/homes", json={"public_key": keys[user]}, timeout=10)
        if r.status_code != 201:
            raise RuntimeError(f"claim for {user}: HTTP {r.status_code} {r.text[:200]}")
        slugs[user] = r.json()["slug"]
    pending = set(slugs)
    deadline = time.monotonic() + (30 + 2 * count)
    while pending and time.monotonic() < deadline:
        for user in sorted(pending):
            r = sessions[user].get(f"{m.cloud.url}/api/homes/{slugs[user]}", timeout=10)
            status = r.json()["status"]
            if status == "failed":
                raise RuntimeError(f"provisioning {user} failed: {r.json()}")
            if status == "ready":
                pending.discard(user)
        time.sleep(0.05)
    if pending:
        raise RuntimeError(f"{len(pending)} homes not ready in time")
    ready_s = time.monotonic() - started
    marker = "_seedaccount"  # the identity of seed-account-<n>: <prefix><slot>_seedaccount<n>
    created = len(users_with(m.prefix, marker))
    began = time.monotonic()
    for user, api in sessions.items():
        api.delete(f"{m.cloud.url}/api/homes/{slugs[user]}", timeout=10)
    wait_for(
        lambda: not users_with(m.prefix, marker),
        timeout=30 + count,
        what="the provisioned homes' system users removed",
    )
    release_s = time.monotonic() - began
    return {
        "homes": count,
        "system_users_created": created,
        "claim_to_all_ready_s": round(ready_s, 3),
        "release_to_all_users_gone_s": round(release_s, 3),
        "system_users_left": len(users_with(m.prefix, marker)),
    }


def _runtime_api_ms(cloud: CloudSite) -> dict[str, float]:
    """HAProxy's own share of a change at this map size: add + del of one key, by hand."""
    sock = cloud.state / "haproxy" / "admin.sock"
    target = cloud.state / "haproxy" / "maps" / "https.map"
    began = time.monotonic()
    bt.haproxy_quiet(sock, f"add map {target} runtime-probe.scale.test {SCALE_PORTS.start}")
    added = time.monotonic()
    bt.haproxy_quiet(sock, f"del map {target} runtime-probe.scale.test")
    deleted = time.monotonic()
    entries = [line for line in bt.haproxy(sock, f"show map {target}").splitlines() if line]
    shown = time.monotonic()
    return {
        "add_map_ms": round((added - began) * 1000, 3),
        "del_map_ms": round((deleted - added) * 1000, 3),
        "show_map_ms": round((shown - deleted) * 1000, 3),
        "entries": len(entries),
    }


def _rss(pids: list[int]) -> int:
    return sum(bt.memory_kb(p)[0] for p in pids)


def _public_key() -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    raw = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return raw.decode()
