"""The edge's flood limits against a real HAProxy: each cap trips (refusal, close, 400/408) for
the client that crosses it while another client address is still served, and ordinary use
stays under the defaults. Attackers and victims use distinct loopback source addresses."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from cloud.edge.haproxy import (
    Edge,
    EdgeConfig,
    EdgeLimits,
    Route,
    RuntimeAPI,
    config_command,
    write_config,
)
from tests.support.net import Service, self_signed, serve
from workers.bench.attack import closed_by_peer, connect_from, hello
from workers.local.procs import free_port, port_open, running, wait_for

SMALL = EdgeLimits(
    source_conn=20,
    source_rate=60,
    route_conn=30,
    hello_timeout_s=1,
    request_timeout_s=1,
    idle_timeout_s=60,
)
VICTIM = "127.0.0.3"


class Sink:
    """A home's service that accepts every connection and never answers: requests to it stay
    in flight, as they do at a slow or attacked home."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=512)
        self.listener.settimeout(0.05)
        self.port = int(self.listener.getsockname()[1])
        self.conns: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(TimeoutError):
                self.conns.append(self.listener.accept()[0])

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        for conn in self.conns:
            conn.close()
        self.listener.close()


@dataclass
class Edge_:
    cfg: EdgeConfig
    api: RuntimeAPI
    target: Service  # the attacked home's service
    other: Service  # another home's service
    web: Service  # a plain-HTTP service
    sink: Sink  # a plain-HTTP service that never answers


@contextlib.contextmanager
def edge_with(limits: EdgeLimits, base: Path) -> Iterator[Edge_]:
    cfg = EdgeConfig(
        state_dir=base / "state",
        https_port=free_port(),
        http_port=free_port(),
        bind="127.0.0.1",
        maxconn=2000,
        limits=limits,
    )
    write_config(cfg)
    api = RuntimeAPI(cfg.socket_path)
    target_ctx, _ = self_signed(base, "target.example.test")
    other_ctx, _ = self_signed(base, "other.example.test")

    def ready() -> bool:
        api.command("show info")
        return port_open(cfg.https_port) and port_open(cfg.http_port)

    sink = Sink()
    with (
        contextlib.closing(sink),
        serve("target", target_ctx) as target,
        serve("other", other_ctx) as other,
        serve("web") as web,
        running(config_command(cfg), log=base / "haproxy.log", ready=ready, timeout=15),
    ):
        Edge(cfg).sync(
            [
                Route("target.example.test", target.port, "https"),
                Route("other.example.test", other.port, "https"),
                Route("web.example.test", web.port, "http"),
                Route("sink.example.test", sink.port, "http"),
            ]
        )
        yield Edge_(cfg, api, target, other, web, sink)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge_]:
    with edge_with(SMALL, tmp_path_factory.mktemp("small")) as edge:
        yield edge


@pytest.fixture(scope="module")
def default(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge_]:
    with edge_with(EdgeLimits(), tmp_path_factory.mktemp("default")) as edge:
        yield edge


@contextlib.contextmanager
def held(port: int, sni: str, sources: list[str]) -> Iterator[list[socket.socket | None]]:
    """One ClientHello-then-nothing connection per entry of `sources`, opened in order and
    held until the block ends; None where the edge refused it."""
    socks: list[socket.socket | None] = []
    try:
        for source in sources:
            socks.append(hello(port, sni, source))
        yield socks
    finally:
        for sock in socks:
            if sock is not None:
                sock.close()


def served(edge: Edge_, sni: str = "other.example.test", source: str = VICTIM) -> bool:
    sock = hello(edge.cfg.https_port, sni, source)
    if sock is None:
        return False
    sock.close()
    return True


def table(edge: Edge_, name: str) -> dict[str, dict[str, int]]:
    """`show table` as {key: {counter: value}}."""
    rows: dict[str, dict[str, int]] = {}
    for line in edge.api.command(f"show table {name}").splitlines():
        found = re.search(r"key=(\S+) (.*)", line)
        if found:
            rows[found.group(1)] = {
                k: int(v) for k, v in re.findall(r"(\w+)(?:\(\d+\))?=(\d+)", found.group(2))
            }
    return rows


