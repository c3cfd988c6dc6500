"""What the edge counts per route (st_route) and exports, against a real haproxy: connections
and bytes per tunnel port, forgotten on demand, only concurrent connections when the traffic
counters are off, and HAProxy's own Prometheus exporter on its socket."""

from __future__ import annotations

import dataclasses
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cloud.edge.haproxy import Edge, EdgeConfig, EdgeUnavailable, Route, exporter_text, write_config
from cloud.edge.tunnels import tunnel_ports_listening
from tests.cloud.edge.test_haproxy import edge_config, haproxy
from tests.support.net import Service, self_signed, serve, tls_get
from workers.local.procs import wait_for


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, Service]]:
    certs = tmp_path_factory.mktemp("certs")
    a_ctx, a_der = self_signed(certs, "a.count.test")
    b_ctx, b_der = self_signed(certs, "b.count.test")
    with serve("count-a", a_ctx, a_der) as a, serve("count-b", b_ctx, b_der) as b:
        yield a, b


@pytest.fixture(scope="module")
def edge(
    tmp_path_factory: pytest.TempPathFactory, services: tuple[Service, Service]
) -> Iterator[Edge]:
    base = tmp_path_factory.mktemp("counting")
    cfg = edge_config(base / "state")
    write_config(cfg)
    a, b = services
    with haproxy(cfg, base / "haproxy.log"):
        running = Edge(cfg)
        running.sync(
            [Route("a.count.test", a.port, "https"), Route("b.count.test", b.port, "https")]
        )
        yield running


def test_each_route_counts_its_own_connections_and_bytes(
    edge: Edge, services: tuple[Service, Service]
) -> None:
    a, b = services
    before = edge.route_counters()
    for _ in range(3):
        assert tls_get(edge.cfg.https_port, "a.count.test")[0] == b"count-a"
    after = wait_for(
        lambda: (c := edge.route_counters()).get(a.port) and c[a.port].current == 0 and c,
        what="a's connections closed",
    )
    was = before.get(a.port)
    assert after[a.port].connections == (was.connections if was else 0) + 3
    # A TLS handshake and a GET each way: more than a few hundred bytes in both directions.
    assert after[a.port].bytes_in > (was.bytes_in if was else 0) + 3 * 200
    assert after[a.port].bytes_out > (was.bytes_out if was else 0) + 3 * 500
    assert after.get(b.port) == before.get(b.port)  # the other route counted nothing
    # One lookup per port gives the same as the whole table; a port it lacks, nothing.
    assert edge.route_counters([a.port, 65000]) == {a.port: after[a.port]}


def test_an_open_connection_is_counted_as_current_while_it_lasts(
    edge: Edge, services: tuple[Service, Service]
) -> None:
    _, b = services
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", edge.cfg.https_port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="b.count.test"),
    ):
        assert wait_for(lambda: edge.route_counters([b.port])[b.port].current == 1)
    wait_for(lambda: edge.route_counters([b.port])[b.port].current == 0, what="closed")


def test_the_generation_names_the_running_worker(edge: Edge) -> None:
    pid, _, started = edge.generation().partition(":")
    assert pid == edge.api.info()["Pid"] and started.isdigit()


def test_without_traffic_counters_the_table_keeps_only_concurrent_connections(
    tmp_path: Path, services: tuple[Service, Service]
) -> None:
    cfg = dataclasses.replace(edge_config(tmp_path / "state"), traffic_counters=False)
    write_config(cfg)
    assert "store conn_cur\n" in cfg.config_path.read_text()
    a, _ = services
    with haproxy(cfg, tmp_path / "haproxy.log"):
        off = Edge(cfg)
        off.sync([Route("a.count.test", a.port, "https")])
        tls_get(cfg.https_port, "a.count.test")
        counted = wait_for(lambda: off.route_counters().get(a.port))
        assert (counted.connections, counted.bytes_in, counted.bytes_out) == (0, 0, 0)


def test_haproxys_own_exporter_answers_on_its_socket_and_counts_connections(
    edge: Edge,
) -> None:
    def https_connections() -> float:
        families = text_string_to_metric_families(exporter_text(edge.cfg))
        family = next(f for f in families if f.name == "haproxy_frontend_connections")
        return next(s.value for s in family.samples if s.labels["proxy"] == "fe_https")

    before = https_connections()
    tls_get(edge.cfg.https_port, "a.count.test")
    assert https_connections() == before + 1
    assert edge.cfg.exporter_socket.stat().st_mode & 0o077 == 0  # the site's account only


def test_the_exporter_of_a_stopped_haproxy_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(EdgeUnavailable, match="prometheus exporter"):
        exporter_text(EdgeConfig(tmp_path), timeout=1)


# --- tunnels listening ---------------------------------------------------------------------------


def test_a_port_listening_on_loopback_is_a_connected_tunnel() -> None:
    with (
        socket.create_server(("127.0.0.1", 0)) as tunnel,
        socket.create_server(("0.0.0.0", 0)) as sshd,  # noqa: S104 - as our sshd binds
    ):
        port, ssh_port = tunnel.getsockname()[1], sshd.getsockname()[1]
        listening = tunnel_ports_listening(ssh_port)
        assert listening is not None and port in listening and ssh_port not in listening
    assert port not in (tunnel_ports_listening(ssh_port) or set())


def test_a_process_that_cannot_see_sshds_socket_cannot_tell(tmp_path: Path) -> None:
    # /proc/net of another network namespace, where only something else listens.
    header = "  sl  local_address rem_address   st tx_queue rx_queue\n"
    (tmp_path / "tcp").write_text(header + "   0: 0100007F:07D0 00000000:0000 0A 0:0\n")
    assert tunnel_ports_listening(8022, proc_net=tmp_path) is None
    assert tunnel_ports_listening(2000, proc_net=tmp_path) == {2000}
