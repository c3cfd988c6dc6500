"""The whole cloud site as `cloudathome cloud up` runs it (HAProxy, our sshd, web, Celery
worker + beat, Flower, private Redis, PostgreSQL), driven like a user and a script would."""

from __future__ import annotations

import grp
import http.client
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from cloud.edge.haproxy import RuntimeAPI
from tests.support.net import (
    PP2_SIGNATURE,
    RawCapture,
    echo_refused,
    http_get,
    post_form,
    self_signed,
    serve,
    tls_get,
    tls_refused,
)
from tests.support.sites import CloudSite, cloud_site
from tests.support.ssh import (
    client_options,
    home_sshd,
    keygen,
    known_hosts,
    reverse_tunnel,
    ssh_run,
)
from tests.support.tenants import Tenant, live_routes, ready_home, tenant
from workers.local.procs import stop_pid, wait_for

# A small quota, so that a test can reach it.
CLOUD_ENV = {"CLOUDATHOME_TCP_PORTS_PER_HOME": "2"}


@pytest.fixture(scope="module")
def known(cloud: CloudSite, alice: Tenant, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return known_hosts(
        tmp_path_factory.mktemp("kh") / "known_hosts", cloud.ssh_port, alice.home["ssh_host_key"]
    )


@pytest.fixture
def tunnel(cloud: CloudSite, known: Path) -> Iterator:
    """Open the documented tunnel command for a tenant; every ssh started is stopped by PID."""
    procs: list[subprocess.Popen] = []

    def open_(tenant: Tenant, remote: int, local: int) -> subprocess.Popen:
        user = tenant.home["ssh_username"]
        proc = reverse_tunnel(tenant.key, known, cloud.ssh_port, user, remote, local)
        procs.append(proc)
        return proc

    yield open_
    for proc in procs:
        stop_pid(proc)


def _map(cloud: CloudSite, tenant: Tenant, body: dict) -> requests.Response:
    """POST a proxy mapping for the tenant's home."""
    url = f"{cloud.url}/api/homes/{tenant.home['slug']}/proxy-mappings"
    return tenant.api.post(url, json=body, timeout=10)


# --- accounts ----------------------------------------------------------------------------------


def test_signup_creates_an_inactive_account_that_can_neither_log_in_nor_get_a_token_until_approved(
    cloud: CloudSite,
) -> None:
    web = requests.Session()
    r = post_form(
        web,
        f"{cloud.url}/signup/",
        {
            "username": "carol",
            "email": "carol@example.com",
            "password1": "Tr1cky-pass-42",
            "password2": "Tr1cky-pass-42",
        },
    )
    assert r.status_code == 200 and "waiting for approval" in r.text
    r = post_form(
        requests.Session(),
        f"{cloud.url}/login/",
        {"username": "carol", "password": "Tr1cky-pass-42"},
    )
    assert "/login/" in r.url and "cah_cloud_session" not in r.cookies
    r = requests.post(
        f"{cloud.url}/api/auth/token",
        json={"username": "carol", "password": "Tr1cky-pass-42"},
        timeout=10,
    )
    assert r.status_code == 403 and "not active" in r.json()["detail"]

    done = cloud.manage(
        "shell",
        "-c",
        "from django.contrib.auth.models import User; User.objects.filter(username='carol').update(is_active=True)",
    )
    assert done.returncode == 0, done.stderr
    web = requests.Session()
    r = post_form(web, f"{cloud.url}/login/", {"username": "carol", "password": "Tr1cky-pass-42"})
    assert r.url.rstrip("/") == cloud.url and "Dashboard" in r.text
    assert cloud.token("carol", "Tr1cky-pass-42").startswith("cah_")


def test_api_requires_a_token_and_stores_it_hashed(cloud: CloudSite, alice: Tenant) -> None:
    assert requests.get(f"{cloud.url}/api/homes", timeout=5).status_code == 401
    bad = cloud.api("cah_000000000000_nope").get(f"{cloud.url}/api/homes", timeout=5)
    assert bad.status_code == 401 and "detail" in bad.json()
    dump = cloud.manage(
        "shell",
        "-c",
        "from cloud.accounts.models import ApiToken; print(list(ApiToken.objects.values_list('digest', flat=True)))",
    )
    assert alice.token not in dump.stdout and alice.token.split("_")[2] not in dump.stdout


def test_openapi_schema_and_docs_are_served(cloud: CloudSite) -> None:
    schema = requests.get(f"{cloud.url}/api/schema/", timeout=10).json()
    for path in (
        "/api/homes",
        "/api/homes/{slug}/proxy-mappings",
        "/api/admin/proxy-mappings/sync",
        "/api/auth/token",
    ):
        assert path in schema["paths"]
    assert "swagger" in requests.get(f"{cloud.url}/api/schema/swagger/", timeout=10).text.lower()
    assert "redoc" in requests.get(f"{cloud.url}/api/schema/redoc/", timeout=10).text.lower()


# --- homes and the SSH endpoint ----------------------------------------------------------------


def test_home_gets_its_slot_port_range_and_pinned_host_key(cloud: CloudSite, alice: Tenant) -> None:
    home = alice.home
    assert home["status"] == "ready"
    base = int(cloud.env["CLOUDATHOME_PORT_BASE"])
    assert home["port_count"] == 10 and home["port_base"] == base + 100 * home["index"]
    assert home["ssh_host_key"].startswith("ssh-ed25519 ")
    assert re.fullmatch(r"t[0-9a-f]{4}\d{2}_alice", home["ssh_username"])


def test_second_home_for_the_same_user_is_a_conflict(cloud: CloudSite, alice: Tenant) -> None:
    r = alice.api.post(f"{cloud.url}/api/homes", json={"public_key": alice.public_key}, timeout=10)
    assert r.status_code == 409 and "already have a home" in r.json()["detail"]


@pytest.mark.parametrize(
    "key",
    [
        "",
        "ssh-ed25519",
        "not a key at all",
        "ssh-ed25519 AAAA\nssh-ed25519 AAAA",
        'command="sh" ssh-ed25519 AAAAC3Nz',
        "ssh-rsa " + "A" * 20000,
    ],
)
def test_malformed_or_huge_public_keys_are_refused_naming_the_field(
    cloud: CloudSite, key: str
) -> None:
    password = "Sec-ret-77x"
    name = f"k{abs(hash(key)) % 10**6}"
    cloud.create_user(name, password)
    api = cloud.api(cloud.token(name, password))
    r = api.post(f"{cloud.url}/api/homes", json={"public_key": key}, timeout=10)
    assert r.status_code in (400, 422), r.text
    assert "public_key" in r.json()["detail"]
    assert api.get(f"{cloud.url}/api/homes", timeout=5).json() == []


def test_tunnel_into_own_range_reaches_the_home_service_through_the_https_edge(
    cloud: CloudSite, alice: Tenant, tunnel, tmp_path: Path
) -> None:
    ctx, der = self_signed(tmp_path, "app.alice.homes.test")
    with serve("alice-home", ctx, der) as svc:
        port = alice.home["port_base"]
        proc = tunnel(alice, port, svc.port)
        r = _map(cloud, alice, {"host": "App.Alice.Homes.test", "tunnel_port": port})
        assert r.status_code == 201, r.text
        assert r.json()["host"] == "app.alice.homes.test"
        body, cert = wait_for(
            lambda: tls_get(cloud.https_port, "app.alice.homes.test"), timeout=15, what="edge route"
        )
        assert body == b"alice-home" and cert == der  # passthrough: the home's own certificate
        assert proc.poll() is None
        listed = alice.api.get(
            f"{cloud.url}/api/homes/{alice.home['slug']}/proxy-mappings", timeout=5
        ).json()
        assert listed[0]["edge"] == "routed"
        r = alice.api.delete(
            f"{cloud.url}/api/homes/{alice.home['slug']}/proxy-mappings/app.alice.homes.test",
            timeout=10,
        )
        assert r.status_code == 204
        wait_for(
            lambda: tls_refused(cloud.https_port, "app.alice.homes.test"),
            timeout=10,
            what="route removed",
        )


def test_http_mapping_routes_plain_http_by_host_and_proxy_v2_delivers_the_client_address(
    cloud: CloudSite, alice: Tenant, tunnel
) -> None:
    slug = alice.home["slug"]
    with serve("alice-plain") as svc:
        port = alice.home["port_base"] + 1
        tunnel(alice, port, svc.port)
        r = _map(
            cloud, alice, {"host": "plain.alice.homes.test", "scheme": "http", "tunnel_port": port}
        )
        assert r.status_code == 201, r.text
        _, body = wait_for(
            lambda: (res := http_get(cloud.http_port, "plain.alice.homes.test"))[0] == 200 and res,
            timeout=15,
        )
        assert body == b"alice-plain"
    capture = RawCapture()
    try:
        port = alice.home["port_base"] + 2
        tunnel(alice, port, capture.port)
        pp_route = {"host": "pp.alice.homes.test", "tunnel_port": port, "proxy_protocol": True}
        r = _map(cloud, alice, pp_route)
        assert r.status_code == 201, r.text
        wait_for(
            lambda: any(m["host"] == "pp.alice.homes.test" for m in live_routes(cloud)), timeout=15
        )
        # The capture hangs up; we only want its bytes.
        tls_refused(cloud.https_port, "pp.alice.homes.test")
        header = capture.seen.get(timeout=10)
        assert header.startswith(PP2_SIGNATURE)
        assert header[16:20] == bytes([127, 0, 0, 1])  # IPv4 source address = the real client
    finally:
        capture.close()
    for host in ("plain.alice.homes.test", "pp.alice.homes.test"):
        alice.api.delete(f"{cloud.url}/api/homes/{slug}/proxy-mappings/{host}", timeout=10)


def test_ssh_listening_outside_the_own_range_or_doing_anything_else_is_refused(
    cloud: CloudSite, alice: Tenant, bob: Tenant, known: Path
) -> None:
    user = f"{alice.home['ssh_username']}@127.0.0.1"
    opts = client_options(alice.key, known, cloud.ssh_port)

    def ssh(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ssh", *opts, *args],
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    for port in (bob.home["port_base"], alice.home["port_base"] - 1, 65000):
        r = ssh(
            "-tt", "-o", "ExitOnForwardFailure=yes", "-R", f"127.0.0.1:{port}:127.0.0.1:9", user
        )
        assert r.returncode != 0 and "forwarding failed" in r.stderr.lower(), r.stderr
    r = ssh("-o", "ExitOnForwardFailure=yes", "-L", f"0:127.0.0.1:{cloud.web_port}", "-N", user)
    assert r.returncode != 0
    r = ssh("-T", user, "id")
    assert "uid=" not in r.stdout
    sftp = ["sftp", "-b", "-", "-F", "/dev/null", "-P", str(cloud.ssh_port), "-i", str(alice.key)]
    sftp += ["-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={known}", user]
    r = subprocess.run(sftp, input="ls\n", capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode != 0
    password = ["ssh", "-F", "/dev/null", "-p", str(cloud.ssh_port), "-o", "BatchMode=yes"]
    password += ["-o", "PubkeyAuthentication=no", "-o", "PasswordAuthentication=yes"]
    password += ["-o", f"UserKnownHostsFile={known}", user, "true"]
    r = subprocess.run(
        password,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert r.returncode == 255 and "permission denied" in r.stderr.lower()


# --- authorization and validation ----------------------------------------------------------------


def test_another_tenant_cannot_see_or_touch_my_home_mappings_or_hostnames(
    cloud: CloudSite, alice: Tenant, bob: Tenant
) -> None:
    slug = alice.home["slug"]
    r = alice.api.post(
        f"{cloud.url}/api/homes/{slug}/proxy-mappings",
        json={"host": "mine.alice.homes.test"},
        timeout=10,
    )
    assert r.status_code == 201
    try:
        assert bob.api.get(f"{cloud.url}/api/homes/{slug}", timeout=5).status_code == 404
        assert (
            bob.api.get(f"{cloud.url}/api/homes/{slug}/proxy-mappings", timeout=5).status_code
            == 404
        )
        assert (
            bob.api.delete(
                f"{cloud.url}/api/homes/{slug}/proxy-mappings/mine.alice.homes.test", timeout=5
            ).status_code
            == 404
        )
        assert bob.api.delete(f"{cloud.url}/api/homes/{slug}", timeout=5).status_code == 404
        r = bob.api.post(
            f"{cloud.url}/api/homes/{bob.home['slug']}/proxy-mappings",
            json={"host": "mine.alice.homes.test", "scheme": "http"},
            timeout=5,
        )
        assert r.status_code == 403 and r.json()["field"] == "host"
        assert "this home's names are under bob.homes.test" in r.json()["detail"]
        for method, path in (
            ("post", "proxy-mappings/sync"),
            ("get", "proxy-mappings/haproxy"),
            ("post", "homes/sync"),
        ):
            assert (
                getattr(bob.api, method)(f"{cloud.url}/api/admin/{path}", timeout=5).status_code
                == 403
            )
    finally:
        alice.api.delete(
            f"{cloud.url}/api/homes/{slug}/proxy-mappings/mine.alice.homes.test", timeout=10
        )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"host": "bad host.test"}, "host"),
        ({"host": "evil.test;reload"}, "host"),
        ({"host": "line.test\nset map x"}, "host"),
        ({"host": "ünïcode.test"}, "host"),
        ({"host": ("a" * 60 + ".") * 4 + "abcde.test"}, "host"),  # 254 characters
        ({"host": "*.wild.test"}, "host"),
        ({"host": "ok.alice.homes.test", "tunnel_port": 1024}, "tunnel_port"),
        ({"host": "ok.alice.homes.test", "tunnel_port": 70000}, "tunnel_port"),
        ({"host": "ok.alice.homes.test", "scheme": "ftp"}, "scheme"),
    ],
)
def test_bad_mapping_input_is_refused_naming_the_field_and_never_reaches_haproxy(
    cloud: CloudSite, alice: Tenant, body: dict, field: str
) -> None:
    r = alice.api.post(
        f"{cloud.url}/api/homes/{alice.home['slug']}/proxy-mappings", json=body, timeout=10
    )
    assert r.status_code in (400, 409, 422), r.text
    assert r.json()["detail"].startswith(f"{field}:") or r.json().get("field") == field, r.json()
    assert all(m["host"] != body["host"].lower() for m in live_routes(cloud))
    maps = "".join(p.read_text() for p in (cloud.state / "haproxy" / "maps").iterdir())
    assert "ok.alice.homes.test" not in maps and "reload" not in maps