def request(edge: Edge_, source: str, data: bytes) -> socket.socket | None:
    """A connection to :80 from `source` that sent `data`; None when the edge reset it first."""
    try:
        sock = connect_from(source, edge.cfg.http_port)
    except OSError:
        return None
    try:
        sock.sendall(data)
    except OSError:
        sock.close()
        return None
    return sock


def current_connections(edge: Edge_) -> int:
    found = re.search(r"^CurrConns: (\d+)$", edge.api.command("show info"), re.MULTILINE)
    assert found
    return int(found.group(1))


# --- per source ---------------------------------------------------------------------------------


def test_one_source_over_its_connection_cap_is_refused_and_another_is_served(small: Edge_) -> None:
    attacker = "127.0.0.2"
    with held(small.cfg.https_port, "target.example.test", [attacker] * 30) as socks:
        accepted = sum(s is not None for s in socks)
        assert accepted == SMALL.source_conn
        assert socks[-1] is None
        assert table(small, "st_source")[f"::ffff:{attacker}"]["conn_cur"] == SMALL.source_conn
        # The cap, not the global maxconn, is what the flood met.
        assert current_connections(small) < small.cfg.maxconn
        assert served(small)
    assert served(small, "target.example.test", attacker)


def test_one_source_opening_connections_too_fast_is_refused(small: Edge_) -> None:
    attacker = "127.0.0.4"
    results = []
    for _ in range(SMALL.source_rate + 10):
        sock = hello(small.cfg.https_port, "target.example.test", attacker)
        results.append(sock is not None)
        if sock is not None:
            sock.close()
    # All within the 10 s window: the first `source_rate` pass, every later one is refused.
    assert results[: SMALL.source_rate] == [True] * SMALL.source_rate
    assert results[SMALL.source_rate :] == [False] * 10
    assert served(small)


def test_the_source_caps_apply_on_port_80_too(small: Edge_) -> None:
    attacker = "127.0.0.5"
    socks: list[socket.socket] = []
    try:
        # Complete requests the home never answers: each stays in flight. HAProxy's threads
        # take connections in any order, so count them rather than expect the last ones out.
        for _ in range(SMALL.source_conn + 5):
            sock = request(small, attacker, b"GET / HTTP/1.1\r\nHost: sink.example.test\r\n\r\n")
            if sock is not None:
                socks.append(sock)
        wait_for(
            lambda: len(socks) - sum(closed_by_peer(s, 0) for s in socks) <= SMALL.source_conn,
            what="the connections over the cap closed",
        )
        assert len(socks) - sum(closed_by_peer(s, 0) for s in socks) == SMALL.source_conn
        counters = table(small, "st_source")[f"::ffff:{attacker}"]
        assert counters["conn_cur"] == SMALL.source_conn
        assert counters["conn_rate"] == SMALL.source_conn + 5
    finally:
        for sock in socks:
            sock.close()


# --- per route ----------------------------------------------------------------------------------


def test_a_flood_at_one_home_from_many_sources_is_capped_and_other_homes_are_served(
    small: Edge_,
) -> None:
    # 10 sources x 4 connections: each source under its own cap, together over the route's.
    sources = [f"127.0.1.{i}" for i in range(1, 11) for _ in range(4)]
    with held(small.cfg.https_port, "target.example.test", sources) as socks:
        assert sum(s is not None for s in socks) == SMALL.route_conn
        assert table(small, "st_route")[str(small.target.port)]["conn_cur"] == SMALL.route_conn
        assert served(small)
        assert not served(small, "target.example.test")
    assert served(small, "target.example.test")


def test_a_flood_of_plain_http_at_one_home_gets_503_over_the_route_cap(small: Edge_) -> None:
    socks = []
    try:
        for i in range(SMALL.route_conn):
            sock = connect_from(f"127.0.2.{i % 10 + 1}", small.cfg.http_port)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: sink.example.test\r\n\r\n")
            socks.append(sock)
        wait_for(
            lambda: table(small, "st_route")[str(small.sink.port)]["conn_cur"] == SMALL.route_conn,
            what="every request in flight",
        )
        probe = connect_from("127.0.2.100", small.cfg.http_port)
        socks.append(probe)
        probe.sendall(b"GET / HTTP/1.1\r\nHost: sink.example.test\r\n\r\n")
        probe.settimeout(10)
        assert probe.recv(100).startswith(b"HTTP/1.1 503")
    finally:
        for sock in socks:
            sock.close()


