"""The cloud's /metrics and each mapping's traffic against the whole site (`cloudathome cloud
up`): a real request through the edge to a home's service over its tunnel moves HAProxy's
counters, the route's connections and bytes, and the samples behind the charts; the output
parses with prometheus_client's own parser; only the token opens it, HAProxy being in front."""

from __future__ import annotations

import contextlib
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.net import self_signed, serve, tls_get
from tests.support.sites import CloudSite
from tests.support.ssh import known_hosts, reverse_tunnel
from tests.support.tenants import Tenant, tenant
from workers.local.procs import stop_pid, wait_for

TOKEN = secrets.token_urlsafe(32)
# The module's cloud (tests/conftest.py) samples every 2 s.
CLOUD_ENV = {"CLOUDATHOME_METRICS_TOKEN": TOKEN, "CLOUDATHOME_TRAFFIC_SAMPLE_SECONDS": "2"}


@pytest.fixture(scope="module")
def tess(cloud: CloudSite, tmp_path_factory: pytest.TempPathFactory) -> Tenant:
    return tenant(cloud, tmp_path_factory.mktemp("tess"), "tess")


def scrape(cloud: CloudSite, **headers: str) -> requests.Response:
    return requests.get(f"{cloud.url}/metrics", headers=headers, timeout=30)


def families(cloud: CloudSite) -> dict[str, Any]:
    r = scrape(cloud, Authorization=f"Bearer {TOKEN}")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {f.name: f for f in text_string_to_metric_families(r.text)}


def value(family: Any, suffix: str = "", **labels: str) -> float:
    """The one sample of `family` (name + suffix) with these labels; 0 when there is none."""
    found = [
        s.value
        for s in family.samples
        if s.name == family.name + suffix and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) <= 1, found
    return found[0] if found else 0.0


def test_the_clouds_metrics_parse_and_count_homes_mappings_tasks_and_haproxy(
    cloud: CloudSite, tess: Tenant
) -> None:
    got = families(cloud)
    assert value(got["cloudathome_homes"], status="ready") >= 1
    assert value(got["cloudathome_homes"], status="free") >= 1
    assert {s.labels["scheme"] for s in got["cloudathome_mappings"].samples} == {
        "https",
        "http",
        "tcp",
    }
    tasks = got["cloudathome_task_duration_seconds"]
    edge_sync = {"task": "cloud.edge.tasks.edge_sync", "outcome": "success"}
    assert value(tasks, "_count", **edge_sync) >= 1  # every worker start runs one
    assert value(tasks, "_bucket", le="+Inf", **edge_sync) == value(tasks, "_count", **edge_sync)
    provision = {"task": "cloud.homes.tasks.home_provision", "outcome": "success"}
    assert value(tasks, "_count", **provision) >= 1
    assert value(got["cloudathome_home_provision_seconds"], "_count", outcome="ok") >= 1
    assert value(got["cloudathome_edge_sync_seconds"], "_count", kind="full", outcome="ok") >= 1
    assert value(got["haproxy_process_nbthread"]) >= 1  # HAProxy's own exporter
    assert "haproxy_frontend_connections" in got
    up = got["cloudathome_metrics_source_up"]
    assert value(up, source="redis") == 1 and value(up, source="haproxy") == 1