# --- raw tcp and allowlists --------------------------------------------------------------------


def _tcp_range(cloud: CloudSite) -> range:
    first, last = (int(p) for p in cloud.env["CLOUDATHOME_TCP_PORTS"].split("-"))
    return range(first, last + 1)


def test_a_tcp_mapping_publishes_the_sshd_at_home_and_its_allowlist_changes_at_run_time(
    cloud: CloudSite, alice: Tenant, tunnel, tmp_path: Path
) -> None:
    slug = alice.home["slug"]
    mappings = f"{cloud.url}/api/homes/{slug}/proxy-mappings"
    with home_sshd(tmp_path) as sshd:
        port = alice.home["port_base"] + 5
        tunnel(alice, port, sshd.port)
        r = _map(cloud, alice, {"scheme": "tcp", "tunnel_port": port})
        assert r.status_code == 201, r.text
        public = r.json()["public_port"]
        assert public in _tcp_range(cloud) and r.json()["host"] == ""
        known = tmp_path / "known_hosts"
        out = wait_for(
            lambda: _try_ssh(sshd, public, known), timeout=20, what="ssh through the edge"
        )
        assert out.strip() == "home"
        runtime = RuntimeAPI(cloud.state / "haproxy" / "admin.sock")
        pid = runtime.info()["Pid"]
        r = alice.api.patch(
            f"{mappings}/{public}", params={"scheme": "tcp"}, json={"allow": ["127.0.0.2"]}
        )
        assert r.status_code == 200, r.text
        assert r.json()[0]["allow"] == ["127.0.0.2/32"]
        wait_for(lambda: echo_refused(public, "127.0.0.3"), timeout=15, what="allowlist applied")
        assert _try_ssh(sshd, public, known, source="127.0.0.2") == "home\n"
        assert runtime.info()["Pid"] == pid  # no reload
        listed = alice.api.get(mappings, timeout=5).json()
        assert [m["edge"] for m in listed if m["public_port"] == public] == ["routed"]
        r = alice.api.delete(f"{mappings}/{public}", params={"scheme": "tcp"}, timeout=10)
        assert r.status_code == 204
        wait_for(lambda: echo_refused(public, "127.0.0.2"), timeout=15, what="route removed")
        # The port is free again: the next tcp mapping gets it.
        r = _map(cloud, alice, {"scheme": "tcp", "tunnel_port": port})
        assert r.status_code == 201 and r.json()["public_port"] == public, r.text
        alice.api.delete(f"{mappings}/{public}", params={"scheme": "tcp"}, timeout=10)


