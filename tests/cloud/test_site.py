"""The whole cloud site as `cloudathome cloud up` runs it (HAProxy, our sshd, web, Celery
worker + beat, Flower, private Redis, PostgreSQL), driven like a user and a script would."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.support.net import (
    PP2_SIGNATURE,
    RawCapture,
    http_get,
    self_signed,
    serve,
    tls_get,
    tls_refused,
)
from tests.support.sites import CloudSite
from tests.support.ssh import client_options, keygen, known_hosts, reverse_tunnel
from workers.local.procs import stop_pid, wait_for


@dataclass
class Tenant:
    username: str
    password: str
    token: str
    api: requests.Session
    key: Path
    public_key: str
    home: dict


def _ready(cloud: CloudSite, api: requests.Session, slug: str, timeout: float) -> dict:
    """The home once its provisioning is done."""
    return wait_for(
        lambda: (
            (h := api.get(f"{cloud.url}/api/homes/{slug}", timeout=5).json())["status"] == "ready"
            and h
        ),
        timeout=timeout,
        what=f"home {slug} provisioned",
    )


def _tenant(cloud: CloudSite, tmp: Path, name: str, staff: bool = False) -> Tenant:
    password = f"pw-{name}-Secret9"
    cloud.create_user(name, password, active=True, staff=staff)
    token = cloud.token(name, password)
    api = cloud.api(token)
    key = tmp / f"{name}_key"
    public_key = keygen(key)
    r = api.post(f"{cloud.url}/api/homes", json={"public_key": public_key}, timeout=10)
    assert r.status_code == 201, r.text
    slug = r.json()["slug"]
    home = _ready(cloud, api, slug, timeout=30)
    return Tenant(name, password, token, api, key, public_key, home)


@pytest.fixture(scope="module")
def alice(cloud: CloudSite, tmp_path_factory: pytest.TempPathFactory) -> Tenant:
    return _tenant(cloud, tmp_path_factory.mktemp("alice"), "alice")


@pytest.fixture(scope="module")
def bob(cloud: CloudSite, tmp_path_factory: pytest.TempPathFactory) -> Tenant:
    return _tenant(cloud, tmp_path_factory.mktemp("bob"), "bob")


@pytest.fixture(scope="module")
def known(cloud: CloudSite, alice: Tenant, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return known_hosts(
        tmp_path_factory.mktemp("kh") / "known_hosts", cloud.ssh_port, alice.home["ssh_host_key"]
    )


@pytest.fixture
def tunnel(cloud: CloudSite, known: Path) -> Iterator:
    """Open DESIGN's tunnel command for a tenant; every ssh started is stopped by PID."""
    procs: list[subprocess.Popen] = []

    def open_(tenant: Tenant, remote: int, local: int) -> subprocess.Popen:
        user = tenant.home["ssh_username"]
        proc = reverse_tunnel(tenant.key, known, cloud.ssh_port, user, remote, local)
        procs.append(proc)
        return proc

    yield open_
    for proc in procs:
        stop_pid(proc)


def _web_form(session: requests.Session, url: str, data: dict[str, str]) -> requests.Response:
    session.get(url, timeout=10)
    data = {**data, "csrfmiddlewaretoken": session.cookies.get("csrftoken", "")}
    return session.post(url, data=data, headers={"Referer": url}, timeout=10)


def _map(cloud: CloudSite, tenant: Tenant, body: dict) -> requests.Response:
    """POST a proxy mapping for the tenant's home."""
    url = f"{cloud.url}/api/homes/{tenant.home['slug']}/proxy-mappings"
    return tenant.api.post(url, json=body, timeout=10)


def _live(cloud: CloudSite) -> list[dict]:
    admin = cloud.api(cloud.token("admin", cloud.admin_password))
    r = admin.get(f"{cloud.url}/api/admin/proxy-mappings/haproxy", timeout=10)
    assert r.status_code == 200, r.text
    return list(r.json())


# --- accounts ----------------------------------------------------------------------------------


