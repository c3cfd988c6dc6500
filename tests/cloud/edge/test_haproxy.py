"""The HAProxy edge against a real haproxy: SNI passthrough, Host routing, PROXY v2, live map
changes without reload, restarts from the map files and the Runtime API's error handling."""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cloud.edge.haproxy import (
    Edge,
    EdgeConfig,
    EdgeError,
    EdgeUnavailable,
    Route,
    RuntimeAPI,
    SyncResult,
    check_config,
    config_command,
    effective_maxconn,
    render_config,
    write_config,
)
from tests.support.net import (
    PP2_SIGNATURE,
    RawCapture,
    Service,
    http_get,
    routes_to,
    self_signed,
    serve,
    tls_get,
    tls_refused,
)
from workers.local.procs import free_port, port_open, running, wait_for


def worker_pid(api: RuntimeAPI) -> int:
    found = re.search(r"^Pid: (\d+)$", api.command("show info"), re.MULTILINE)
    assert found
    return int(found.group(1))


def map_version(api: RuntimeAPI, map_path: Path) -> int:
    for line in api.command("show map").splitlines():
        if f"({map_path})" in line:
            found = re.search(r"curr_ver=(\d+)", line)
            assert found
            return int(found.group(1))
    raise AssertionError(f"{map_path} is not a loaded map")


# --- HAProxy -----------------------------------------------------------------------------------


def edge_config(state_dir: Path, maxconn: int = 256) -> EdgeConfig:
    return EdgeConfig(
        state_dir=state_dir,
        https_port=free_port(),
        http_port=free_port(),
        bind="127.0.0.1",
        maxconn=maxconn,
    )


@contextlib.contextmanager
def haproxy(cfg: EdgeConfig, log: Path, prefix: tuple[str, ...] = ()) -> Iterator[subprocess.Popen]:
    api = RuntimeAPI(cfg.socket_path)

    def ready() -> bool:
        api.command("show info")  # raises until this instance's socket answers
        return port_open(cfg.https_port) and port_open(cfg.http_port)

    with running([*prefix, *config_command(cfg)], log=log, ready=ready, timeout=15) as proc:
        yield proc


@dataclass
class Site:
    cfg: EdgeConfig
    edge: Edge
    api: RuntimeAPI
    proc: subprocess.Popen
    tls_a: Service
    tls_b: Service
    web_a: Service
    web_b: Service
    capture: RawCapture


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    base = tmp_path_factory.mktemp("edge")
    certs = tmp_path_factory.mktemp("certs")
    cfg = edge_config(base / "state")
    write_config(cfg)
    tls_a_ctx, tls_a_der = self_signed(certs, "app.example.test")
    tls_b_ctx, tls_b_der = self_signed(certs, "other.example.test")
    capture = RawCapture()
    try:
        with (
            serve("tls-a", tls_a_ctx, tls_a_der) as tls_a,
            serve("tls-b", tls_b_ctx, tls_b_der) as tls_b,
            serve("web-a") as web_a,
            serve("web-b") as web_b,
            haproxy(cfg, base / "haproxy.log") as proc,
        ):
            yield Site(
                cfg,
                Edge(cfg),
                RuntimeAPI(cfg.socket_path),
                proc,
                tls_a,
                tls_b,
                web_a,
                web_b,
                capture,
            )
    finally:
        capture.close()


# --- hostname and route validation ---------------------------------------------------------------


def test_route_hosts_go_through_the_one_hostname_rule(tmp_path: Path) -> None:
    edge = Edge(edge_config(tmp_path))
    maps = edge.desired_maps([Route("App.Example.TEST.", 2000, "https")])
    assert maps["https"] == {"app.example.test": "2000"}
    with pytest.raises(ValueError, match=r"^host: "):
        edge.desired_maps([Route("*.example.test", 2000, "https")])


@pytest.mark.parametrize("port", [0, 65536, -1, True])
def test_route_with_a_port_outside_1_to_65535_is_rejected(tmp_path: Path, port: int) -> None:
    edge = Edge(edge_config(tmp_path))
    with pytest.raises(ValueError, match=r"^port: "):
        edge.sync([Route("app.example.test", port, "https")])
    assert not edge.cfg.map_path("https").exists()


