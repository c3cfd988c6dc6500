"""Raw TCP routes and client allowlists against a real HAProxy: ssh to a real sshd standing at
home through the edge's public port, megabytes echoed byte for byte, PROXY v2, and allowlists
on https, http and tcp from two loopback sources, changed at run time without a reload."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cloud.edge.haproxy import Edge, EdgeConfig, Route, RuntimeAPI, write_config
from tests.cloud.edge.test_haproxy import haproxy, parse_pp2, worker_pid
from tests.support.net import (
    Echo,
    RawCapture,
    Service,
    echo_refused,
    echo_through,
    http_get,
    self_signed,
    serve,
    tls_get,
    tls_refused,
)
from tests.support.sites import tcp_ports
from tests.support.ssh import HomeSshd, home_sshd, ssh_run
from workers.local.procs import free_port, port_open, wait_for

ALLOWED, REFUSED = "127.0.0.2", "127.0.0.3"


@dataclass
class Site:
    cfg: EdgeConfig
    edge: Edge
    api: RuntimeAPI
    echo: Echo
    capture: RawCapture
    tls: Service
    web: Service
    sshd: HomeSshd
    ports: list[int]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    base = tmp_path_factory.mktemp("tcp")
    first, last = tcp_ports()
    cfg = EdgeConfig(
        state_dir=base / "state",
        https_port=free_port(),
        http_port=free_port(),
        bind="127.0.0.1",
        maxconn=256,
        tcp_ports=(first, last),
    )
    write_config(cfg)
    ctx, der = self_signed(base, "app.example.test")
    echo, capture = Echo(), RawCapture()
    try:
        with (
            serve("tls-home", ctx, der) as tls,
            serve("web-home") as web,
            home_sshd(tmp_path_factory.mktemp("home-sshd")) as sshd,
            haproxy(cfg, base / "haproxy.log"),
        ):
            wait_for(lambda: port_open(first) and port_open(last), timeout=10)
            edge = Edge(cfg)
            yield Site(
                cfg, edge, edge.api, echo, capture, tls, web, sshd, list(range(first, last + 1))
            )
    finally:
        echo.close()
        capture.close()


# --- raw tcp -------------------------------------------------------------------------------------


def test_ssh_reaches_the_sshd_at_home_through_the_edges_public_port(
    site: Site, tmp_path: Path
) -> None:
    public = site.ports[0]
    site.edge.sync([Route("", site.sshd.port, "tcp", public_port=public)])
    out = ssh_run(site.sshd, public, tmp_path / "known_hosts", "echo", "hello-from-home")
    assert out.strip() == "hello-from-home"


def test_a_few_megabytes_come_back_byte_for_byte_and_are_counted_per_route(site: Site) -> None:
    public = site.ports[1]
    site.edge.sync([Route("", site.echo.port, "tcp", public_port=public)])
    data = os.urandom(4 * 1024 * 1024)
    assert echo_through(public, data) == data
    counted = site.edge.route_counters([site.echo.port])[site.echo.port]
    assert counted.connections >= 1
    assert counted.bytes_in >= len(data) and counted.bytes_out >= len(data)


def test_proxy_v2_on_a_tcp_route_tells_the_service_the_real_client_address(site: Site) -> None:
    public = site.ports[2]
    site.edge.sync([Route("", site.capture.port, "tcp", True, public_port=public)])
    with socket.create_connection(("127.0.0.1", public), timeout=3) as raw:
        client_port = raw.getsockname()[1]
        raw.sendall(b"raw bytes")
        source, source_port, rest = parse_pp2(site.capture.seen.get(timeout=5))
    assert (source, source_port) == ("127.0.0.1", client_port)
    assert rest.startswith(b"raw bytes")


def test_a_public_port_without_a_route_and_a_removed_route_are_refused(site: Site) -> None:
    public = site.ports[3]
    site.edge.sync([Route("", site.echo.port, "tcp", public_port=public)])
    assert echo_through(public, b"x") == b"x"
    site.edge.sync([])
    assert echo_refused(public, "127.0.0.1")
    assert f"{public} " not in site.cfg.map_path("tcp").read_text()


@pytest.mark.parametrize(
    ("route", "field"),
    [
        (Route("", 2000, "tcp", public_port=1), "public_port"),
        (Route("", 2000, "tcp"), "public_port"),
        (Route("app.example.test", 2000, "tcp", public_port=30000), "host"),
        (Route("app.example.test", 2000, "https", public_port=30000), "public_port"),
        (Route("app.example.test", 2000, "https", allow=("10.0.0.1/8",)), "allow"),
        (Route("app.example.test", 2000, "https", allow=("nonsense",)), "allow"),
    ],
)
def test_bad_tcp_routes_and_allowlists_are_refused_naming_the_field(
    site: Site, route: Route, field: str
) -> None:
    before = {p.name: p.read_text() for p in site.cfg.maps_dir.iterdir()}
    with pytest.raises(ValueError, match=rf"^{field}: "):
        site.edge.sync([route])
    assert {p.name: p.read_text() for p in site.cfg.maps_dir.iterdir()} == before


def test_two_tcp_routes_on_one_public_port_are_refused(site: Site) -> None:
    public = site.ports[0]
    with pytest.raises(ValueError, match=r"^public_port: .* twice"):
        site.edge.desired_maps(
            [Route("", 2000, "tcp", public_port=public), Route("", 2001, "tcp", public_port=public)]
        )


def test_a_tunnel_port_inside_the_public_range_is_refused(site: Site) -> None:
    with pytest.raises(ValueError, match=r"^port: .* loop"):
        site.edge.desired_maps([Route("", site.ports[1], "tcp", public_port=site.ports[0])])


def test_a_public_range_that_holds_another_listener_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^tcp_ports: .* https_port"):
        EdgeConfig(state_dir=tmp_path, https_port=30001, http_port=80, tcp_ports=(30000, 30010))


# --- allowlists ----------------------------------------------------------------------------------


def test_an_allowlist_serves_its_networks_and_closes_every_other_client_on_tcp(
    site: Site,
) -> None:
    public = site.ports[4]
    site.edge.sync([Route("", site.echo.port, "tcp", public_port=public, allow=(f"{ALLOWED}/32",))])
    assert echo_through(public, b"hi", ALLOWED) == b"hi"
    assert echo_refused(public, REFUSED)


def test_an_allowlist_on_https_closes_the_refused_client_before_the_service(site: Site) -> None:
    site.edge.sync([Route("app.example.test", site.tls.port, "https", allow=("127.0.0.2/32",))])
    assert tls_get(site.cfg.https_port, "app.example.test", source=ALLOWED)[0] == b"tls-home"
    assert tls_refused(site.cfg.https_port, "app.example.test", source=REFUSED)


def test_an_allowlist_on_http_answers_403_to_the_refused_client(site: Site) -> None:
    site.edge.sync([Route("web.example.test", site.web.port, "http", allow=("127.0.0.2/32",))])
    assert http_get(site.cfg.http_port, "web.example.test", source=ALLOWED) == (200, b"web-home")
    assert http_get(site.cfg.http_port, "web.example.test", source=REFUSED)[0] == 403


def test_allowlists_change_at_run_time_without_a_reload(site: Site) -> None:
    public = site.ports[5]
    pid = worker_pid(site.api)

    def routes(tcp: tuple[str, ...], web: tuple[str, ...]) -> list[Route]:
        return [
            Route("", site.echo.port, "tcp", public_port=public, allow=tcp),
            Route("web.example.test", site.web.port, "http", allow=web),
            Route("open.example.test", site.web.port, "http"),
        ]

    site.edge.sync(routes(("127.0.0.2/32",), ("127.0.0.3/32",)))
    assert echo_through(public, b"a", ALLOWED) == b"a" and echo_refused(public, REFUSED)
    assert http_get(site.cfg.http_port, "web.example.test", source=ALLOWED)[0] == 403
    assert http_get(site.cfg.http_port, "web.example.test", source=REFUSED)[0] == 200
    # Swapped, then widened to the whole loopback network (which holds both /32 cells).
    site.edge.sync(routes(("127.0.0.3/32",), ("127.0.0.2/32",)))
    assert echo_refused(public, ALLOWED) and echo_through(public, b"b", REFUSED) == b"b"
    assert http_get(site.cfg.http_port, "web.example.test", source=ALLOWED)[0] == 200
    assert http_get(site.cfg.http_port, "web.example.test", source=REFUSED)[0] == 403
    site.edge.sync(routes(("127.0.0.0/8", "127.0.0.3/32"), ("::1/128",)))
    assert echo_through(public, b"c", ALLOWED) == b"c"
    assert echo_through(public, b"d", REFUSED) == b"d"
    assert http_get(site.cfg.http_port, "web.example.test", source=ALLOWED)[0] == 403  # IPv6 only
    assert http_get(site.cfg.http_port, "open.example.test", source=REFUSED)[0] == 200
    # No allowlist: every client again, and nothing of the allowlists is left in the maps.
    site.edge.sync(routes((), ()))
    assert echo_through(public, b"e", REFUSED) == b"e"
    assert http_get(site.cfg.http_port, "web.example.test", source=REFUSED)[0] == 200
    assert site.api.show_map(site.cfg.map_path("networks")) == {}
    assert site.api.show_map(site.cfg.map_path("allow")) == {}
    assert worker_pid(site.api) == pid


def test_one_network_in_two_allowlists_grants_each_route_only_what_its_own_list_holds(
    site: Site,
) -> None:
    a, b = site.ports[6], site.ports[7]
    site.edge.sync(
        [
            Route("", site.echo.port, "tcp", public_port=a, allow=("127.0.0.0/8",)),
            Route("", site.echo.port, "tcp", public_port=b, allow=("127.0.0.2/32",)),
        ]
    )
    # 127.0.0.3 falls in the /8 cell only: route a has it, route b does not.
    assert echo_through(a, b"x", REFUSED) == b"x" and echo_refused(b, REFUSED)
    # 127.0.0.2 falls in the /32 cell, which both lists contain.
    assert echo_through(a, b"y", ALLOWED) == b"y" and echo_through(b, b"z", ALLOWED) == b"z"