def test_signup_creates_an_inactive_account_that_can_neither_log_in_nor_get_a_token_until_approved(
    cloud: CloudSite,
) -> None:
    web = requests.Session()
    r = _web_form(
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
    r = _web_form(
        requests.Session(),
        f"{cloud.url}/login/",
        {"username": "carol", "password": "Tr1cky-pass-42"},
    )
    assert "/login/" in r.url and "sessionid" not in r.cookies
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
    r = _web_form(web, f"{cloud.url}/login/", {"username": "carol", "password": "Tr1cky-pass-42"})
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
    ctx, der = self_signed(tmp_path, "alice.example.test")
    with serve("alice-home", ctx, der) as svc:
        port = alice.home["port_base"]
        proc = tunnel(alice, port, svc.port)
        r = _map(cloud, alice, {"host": "Alice.Example.test", "tunnel_port": port})
        assert r.status_code == 201, r.text
        assert r.json()["host"] == "alice.example.test"
        body, cert = wait_for(
            lambda: tls_get(cloud.https_port, "alice.example.test"), timeout=15, what="edge route"
        )
        assert body == b"alice-home" and cert == der  # passthrough: the home's own certificate
        assert proc.poll() is None
        listed = alice.api.get(
            f"{cloud.url}/api/homes/{alice.home['slug']}/proxy-mappings", timeout=5
        ).json()
        assert listed[0]["edge"] == "routed"
        r = alice.api.delete(
            f"{cloud.url}/api/homes/{alice.home['slug']}/proxy-mappings/alice.example.test",
            timeout=10,
        )
        assert r.status_code == 204
        wait_for(
            lambda: tls_refused(cloud.https_port, "alice.example.test"),
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
        r = _map(cloud, alice, {"host": "plain.alice.test", "scheme": "http", "tunnel_port": port})
        assert r.status_code == 201, r.text
        _, body = wait_for(
            lambda: (res := http_get(cloud.http_port, "plain.alice.test"))[0] == 200 and res,
            timeout=15,
        )
        assert body == b"alice-plain"
    capture = RawCapture()
    try:
        port = alice.home["port_base"] + 2
        tunnel(alice, port, capture.port)
        pp_route = {"host": "pp.alice.test", "tunnel_port": port, "proxy_protocol": True}
        r = _map(cloud, alice, pp_route)
        assert r.status_code == 201, r.text
        wait_for(lambda: any(m["host"] == "pp.alice.test" for m in _live(cloud)), timeout=15)
        # The capture hangs up; we only want its bytes.
        tls_refused(cloud.https_port, "pp.alice.test")
        header = capture.seen.get(timeout=10)
        assert header.startswith(PP2_SIGNATURE)
        assert header[16:20] == bytes([127, 0, 0, 1])  # IPv4 source address = the real client
    finally:
        capture.close()
    for host in ("plain.alice.test", "pp.alice.test"):
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
        f"{cloud.url}/api/homes/{slug}/proxy-mappings", json={"host": "mine.alice.test"}, timeout=10
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
                f"{cloud.url}/api/homes/{slug}/proxy-mappings/mine.alice.test", timeout=5
            ).status_code
            == 404
        )
        assert bob.api.delete(f"{cloud.url}/api/homes/{slug}", timeout=5).status_code == 404
        r = bob.api.post(
            f"{cloud.url}/api/homes/{bob.home['slug']}/proxy-mappings",
            json={"host": "mine.alice.test", "scheme": "http"},
            timeout=5,
        )
        assert r.status_code == 409 and r.json()["field"] == "host"
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
        alice.api.delete(f"{cloud.url}/api/homes/{slug}/proxy-mappings/mine.alice.test", timeout=10)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"host": "bad host.test"}, "host"),
        ({"host": "evil.test;reload"}, "host"),
        ({"host": "line.test\nset map x"}, "host"),
        ({"host": "ünïcode.test"}, "host"),
        ({"host": ("a" * 60 + ".") * 4 + "abcde.test"}, "host"),  # 254 characters
        ({"host": "*.wild.test"}, "host"),
        ({"host": "ok.test", "tunnel_port": 1024}, "tunnel_port"),
        ({"host": "ok.test", "tunnel_port": 70000}, "tunnel_port"),
        ({"host": "ok.test", "scheme": "ftp"}, "scheme"),
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
    assert all(m["host"] != body["host"].lower() for m in _live(cloud))
    maps = "".join(p.read_text() for p in (cloud.state / "haproxy" / "maps").iterdir())
    assert "ok.test" not in maps and "reload" not in maps


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
    admin = cloud.api(cloud.token("admin", cloud.admin_password))
    master = _pid_of(cloud, "haproxy")
    workers = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    assert len(workers) == 1, workers  # the worker serves the admin socket
    worker = int(workers[0])
    os.kill(worker, signal.SIGSTOP)
    try:
        r = admin.get(f"{cloud.url}/api/admin/proxy-mappings/haproxy", timeout=30)
        sync = admin.post(f"{cloud.url}/api/admin/proxy-mappings/sync", timeout=30)
    finally:
        os.kill(worker, signal.SIGCONT)
    for reply in (r, sync):
        assert reply.status_code == 503, reply.text
        assert reply.headers["Content-Type"].startswith("application/json")
        assert "no complete reply within" in reply.json()["detail"]
    _live(cloud)  # which asserts a 200: HAProxy answers again once it runs