def _try_ssh(sshd, public: int, known: Path, source: str = "127.0.0.1") -> str | None:
    try:
        return ssh_run(sshd, public, known, "echo", "home", source=source)
    except AssertionError:
        return None


def test_an_allowlist_on_an_http_mapping_answers_403_to_other_clients(
    cloud: CloudSite, alice: Tenant, tunnel
) -> None:
    slug = alice.home["slug"]
    with serve("alice-acl") as svc:
        port = alice.home["port_base"] + 6
        tunnel(alice, port, svc.port)
        body = {"host": "acl.alice.homes.test", "scheme": "http", "tunnel_port": port}
        r = _map(cloud, alice, {**body, "allow": ["127.0.0.2/32", "2001:db8::/32"]})
        assert r.status_code == 201, r.text
        wait_for(
            lambda: http_get(cloud.http_port, "acl.alice.homes.test", source="127.0.0.2")[0] == 200,
            timeout=15,
        )
        assert http_get(cloud.http_port, "acl.alice.homes.test", source="127.0.0.3")[0] == 403
        r = alice.api.patch(
            f"{cloud.url}/api/homes/{slug}/proxy-mappings/acl.alice.homes.test",
            json={"allow": []},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        wait_for(
            lambda: http_get(cloud.http_port, "acl.alice.homes.test", source="127.0.0.3")[0] == 200,
            timeout=15,
        )
    alice.api.delete(f"{cloud.url}/api/homes/{slug}/proxy-mappings/acl.alice.homes.test")


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"scheme": "tcp", "public_port": 1}, 400, "public_port"),
        ({"scheme": "tcp", "host": "x.alice.homes.test"}, 400, "host"),
        ({"host": "x.alice.homes.test", "public_port": 30000}, 400, "public_port"),
        ({"host": "x.alice.homes.test", "allow": ["10.0.0.1/8"]}, 400, "allow"),
        ({"host": "x.alice.homes.test", "allow": ["300.1.2.3/32"]}, 400, "allow"),
        ({"scheme": "tcp", "allow": "10.0.0.0/8"}, 422, "allow"),
    ],
)
def test_bad_tcp_or_allowlist_input_is_refused_naming_the_field(
    cloud: CloudSite, alice: Tenant, body: dict, status: int, field: str
) -> None:
    maps = cloud.state / "haproxy" / "maps"
    admin = cloud.api(cloud.token("admin", cloud.admin_password))
    assert admin.post(f"{cloud.url}/api/admin/proxy-mappings/sync", timeout=30).status_code == 200
    before = {p.name: p.read_text() for p in maps.iterdir()}
    r = _map(cloud, alice, body)
    assert r.status_code == status, r.text
    assert r.json()["field"] == field or r.json()["detail"].startswith(f"{field}:"), r.json()
    assert {p.name: p.read_text() for p in maps.iterdir()} == before