def test_route_to_the_edges_own_listener_is_rejected(tmp_path: Path) -> None:
    edge = Edge(edge_config(tmp_path))
    with pytest.raises(ValueError, match=r"^port: .* would loop"):
        edge.sync([Route("app.example.test", edge.cfg.https_port, "https")])


def test_same_host_twice_in_one_scheme_is_rejected_but_allowed_across_schemes(
    tmp_path: Path,
) -> None:
    edge = Edge(edge_config(tmp_path))
    with pytest.raises(ValueError, match=r"^host: app.example.test appears twice"):
        edge.desired_maps(
            [Route("app.example.test", 2000, "https"), Route("APP.example.test", 2001, "https")]
        )
    maps = edge.desired_maps(
        [Route("app.example.test", 2000, "https"), Route("app.example.test", 2001, "http")]
    )
    assert maps == {
        "https": {"app.example.test": "2000"},
        "http": {"app.example.test": "2001"},
        "tcp": {},
        "networks": {},
        "allow": {},
    }


def test_state_dir_that_would_break_the_config_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^state_dir: "):
        EdgeConfig(state_dir=tmp_path / "with space")
    with pytest.raises(ValueError, match=r"^state_dir: too long"):
        EdgeConfig(state_dir=tmp_path / ("x" * 100))


def test_rejected_host_never_reaches_the_map_file_or_haproxy(site: Site) -> None:
    good = Route("app.example.test", site.tls_a.port, "https")
    site.edge.sync([good])
    before = site.cfg.map_path("https").read_bytes()
    with pytest.raises(ValueError, match=r"^host: "):
        site.edge.sync([good, Route("evil.example.test\nx.example.test 1", 2000, "https")])
    assert site.cfg.map_path("https").read_bytes() == before
    assert b"evil" not in before
    assert site.edge.live_routes() == [good]


# --- config ------------------------------------------------------------------------------------


def test_config_routes_every_host_through_one_backend_per_kind(tmp_path: Path) -> None:
    cfg = edge_config(tmp_path)
    write_config(cfg)
    check_config(cfg)
    text = cfg.config_path.read_text()
    assert re.findall(r"^backend (\S+)", text, re.MULTILINE) == [
        "st_source",  # stick tables only (the flood limits), no server
        "st_route",
        "be_https",
        "be_https_pp",
        "be_http",
        "be_http_pp",
    ]
    assert f"stats socket {cfg.socket_path} mode 600 level admin" in text
    assert f"map({cfg.map_path('https')})" in text
    assert f"map({cfg.map_path('http')})" in text