def test_haproxy_killed_comes_back_with_every_route_without_a_sync(
    cloud: CloudSite, alice: Tenant, tunnel, tmp_path: Path
) -> None:
    ctx, der = self_signed(tmp_path, "back.alice.test")
    with serve("back", ctx, der) as svc:
        port = alice.home["port_base"] + 3
        tunnel(alice, port, svc.port)
        r = _map(cloud, alice, {"host": "back.alice.test", "tunnel_port": port})
        assert r.status_code == 201
        wait_for(lambda: tls_get(cloud.https_port, "back.alice.test")[0] == b"back", timeout=15)
        # The map file follows the live map (a change is live first); HAProxy restarts from it.
        https_map = cloud.state / "haproxy" / "maps" / "https.map"
        wait_for(lambda: "back.alice.test" in https_map.read_text(), timeout=10, what="map file")
        old = _pid_of(cloud, "haproxy")
        os.killpg(old, signal.SIGKILL)
        wait_for(lambda: _pid_of(cloud, "haproxy") != old, timeout=30, what="haproxy restarted")
        body, _ = wait_for(
            lambda: tls_get(cloud.https_port, "back.alice.test"), timeout=20, what="route back"
        )
        assert body == b"back"
    alice.api.delete(
        f"{cloud.url}/api/homes/{alice.home['slug']}/proxy-mappings/back.alice.test", timeout=10
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
    home = _ready(cloud, api, slug, timeout=60)
    assert home["ssh_username"].endswith("_dave")
    assert (cloud.state / "ssh" / "keys" / home["ssh_username"]).exists()


def test_releasing_a_home_removes_its_mappings_routes_key_and_system_user(
    cloud: CloudSite, tmp_path: Path
) -> None:
    erin = _tenant(cloud, tmp_path, "erin")
    slug = erin.home["slug"]
    r = erin.api.post(
        f"{cloud.url}/api/homes/{slug}/proxy-mappings", json={"host": "erin.test"}, timeout=10
    )
    assert r.status_code == 201
    wait_for(lambda: any(m["host"] == "erin.test" for m in _live(cloud)), timeout=15)
    assert erin.api.delete(f"{cloud.url}/api/homes/{slug}", timeout=10).status_code == 204
    wait_for(
        lambda: all(m["host"] != "erin.test" for m in _live(cloud)),
        timeout=15,
        what="route removed",
    )
    user = erin.home["ssh_username"]
    wait_for(
        lambda: not (cloud.state / "ssh" / "keys" / user).exists(), timeout=15, what="key removed"
    )
    wait_for(
        lambda: subprocess.run(["id", user], capture_output=True, check=False).returncode != 0,
        timeout=15,
    )