def test_a_taken_public_port_and_the_quota_are_conflicts_naming_the_field(
    cloud: CloudSite, alice: Tenant, bob: Tenant
) -> None:
    first = _tcp_range(cloud)[-1]
    r = _map(cloud, alice, {"scheme": "tcp", "public_port": first})
    assert r.status_code == 201, r.text
    try:
        r = _map(cloud, bob, {"scheme": "tcp", "public_port": first})
        assert r.status_code == 409 and r.json()["field"] == "public_port", r.text
        second = _map(cloud, alice, {"scheme": "tcp"})
        assert second.status_code == 201, second.text
        r = _map(cloud, alice, {"scheme": "tcp"})
        assert r.status_code == 409 and r.json()["field"] == "public_port", r.text
        assert "quota" in r.json()["detail"]
    finally:
        for m in alice.api.get(f"{cloud.url}/api/homes/{alice.home['slug']}/proxy-mappings").json():
            if m["scheme"] == "tcp":
                alice.api.delete(
                    f"{cloud.url}/api/homes/{alice.home['slug']}/proxy-mappings/{m['public_port']}",
                    params={"scheme": "tcp"},
                )


# --- faults ----------------------------------------------------------------------------------------


def test_sync_twice_changes_nothing_the_second_time(cloud: CloudSite, alice: Tenant) -> None:
    admin = cloud.api(cloud.token("admin", cloud.admin_password))
    first = admin.post(f"{cloud.url}/api/admin/proxy-mappings/sync", timeout=10)
    second = admin.post(f"{cloud.url}/api/admin/proxy-mappings/sync", timeout=10)
    assert first.status_code == second.status_code == 200
    assert second.json() == {"added": 0, "changed": 0, "removed": 0}