def test_metrics_need_the_token_since_every_request_reaches_the_web_through_haproxy(
    cloud: CloudSite,
) -> None:
    # Even from this machine: HAProxy connects from loopback for everyone, and says so.
    for headers in ({}, {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": f"Basic {TOKEN}"}):
        r = scrape(cloud, **headers)
        assert r.status_code == 403, r.text
        assert r.json()["field"] == "Authorization" and "METRICS_TOKEN" in r.json()["detail"]
    assert scrape(cloud, Authorization=f"Bearer {TOKEN}").status_code == 200
    r = requests.post(
        f"{cloud.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    assert r.status_code in (403, 405)  # never an HTML error page


def _mapping(cloud: CloudSite, tenant: Tenant, host: str) -> dict:
    r = tenant.api.get(f"{cloud.url}/api/homes/{tenant.home['slug']}/proxy-mappings", timeout=10)
    assert r.status_code == 200, r.text
    return next(m for m in r.json() if m["host"] == host)


def test_traffic_through_the_edge_moves_the_counters_the_mapping_and_its_samples(
    cloud: CloudSite, tess: Tenant, tmp_path: Path
) -> None:
    host, port = "shop.tess.homes.test", tess.home["port_base"]
    known = known_hosts(tmp_path / "known_hosts", cloud.ssh_port, tess.home["ssh_host_key"])
    ctx, der = self_signed(tmp_path, host)
    slug = tess.home["slug"]
    r = tess.api.post(
        f"{cloud.url}/api/homes/{slug}/proxy-mappings",
        json={"host": host, "tunnel_port": port},
        timeout=10,
    )
    assert r.status_code == 201, r.text
    created = r.json()["traffic"]
    assert created["connected"] is False and created["connections_total"] == 0
    assert created["history"] == [] and created["connections_current"] == 0
    before = families(cloud)
    with serve("tess-shop", ctx, der) as svc:
        tunnel: subprocess.Popen = reverse_tunnel(
            tess.key, known, cloud.ssh_port, tess.home["ssh_username"], port, svc.port
        )
        try:
            wait_for(lambda: tls_get(cloud.https_port, host)[0] == b"tess-shop", timeout=20)
            for _ in range(4):
                assert tls_get(cloud.https_port, host)[0] == b"tess-shop"
            after = families(cloud)
            traffic = wait_for(
                lambda: (
                    (t := _mapping(cloud, tess, host)["traffic"])["connections_current"] == 0 and t
                ),
                what="connections closed",
            )
            assert traffic["connected"] is True
            assert traffic["connections_total"] >= 5
            assert traffic["bytes_in"] > 5 * 200 and traffic["bytes_out"] > 5 * 500
            # The sampler (every 2 s here) folds it into the last hour's samples.
            history = wait_for(
                lambda: (
                    (h := _mapping(cloud, tess, host)["traffic"]["history"])
                    and sum(s["connections"] for s in h) >= 5
                    and h
                ),
                timeout=20,
                what="samples with the connections",
            )
            assert (
                sum(s["bytes_out"] for s in history)
                == _mapping(cloud, tess, host)["traffic"]["bytes_out"]
            )
            assert history[-1]["connected"] is True
            connected = value(after["cloudathome_tunnels_connected"])
            assert connected == value(before["cloudathome_tunnels_connected"]) + 1
        finally:
            stop_pid(tunnel)
    https = {"proxy": "fe_https"}
    moved = value(after["haproxy_frontend_connections"], "_total", **https) - value(
        before["haproxy_frontend_connections"], "_total", **https
    )
    assert moved >= 5
    # ClientAliveInterval drops a gone client's session; its forward stops listening.
    wait_for(
        lambda: _mapping(cloud, tess, host)["traffic"]["connected"] is False,
        timeout=30,
        what="the tunnel seen down",
    )


def test_a_released_home_leaves_nothing_of_its_traffic_to_the_next_owner(
    cloud: CloudSite, tmp_path: Path
) -> None:
    first = tenant(cloud, tmp_path, "ursula")
    host, port = "old.ursula.homes.test", first.home["port_base"]
    r = first.api.post(
        f"{cloud.url}/api/homes/{first.home['slug']}/proxy-mappings",
        json={"host": host, "tunnel_port": port},
        timeout=10,
    )
    assert r.status_code == 201, r.text
    # A connection the edge counts for the port, with nothing listening behind it.
    wait_for(lambda: _poke(cloud, host) or _counted(cloud, first, host) > 0, timeout=20)
    assert first.api.delete(f"{cloud.url}/api/homes/{first.home['slug']}", timeout=10).ok
    wait_for(lambda: _free_slot(cloud, first.home["index"]), timeout=30, what="slot freed")
    second = tenant(cloud, tmp_path, "victor")
    assert second.home["index"] == first.home["index"]  # the same slot, the same ports
    r = second.api.post(
        f"{cloud.url}/api/homes/{second.home['slug']}/proxy-mappings",
        json={"host": "new.victor.homes.test", "tunnel_port": port},
        timeout=10,
    )
    assert r.status_code == 201, r.text
    traffic = r.json()["traffic"]
    assert (traffic["connections_total"], traffic["bytes_in"], traffic["history"]) == (0, 0, [])


def _counted(cloud: CloudSite, tenant: Tenant, host: str) -> int:
    return int(_mapping(cloud, tenant, host)["traffic"]["connections_total"])


def _poke(cloud: CloudSite, host: str) -> bool:
    """One TLS connection through the edge to `host`, whatever becomes of it."""
    with contextlib.suppress(OSError):
        tls_get(cloud.https_port, host, timeout=2)
    return False


def _free_slot(cloud: CloudSite, index: int) -> bool:
    done = cloud.manage(
        "shell",
        "-c",
        f"from cloud.homes.models import Home; print('slot', Home.objects.get(index={index}).status)",
    )
    return "slot free" in done.stdout.splitlines()
