"""The cloud's control plane under floods, as `cloudathome cloud up` runs it: HAProxy fronts
gunicorn (which listens on a unix socket only), so slow clients never hold a thread; per-source
caps close or 429 the client that crosses them while another address is served. Attackers and
victims use distinct loopback source addresses."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.sites import CloudSite, cloud_site
from workers.bench.attack import closed_by_peer, connect_from
from workers.local.procs import wait_for

WEB_RATE = 100  # requests per source in any 10 s, lowered so a test crosses it quickly


@pytest.fixture(scope="module")
def site() -> Iterator[CloudSite]:
    with cloud_site(extra_env={"CLOUDATHOME_WEB_SOURCE_RATE": str(WEB_RATE)}) as running_site:
        yield running_site


def get(site: CloudSite, path: str, source: str) -> tuple[int, http.client.HTTPMessage, bytes]:
    """GET `path` through the control plane's public port from `source`."""
    conn = http.client.HTTPConnection(
        "127.0.0.1", site.web_port, timeout=20, source_address=(source, 0)
    )
    try:
        conn.request("GET", path)
        reply = conn.getresponse()
        return reply.status, reply.msg, reply.read()
    finally:
        conn.close()


@contextlib.contextmanager
def slow_clients(site: CloudSite, source: str, count: int) -> Iterator[list[socket.socket]]:
    """Slowloris: half send a request head that never ends, half a body that never comes."""
    socks = []
    try:
        for i in range(count):
            sock = connect_from(source, site.web_port)
            if i % 2:
                sock.sendall(b"POST /api/auth/token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")  # fmt: skip
            else:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            socks.append(sock)
        yield socks
    finally:
        for sock in socks:
            sock.close()


def test_gunicorn_listens_on_no_tcp_port_and_haproxy_serves_the_web_port(site: CloudSite) -> None:
    listeners = subprocess.run(
        ["ss", "-Hltnp", f"sport = :{site.web_port}"], capture_output=True, text=True, check=True
    ).stdout
    assert '"haproxy"' in listeners and "gunicorn" not in listeners and "python" not in listeners
    assert (site.state / "web" / "gunicorn.sock").is_socket()
    assert (site.state / "web").stat().st_mode & 0o077 == 0


def test_slow_clients_do_not_stall_the_control_plane(site: CloudSite) -> None:
    # 50 slow sockets stalled every request for ~50 s when gunicorn faced clients itself.
    with slow_clients(site, "127.0.0.2", 50):
        with ThreadPoolExecutor(10) as pool:
            statuses = list(pool.map(lambda _: get(site, "/healthz", "127.0.0.3")[0], range(20)))
        assert statuses == [200] * 20


def test_a_request_that_never_completes_is_answered_408_and_closed(site: CloudSite) -> None:
    with slow_clients(site, "127.0.0.4", 2) as socks:
        for sock in socks:
            sock.settimeout(30)
            assert sock.recv(100).startswith(b"HTTP/1.1 408")
            assert closed_by_peer(sock, 10)


def test_one_source_over_its_connection_cap_is_closed_and_another_is_served(
    site: CloudSite,
) -> None:
    cap = 100  # CLOUDATHOME_WEB_SOURCE_CONN's default
    socks: list[socket.socket] = []
    try:
        for _ in range(cap + 10):
            with contextlib.suppress(OSError):
                sock = connect_from("127.0.0.5", site.web_port)
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never ends
                socks.append(sock)
        wait_for(
            lambda: len(socks) - sum(closed_by_peer(s, 0) for s in socks) <= cap,
            what="the connections over the cap closed",
        )
        assert len(socks) - sum(closed_by_peer(s, 0) for s in socks) == cap
        assert get(site, "/healthz", "127.0.0.6")[0] == 200
    finally:
        for sock in socks:
            sock.close()


def test_one_source_over_its_request_rate_gets_429_with_retry_after_in_the_error_shape(
    site: CloudSite,
) -> None:
    replies = [get(site, "/healthz", "127.0.0.7") for _ in range(WEB_RATE + 10)]
    statuses = [status for status, _, _ in replies]
    assert statuses[:WEB_RATE] == [200] * WEB_RATE
    assert statuses[WEB_RATE:] == [429] * 10
    _, headers, body = replies[-1]
    assert headers["Retry-After"] == "10"
    assert headers["Content-Type"] == "application/json"
    assert set(json.loads(body)) == {"detail"}
    assert get(site, "/healthz", "127.0.0.8")[0] == 200


def test_a_page_of_30_parallel_requests_from_one_address_is_served_in_full(
    site: CloudSite,
) -> None:
    paths = ["/login/", "/static/ui/ui.css", "/static/ui/favicon.svg", "/healthz"] * 8
    with ThreadPoolExecutor(30) as pool:
        statuses = list(pool.map(lambda path: get(site, path, "127.0.3.1")[0], paths[:30]))
    assert statuses == [200] * 30