def _pid_of(cloud: CloudSite, name: str) -> int:
    lines = [line for line in cloud.tail().splitlines() if line.strip().startswith(name)]
    return int(lines[-1].split()[2])


def test_a_stopped_haproxy_makes_the_admin_api_answer_503_with_the_reason(
    cloud: CloudSite,
) -> None:
    token = cloud.token("admin", cloud.admin_password)
    master = _pid_of(cloud, "haproxy")
    workers = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    assert len(workers) == 1, workers  # the worker serves the admin socket
    worker = int(workers[0])

    def direct(method: str, path: str) -> tuple[int, str, dict]:
        # The public port is HAProxy's too: with it stopped, ask gunicorn on its own socket.
        conn = _UnixHTTPConnection(str(cloud.state / "web" / "gunicorn.sock"))
        try:
            conn.request(
                method, path, headers={"Host": "127.0.0.1", "Authorization": f"Bearer {token}"}
            )
            reply = conn.getresponse()
            return reply.status, reply.getheader("Content-Type", ""), json.loads(reply.read())
        finally:
            conn.close()

    os.kill(worker, signal.SIGSTOP)
    try:
        replies = [
            direct("GET", "/api/admin/proxy-mappings/haproxy"),
            direct("POST", "/api/admin/proxy-mappings/sync"),
        ]
    finally:
        os.kill(worker, signal.SIGCONT)
    for status, content_type, body in replies:
        assert status == 503, body
        assert content_type.startswith("application/json")
        assert "no complete reply within" in body["detail"]
    live_routes(cloud)  # which asserts a 200: HAProxy answers again once it runs


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(self.path)