# --- slow clients and bad requests --------------------------------------------------------------


def test_a_clienthello_that_never_comes_is_dropped_after_the_hello_timeout(small: Edge_) -> None:
    sock = connect_from("127.0.0.6", small.cfg.https_port)
    with sock:
        sock.sendall(b"\x16\x03\x01")  # the first bytes of a record, then nothing
        assert closed_by_peer(sock, SMALL.hello_timeout_s + 10)


def test_a_slow_request_head_on_port_80_is_answered_408_and_closed(small: Edge_) -> None:
    sock = connect_from("127.0.0.7", small.cfg.http_port)
    with sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: web.example.test\r\nX-Slow: ")
        sock.settimeout(SMALL.request_timeout_s + 10)
        assert sock.recv(100).startswith(b"HTTP/1.1 408")
        assert closed_by_peer(sock, 10)


@pytest.mark.parametrize(
    "head",
    [
        b"Host: web.example.test, other.example.test\r\n",
        b"Host: other.example.test\r\nHost: web.example.test\r\n",
    ],
)
def test_two_names_in_the_host_header_get_400(small: Edge_, head: bytes) -> None:
    sock = connect_from("127.0.0.8", small.cfg.http_port)
    with sock:
        sock.sendall(b"GET / HTTP/1.1\r\n" + head + b"\r\n")
        sock.settimeout(10)
        assert sock.recv(100).startswith(b"HTTP/1.1 400")


# --- ordinary use stays under the defaults ------------------------------------------------------


def test_a_page_of_30_parallel_requests_from_one_address_is_served_in_full(
    default: Edge_,
) -> None:
    def fetch_tls(_: int) -> bool:
        return served(default, "target.example.test", "127.0.3.1")

    def fetch_http(_: int) -> bool:
        sock = connect_from("127.0.3.1", default.cfg.http_port)
        with sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: web.example.test\r\nConnection: close\r\n\r\n")
            return sock.recv(100).startswith(b"HTTP/1.1 200")

    with ThreadPoolExecutor(30) as pool:
        assert list(pool.map(fetch_tls, range(30))) == [True] * 30
        assert list(pool.map(fetch_http, range(30))) == [True] * 30


def test_an_office_behind_one_address_holding_200_connections_is_served(default: Edge_) -> None:
    with held(default.cfg.https_port, "target.example.test", ["127.0.3.2"] * 200) as socks:
        assert all(s is not None for s in socks)
        assert served(default, "target.example.test", "127.0.3.2")


# --- the open-file limit ------------------------------------------------------------------------


RAISE = """
import resource, sys
from pathlib import Path
from cloud.edge.haproxy import EdgeConfig, effective_maxconn, raise_nofile
cfg = EdgeConfig(state_dir=Path("/var/lib/x"), maxconn=int(sys.argv[1]))
print(raise_nofile(cfg))
print(*resource.getrlimit(resource.RLIMIT_NOFILE), effective_maxconn(cfg))
"""


def _raise_nofile(maxconn: int, limit: str, *prefix: str) -> tuple[str, list[int]]:
    done = subprocess.run(
        [*prefix, "prlimit", f"--nofile={limit}", "--", sys.executable, "-c", RAISE, str(maxconn)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    line, figures = done.stdout.splitlines()
    return line, [int(x) for x in figures.split()]


def test_up_raises_the_open_file_limit_as_far_as_the_hard_limit_allows() -> None:
    line, (soft, hard, maxconn) = _raise_nofile(5000, "1024:16384")
    assert line == "None"
    assert soft == 2 * 5000 + 100 + 4 * (os.cpu_count() or 1) and hard == 16384
    assert maxconn == 5000


def test_up_says_what_is_short_when_the_hard_limit_is_too_low() -> None:
    # Without CAP_SYS_RESOURCE even root cannot raise a hard limit.
    line, (soft, hard, maxconn) = _raise_nofile(
        20000, "1024:4096", "setpriv", "--bounding-set", "-sys_resource", "--"
    )
    assert "open-file limit (4096) allows HAProxy maxconn" in line
    assert "raise the hard limit to" in line
    # 4096 fds hold fewer connections than one route may take: the line says what that means.
    assert "per-route cap (2000)" in line
    assert soft == hard == 4096 and maxconn < 2000