def test_maxconn_is_lowered_so_haproxy_starts_under_a_small_open_file_limit(
    tmp_path: Path,
) -> None:
    cfg = edge_config(tmp_path / "state", maxconn=100_000)
    limit = ("prlimit", "--nofile=1024:1024", "--")
    write_config(cfg, nofile_limit=10**6)
    unclamped = subprocess.run(
        [*limit, "haproxy", "-db", "-f", str(cfg.config_path)],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert unclamped.returncode != 0
    assert "Cannot raise FD limit" in unclamped.stderr
    write_config(cfg, nofile_limit=1024)
    assert effective_maxconn(cfg, 1024) < 512
    assert f"maxconn {effective_maxconn(cfg, 1024)}\n" in render_config(cfg, 1024)
    with haproxy(cfg, tmp_path / "haproxy.log", prefix=limit) as proc:
        assert proc.poll() is None


def test_config_haproxy_refuses_is_never_installed(tmp_path: Path) -> None:
    cfg = edge_config(tmp_path)
    write_config(cfg)
    installed = cfg.config_path.read_text()
    # A map that cannot be opened makes `haproxy -c` fail, as any broken config would.
    cfg.map_path("https").unlink()
    cfg.map_path("https").mkdir()
    cfg.https_port = free_port()
    with pytest.raises(EdgeError, match=r"haproxy\.cfg left as it was: haproxy -c: .*https\.map"):
        write_config(cfg)
    assert cfg.config_path.read_text() == installed
    assert sorted(p.name for p in cfg.haproxy_dir.iterdir()) == ["haproxy.cfg", "maps"]


# --- traffic -----------------------------------------------------------------------------------


def test_https_route_reaches_the_service_by_sni_with_its_own_certificate(site: Site) -> None:
    site.edge.sync([Route("app.example.test", site.tls_a.port, "https")])
    body, cert = tls_get(site.cfg.https_port, "app.example.test")
    assert body == b"tls-a"
    assert cert == site.tls_a.cert_der  # passthrough: the edge never terminates TLS


def test_unknown_sni_is_refused_without_waiting_for_the_inspect_delay(site: Site) -> None:
    site.edge.sync([Route("app.example.test", site.tls_a.port, "https")])
    started = time.monotonic()
    assert tls_refused(site.cfg.https_port, "unknown.example.test")
    assert time.monotonic() - started < 2


def test_plain_text_on_the_https_port_is_refused(site: Site) -> None:
    site.edge.sync([Route("app.example.test", site.tls_a.port, "https")])
    with socket.create_connection(("127.0.0.1", site.cfg.https_port), timeout=3) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: app.example.test\r\n\r\n")
        try:
            answer = sock.recv(100)
        except ConnectionResetError:
            answer = b""
    assert answer == b""


def test_http_route_by_host_ignores_port_and_case(site: Site) -> None:
    site.edge.sync([Route("plain.example.test", site.web_a.port, "http")])
    assert http_get(site.cfg.http_port, "plain.example.test") == (200, b"web-a")
    assert http_get(site.cfg.http_port, "Plain.Example.TEST:80") == (200, b"web-a")


def test_unknown_host_gets_404(site: Site) -> None:
    site.edge.sync([Route("plain.example.test", site.web_a.port, "http")])
    status, _ = http_get(site.cfg.http_port, "unknown.example.test")
    assert status == 404


def test_one_keepalive_client_switching_hosts_reaches_each_hosts_own_service(site: Site) -> None:
    site.edge.sync(
        [
            Route("a.example.test", site.web_a.port, "http"),
            Route("b.example.test", site.web_b.port, "http"),
        ]
    )
    conn = http.client.HTTPConnection("127.0.0.1", site.cfg.http_port, timeout=3)
    try:
        seen: list[bytes] = []
        for host in ["a.example.test", "b.example.test", "a.example.test", "b.example.test"]:
            conn.request("GET", "/", headers={"Host": host})
            if not seen:
                first_socket = conn.sock
            seen.append(conn.getresponse().read())
            assert conn.sock is first_socket  # still the same client connection
    finally:
        conn.close()
    assert seen == [b"web-a", b"web-b", b"web-a", b"web-b"]


def parse_pp2(data: bytes) -> tuple[str, int, bytes]:
    assert data[:12] == PP2_SIGNATURE
    assert data[12] == 0x21  # version 2, PROXY command
    assert data[13] == 0x11  # TCP over IPv4
    length = int.from_bytes(data[14:16])
    source = socket.inet_ntoa(data[16:20])
    source_port = int.from_bytes(data[24:26])
    return source, source_port, data[16 + length :]


def test_proxy_v2_https_route_tells_the_service_the_real_client_address(site: Site) -> None:
    site.edge.sync([Route("pp.example.test", site.capture.port, "https", proxy_protocol=True)])
    with socket.create_connection(("127.0.0.1", site.cfg.https_port), timeout=3) as raw:
        client_port = raw.getsockname()[1]
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with contextlib.suppress(OSError):  # the capture server hangs up after reading
            ctx.wrap_socket(raw, server_hostname="pp.example.test")
    source, source_port, rest = parse_pp2(site.capture.seen.get(timeout=5))
    assert (source, source_port) == ("127.0.0.1", client_port)
    assert rest[:1] == b"\x16"  # then the client's untouched TLS handshake


def test_proxy_v2_http_route_tells_the_service_the_real_client_address(site: Site) -> None:
    site.edge.sync([Route("pp.example.test", site.capture.port, "http", proxy_protocol=True)])
    conn = http.client.HTTPConnection("127.0.0.1", site.cfg.http_port, timeout=3)
    try:
        conn.connect()
        assert conn.sock is not None
        client_port = conn.sock.getsockname()[1]
        conn.request("GET", "/", headers={"Host": "pp.example.test"})
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn.getresponse()
    finally:
        conn.close()
    source, source_port, rest = parse_pp2(site.capture.seen.get(timeout=5))
    assert (source, source_port) == ("127.0.0.1", client_port)
    assert rest.startswith(b"GET / HTTP/1.1")


# --- live changes --------------------------------------------------------------------------------


def test_added_route_is_routable_without_a_reload(site: Site) -> None:
    site.edge.sync([])
    assert tls_refused(site.cfg.https_port, "new.example.test")
    pid = worker_pid(site.api)
    result = site.edge.sync([Route("new.example.test", site.tls_a.port, "https")])
    assert result == SyncResult(added=1)
    wait_for(lambda: routes_to(site.cfg.https_port, "new.example.test", site.tls_a), timeout=5)
    assert worker_pid(site.api) == pid


def test_changed_port_takes_effect(site: Site) -> None:
    site.edge.sync([Route("move.example.test", site.tls_a.port, "https")])
    wait_for(lambda: routes_to(site.cfg.https_port, "move.example.test", site.tls_a), timeout=5)
    result = site.edge.sync([Route("move.example.test", site.tls_b.port, "https")])
    assert result == SyncResult(changed=1)
    wait_for(lambda: routes_to(site.cfg.https_port, "move.example.test", site.tls_b), timeout=5)
    assert tls_get(site.cfg.https_port, "move.example.test")[1] == site.tls_b.cert_der


def test_deleted_route_is_refused(site: Site) -> None:
    site.edge.sync([Route("gone.example.test", site.tls_a.port, "https")])
    wait_for(lambda: routes_to(site.cfg.https_port, "gone.example.test", site.tls_a), timeout=5)
    assert site.edge.sync([]) == SyncResult(removed=1)
    wait_for(lambda: tls_refused(site.cfg.https_port, "gone.example.test"), timeout=5)
    assert "gone.example.test" not in site.cfg.map_path("https").read_text()


def test_sync_twice_changes_nothing_the_second_time(site: Site) -> None:
    routes = [
        Route("one.example.test", site.tls_a.port, "https"),
        Route("two.example.test", site.tls_b.port, "https", proxy_protocol=True),
        Route("one.example.test", site.web_a.port, "http"),
    ]
    site.edge.sync([])
    assert site.edge.sync(routes) == SyncResult(added=3)
    files = [site.cfg.map_path(s).stat().st_mtime_ns for s in ("https", "http")]
    assert site.edge.sync(routes) == SyncResult()
    assert [site.cfg.map_path(s).stat().st_mtime_ns for s in ("https", "http")] == files
    assert site.edge.live_routes() == sorted(routes, key=lambda r: (r.scheme, r.host))


def test_update_converges_one_host_live_without_touching_others(site: Site) -> None:
    other = Route("other.example.test", site.tls_b.port, "https")
    site.edge.sync([other])
    one = Route("one.example.test", site.tls_a.port, "https")
    assert site.edge.update(one.host, [one]) == SyncResult(added=1)
    assert routes_to(site.cfg.https_port, "one.example.test", site.tls_a)
    moved = Route("one.example.test", site.tls_b.port, "https")
    assert site.edge.update(one.host, [moved]) == SyncResult(changed=1)
    assert routes_to(site.cfg.https_port, "one.example.test", site.tls_b)
    assert site.edge.update(one.host, [moved]) == SyncResult()
    assert site.edge.update(one.host, []) == SyncResult(removed=1)
    assert tls_refused(site.cfg.https_port, "one.example.test")
    assert site.edge.live_routes() == [other]


def test_sync_repairs_a_duplicate_key_left_by_a_manual_add(site: Site) -> None:
    route = Route("dup.example.test", site.tls_a.port, "https")
    site.edge.sync([route])
    https_map = site.cfg.map_path("https")
    site.api.add_map(https_map, "dup.example.test", "9")
    assert len(site.api.map_entries(https_map)) == 2
    assert site.edge.sync([route]) == SyncResult(changed=1)
    assert site.api.map_entries(https_map) == [("dup.example.test", str(site.tls_a.port))]


def test_full_replace_of_5000_routes_goes_through_one_transaction(site: Site) -> None:
    site.edge.sync([])
    https_map = site.cfg.map_path("https")
    version = map_version(site.api, https_map)
    routes = [Route(f"h{i}.bulk.example.test", 20000 + i % 40000, "https") for i in range(5000)]
    started = time.monotonic()
    assert site.edge.sync(routes) == SyncResult(added=5000)
    assert time.monotonic() - started < 10
    assert map_version(site.api, https_map) == version + 1
    assert site.api.show_map(https_map) == {r.host: str(r.port) for r in routes}
    assert len(site.api.map_entries(https_map)) == 5000
    assert site.edge.sync(routes) == SyncResult()
    assert site.edge.sync([]) == SyncResult(removed=5000)
    assert site.api.map_entries(https_map) == []


# --- Runtime API -------------------------------------------------------------------------------


def test_unexpected_runtime_reply_raises_edge_error_naming_the_command(site: Site) -> None:
    with pytest.raises(EdgeError, match=r"set map: unexpected reply 'entry not found\.'"):
        site.api.set_map(site.cfg.map_path("https"), "absent.example.test", "2000")
    with pytest.raises(EdgeError, match=r"add map: unexpected reply 'Unknown map identifier"):
        site.api.add_map(site.cfg.maps_dir / "nothere.map", "a.example.test", "2000")
    with pytest.raises(EdgeError, match=r"prepare map: unexpected reply"):
        site.api.prepare_map(site.cfg.maps_dir / "nothere.map")


def test_runtime_api_refuses_words_that_would_split_a_command(site: Site) -> None:
    with pytest.raises(ValueError, match=r"^key: "):
        site.api.add_map(site.cfg.map_path("https"), "a.example.test;clear", "2000")
    with pytest.raises(ValueError, match=r"^payload: "):
        site.api.command("add map " + str(site.cfg.map_path("https")), ["k 1"] * 5000)
    assert "a.example.test" not in site.api.show_map(site.cfg.map_path("https"))


def test_sync_without_haproxy_writes_the_files_then_raises_unavailable(tmp_path: Path) -> None:
    edge = Edge(edge_config(tmp_path))
    with pytest.raises(EdgeUnavailable, match=r"admin\.sock"):
        edge.sync([Route("app.example.test", 2000, "https", proxy_protocol=True)])
    assert "app.example.test 2000:pp\n" in edge.cfg.map_path("https").read_text()
    assert edge.cfg.map_path("http").exists()


def test_killed_haproxy_comes_back_with_every_route_from_the_files(
    site: Site, tmp_path: Path
) -> None:
    cfg = edge_config(tmp_path / "state")
    write_config(cfg)
    edge = Edge(cfg)
    routes = [
        Route("app.example.test", site.tls_a.port, "https"),
        Route("pp.example.test", site.capture.port, "https", proxy_protocol=True),
        Route("plain.example.test", site.web_a.port, "http"),
    ]
    with haproxy(cfg, tmp_path / "first.log") as first:
        edge.sync(routes)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(5)
        try:
            # The worker notices its master is gone and exits, freeing the ports.
            wait_for(lambda: not port_open(cfg.https_port), timeout=10, what="worker exit")
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(first.pid, signal.SIGKILL)  # our own group: the orphaned worker
            raise
    with haproxy(cfg, tmp_path / "second.log"):
        assert routes_to(cfg.https_port, "app.example.test", site.tls_a)
        assert http_get(cfg.http_port, "plain.example.test") == (200, b"web-a")
        assert edge.live_routes() == sorted(routes, key=lambda r: (r.scheme, r.host))
        assert edge.sync(routes) == SyncResult()