def test_haproxy_killed_comes_back_with_every_route_without_a_sync(
    cloud: CloudSite, alice: Tenant, tunnel, tmp_path: Path
) -> None:
    ctx, der = self_signed(tmp_path, "back.alice.homes.test")
    with serve("back", ctx, der) as svc:
        port = alice.home["port_base"] + 3
        tunnel(alice, port, svc.port)
        r = _map(cloud, alice, {"host": "back.alice.homes.test", "tunnel_port": port})
        assert r.status_code == 201
        wait_for(
            lambda: tls_get(cloud.https_port, "back.alice.homes.test")[0] == b"back", timeout=15
        )
        # The map file follows the live map (a change is live first); HAProxy restarts from it.
        https_map = cloud.state / "haproxy" / "maps" / "https.map"
        wait_for(
            lambda: "back.alice.homes.test" in https_map.read_text(), timeout=10, what="map file"
        )
        old = _pid_of(cloud, "haproxy")
        os.killpg(old, signal.SIGKILL)
        wait_for(lambda: _pid_of(cloud, "haproxy") != old, timeout=30, what="haproxy restarted")
        body, _ = wait_for(
            lambda: tls_get(cloud.https_port, "back.alice.homes.test"),
            timeout=20,
            what="route back",
        )
        assert body == b"back"
    alice.api.delete(
        f"{cloud.url}/api/homes/{alice.home['slug']}/proxy-mappings/back.alice.homes.test",
        timeout=10,
    )


def test_worker_killed_with_a_provisioning_task_in_hand_finishes_it_after_restart(
    cloud: CloudSite, tmp_path: Path
) -> None:
    cloud.create_user("dave", "Dave-pass-99")
    api = cloud.api(cloud.token("dave", "Dave-pass-99"))
    worker = _pid_of(cloud, "worker")
    os.killpg(worker, signal.SIGSTOP)  # the worker holds the message but cannot run it
    try:
        r = api.post(
            f"{cloud.url}/api/homes", json={"public_key": keygen(tmp_path / "dave")}, timeout=10
        )
        assert r.status_code == 201 and r.json()["status"] == "provisioning"
    finally:
        os.killpg(worker, signal.SIGKILL)
    slug = r.json()["slug"]
    wait_for(lambda: _pid_of(cloud, "worker") != worker, timeout=30, what="worker restarted")
    home = ready_home(cloud, api, slug, timeout=60)
    assert home["ssh_username"].endswith("_dave")
    assert (cloud.state / "ssh" / "keys" / home["ssh_username"]).exists()


def test_releasing_a_home_removes_its_mappings_routes_key_and_system_user(
    cloud: CloudSite, tmp_path: Path
) -> None:
    erin = tenant(cloud, tmp_path, "erin")
    slug = erin.home["slug"]
    r = erin.api.post(
        f"{cloud.url}/api/homes/{slug}/proxy-mappings", json={"host": "erin.homes.test"}, timeout=10
    )
    assert r.status_code == 201
    r = erin.api.post(
        f"{cloud.url}/api/homes/{slug}/proxy-mappings",
        json={"scheme": "tcp", "allow": ["127.0.0.2/32"]},
        timeout=10,
    )
    assert r.status_code == 201, r.text
    public = r.json()["public_port"]
    wait_for(lambda: any(m["host"] == "erin.homes.test" for m in live_routes(cloud)), timeout=15)
    wait_for(lambda: any(m["public_port"] == public for m in live_routes(cloud)), timeout=15)
    assert erin.api.delete(f"{cloud.url}/api/homes/{slug}", timeout=10).status_code == 204
    wait_for(
        lambda: all(m["host"] != "erin.homes.test" for m in live_routes(cloud)),
        timeout=15,
        what="route removed",
    )
    wait_for(
        lambda: all(m["public_port"] != public for m in live_routes(cloud)),
        timeout=15,
        what="tcp route removed",
    )
    maps = cloud.state / "haproxy" / "maps"
    wait_for(lambda: f"tcp/{public}" not in (maps / "allow.map").read_text(), timeout=15)
    user = erin.home["ssh_username"]
    wait_for(
        lambda: not (cloud.state / "ssh" / "keys" / user).exists(), timeout=15, what="key removed"
    )
    wait_for(
        lambda: subprocess.run(["id", user], capture_output=True, check=False).returncode != 0,
        timeout=15,
    )


# --- two cloud sites on one machine ------------------------------------------------------------


@pytest.fixture(scope="module")
def other_site() -> Iterator[CloudSite]:
    with cloud_site() as running_site:
        yield running_site


def test_a_home_of_one_site_is_refused_by_the_sshd_of_another_site_on_the_same_machine(
    cloud: CloudSite, other_site: CloudSite, alice: Tenant, tmp_path: Path
) -> None:
    """Each site's homes are in a group of its own (from its user prefix), and each sshd
    allows only its own group: even a key file of the other site's home is not enough."""
    username = alice.home["ssh_username"]
    prefix = cloud.env["CLOUDATHOME_SSH_USER_PREFIX"]
    group = grp.getgrgid(pwd.getpwnam(username).pw_gid).gr_name
    assert group == f"cloudathome-{prefix}s"
    assert f"AllowGroups {group}\n" in (cloud.state / "ssh" / "sshd_config").read_text()
    other_config = (other_site.state / "ssh" / "sshd_config").read_text()
    assert "AllowGroups cloudathome-" in other_config and group not in other_config
    planted = other_site.state / "ssh" / "keys" / username
    shutil.copy(cloud.state / "ssh" / "keys" / username, planted)
    try:
        host_key = (other_site.state / "ssh" / "ssh_host_ed25519_key.pub").read_text().split()
        known = known_hosts(tmp_path / "known_hosts", other_site.ssh_port, " ".join(host_key[:2]))
        done = subprocess.run(
            [
                "ssh",
                "-tt",
                *client_options(alice.key, known, other_site.ssh_port),
                "-R",
                f"127.0.0.1:{alice.home['port_base']}:127.0.0.1:9",
                f"{username}@127.0.0.1",
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 255 and "Permission denied" in done.stderr, done.stderr
        wait_for(
            lambda: (
                "none of user's groups are listed in AllowGroups"
                in (other_site.state / "logs" / "sshd.log").read_text()
            ),
            timeout=10,
            what="the other sshd's reason",
        )
    finally:
        planted.unlink()
