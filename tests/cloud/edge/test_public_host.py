"""The cloud's own name on its edge: HAProxy ends TLS for the public host with a certificate the
cloud obtains itself from a real Pebble (HTTP-01 through its own :80) and renews without a
reload, checked by TLS clients that verify the chain against Pebble's root; every other name on
the same port still passes through untouched, and no home can claim the cloud's name."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cloud.edge.haproxy import (
    Edge,
    EdgeConfig,
    EdgeError,
    RuntimeAPI,
    config_command,
    write_config,
)
from tests.support import modes
from tests.support.net import http_get, self_signed, serve, tls_get
from tests.support.sites import CloudSite, cloud_site, state_root
from tests.support.tenants import Tenant
from workers.common import acme
from workers.local.pebble import MockDns, PebbleInfo, pebble_server
from workers.local.procs import free_port, port_open, running, wait_for
from workers.local.sites import clean_environ, cli

PUBLIC = "cloud.test"
ADMIN_CERT = "/api/admin/public-cert"


@pytest.fixture(scope="module")
def pebble(dns: MockDns, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PebbleInfo]:
    """Pebble validates HTTP-01 on the port the module's cloud will serve :80 on."""
    tmp = tmp_path_factory.mktemp("pebble")
    with pebble_server(tmp, http_port=free_port(), tls_port=free_port(), dns=dns) as info:
        yield info


@pytest.fixture(scope="module")
def cloud(dns: MockDns, pebble: PebbleInfo) -> Iterator[CloudSite]:
    """The module's cloud (the tenants of tests/cloud/conftest.py live on it) with a DNS name
    of its own and Pebble as its CA. Every certificate is inside the renewal window from the
    start, so `public_cert --check` (what beat runs) renews it."""
    env = {
        "CLOUDATHOME_DNS_RESOLVERS": dns.resolver,
        "CLOUDATHOME_PUBLIC_HOST": PUBLIC,
        "CLOUDATHOME_HTTP_PORT": str(pebble.http_port),
        "CLOUDATHOME_ACME_DIRECTORY": pebble.directory_url,
        "CLOUDATHOME_ACME_CA_BUNDLE": pebble.ca_bundle,
        "CLOUDATHOME_ACME_EMAIL": "ops@example.org",
        "CLOUDATHOME_RENEW_DAYS": "36500",
        "CLOUDATHOME_RENEW_MIN_AGE": "0",
    }
    with cloud_site(extra_env=env) as site:
        yield site


@pytest.fixture(scope="module")
def admin(cloud: CloudSite) -> requests.Session:
    return cloud.api(cloud.token("admin", cloud.admin_password))


@pytest.fixture(scope="module")
def roots(pebble: PebbleInfo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("roots") / "pebble-roots.pem"
    path.write_text("".join(pebble.roots()))
    return path


def _status(cloud: CloudSite, admin: requests.Session) -> dict:
    r = admin.get(f"{cloud.url}{ADMIN_CERT}", timeout=10)
    assert r.status_code == 200, r.text
    return dict(r.json())


@pytest.fixture(scope="module")
def issued(cloud: CloudSite, admin: requests.Session) -> dict:
    """The first certificate, which the worker asks Pebble for as soon as it starts."""

    def installed() -> dict | None:
        status = _status(cloud, admin)
        assert status["state"] != "failed", status
        cert = status["certificate"]
        return status if status["state"] == "done" and cert and cert["served"] else None

    return wait_for(installed, timeout=60, what="the public host's certificate")


@dataclass
class Handshake:
    cert: x509.Certificate
    alpn: str | None
    version: str | None


def handshake(cloud: CloudSite, roots: Path, sni: str = PUBLIC) -> Handshake:
    """A TLS client with verification on (chain to Pebble's root, and the name)."""
    ctx = ssl.create_default_context(cafile=str(roots))
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", cloud.https_port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=sni) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return Handshake(
            x509.load_der_x509_certificate(der), tls.selected_alpn_protocol(), tls.version()
        )


def curl(cloud: CloudSite, roots: Path, path: str, *args: str) -> tuple[str, str]:
    """curl with Pebble's root as its only CA: (response head, body); fails on any TLS error."""
    done = subprocess.run(
        [
            "curl",
            *("-sS", "--max-time", "20", "-D", "-", "--cacert", str(roots)),
            *("--resolve", f"{PUBLIC}:{cloud.https_port}:127.0.0.1"),
            *args,
            f"https://{PUBLIC}:{cloud.https_port}{path}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    head, _, body = done.stdout.partition("\n\n")  # text mode reads CRLF as one newline
    return head.lower(), body


def haproxy_pids(cloud: CloudSite) -> tuple[str, str]:
    """HAProxy's master (pid file) and its worker (the Runtime API): a reload changes the
    worker, a restart both."""
    master = (cloud.state / "haproxy" / "haproxy.pid").read_text().split()[0]
    worker = RuntimeAPI(cloud.state / "haproxy" / "admin.sock").command("show info")
    pid = next(line for line in worker.splitlines() if line.startswith("Pid: "))
    return master, pid


# --- the public host on :443, terminated by HAProxy -----------------------------------------


def test_the_public_host_is_served_with_the_cas_certificate_to_a_verifying_client(
    cloud: CloudSite, issued: dict, roots: Path
) -> None:
    cert = issued["certificate"]
    assert cert["names"] == [PUBLIC] and not cert["placeholder"]
    assert "Pebble" in cert["issuer"]
    seen = handshake(cloud, roots)
    assert f"{seen.cert.serial_number:X}" == cert["serial"]
    assert seen.alpn == "h2"
    assert seen.version in ("TLSv1.2", "TLSv1.3")
    # The file HAProxy starts from holds the key: the site's account alone reads it.
    pem = cloud.state / "haproxy" / "public.pem"
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    assert x509.load_pem_x509_certificates(pem.read_bytes())[0] == seen.cert


def test_the_login_page_loads_over_https_with_hsts_and_secure_cookies(
    cloud: CloudSite, issued: dict, roots: Path
) -> None:
    head, body = curl(cloud, roots, "/login/")
    assert head.startswith("http/2 200"), head
    assert 'name="password"' in body
    assert "strict-transport-security: max-age=31536000" in head
    cookie = next(line for line in head.splitlines() if "cah_cloud_csrftoken=" in line)
    assert "; secure" in cookie


def test_the_api_answers_on_the_public_host(cloud: CloudSite, issued: dict, roots: Path) -> None:
    body = f'{{"username": "admin", "password": "{cloud.admin_password}"}}'
    head, reply = curl(
        cloud, roots, "/api/auth/token", "-H", "Content-Type: application/json", "--data", body
    )
    assert head.startswith("http/2 200"), head + reply
    token = json.loads(reply)["token"]
    head, reply = curl(cloud, roots, ADMIN_CERT, "-H", f"Authorization: Bearer {token}")
    assert head.startswith("http/2 200"), head + reply
    status = json.loads(reply)
    assert status["host"] == PUBLIC and status["certificate"]["served"] is True


def test_the_control_planes_limits_count_the_client_not_haproxy(
    cloud: CloudSite, issued: dict, roots: Path
) -> None:
    head, _ = curl(cloud, roots, "/healthz", "--interface", "127.0.0.7")
    assert head.startswith("http/2 200"), head
    table = RuntimeAPI(cloud.state / "haproxy" / "admin.sock").command("show table st_web_source")
    assert "127.0.0.7" in table, table


def test_the_plain_port_stays_plain_whatever_a_client_claims(
    cloud: CloudSite, issued: dict
) -> None:
    # gunicorn trusts its socket's scheme headers: HAProxy replaces or drops what a client sent.
    r = requests.get(
        f"{cloud.url}/login/",
        headers={"X-Forwarded-Proto": "https", "X-Forwarded-Ssl": "on"},
        timeout=10,
    )
    assert r.status_code == 200
    assert "Strict-Transport-Security" not in r.headers
    assert "secure" not in r.headers["Set-Cookie"].lower()


def test_a_homes_name_on_the_same_port_still_passes_through(
    cloud: CloudSite, issued: dict, alice: Tenant, tmp_path: Path
) -> None:
    host = "app.alice.homes.test"
    ctx, der = self_signed(tmp_path, host)
    port = alice.home["port_base"]
    # The home's own service where its tunnel would deliver: the edge connects to it directly.
    with serve("alice-home", ctx, der, port=port):
        r = alice.api.post(
            alice.url(cloud, "/proxy-mappings"),
            json={"host": host, "scheme": "https", "tunnel_port": port},
            timeout=10,
        )
        assert r.status_code == 201, r.text
        body, cert = wait_for(lambda: tls_get(cloud.https_port, host), timeout=15, what="route")
        assert body == b"alice-home" and cert == der  # the home's own certificate, untouched
        alice.api.delete(alice.url(cloud, f"/proxy-mappings/{host}"), timeout=10)


# --- :80 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", [PUBLIC, "Cloud.Test", f"{PUBLIC}:80"])
def test_port_80_sends_the_public_host_to_https(cloud: CloudSite, host: str) -> None:
    with contextlib.closing(socket.create_connection(("127.0.0.1", cloud.http_port), 5)) as sock:
        sock.sendall(f"GET /signup/?next=/x HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        head = sock.recv(4096).decode()
    assert head.startswith("HTTP/1.1 301"), head
    assert f"location: https://{PUBLIC}:{cloud.https_port}/signup/?next=/x\r\n" in head.lower()


def test_port_80_keeps_the_challenge_path_of_the_public_host_for_its_responder(
    cloud: CloudSite, issued: dict
) -> None:
    # No issuance runs: the responder's server is in maintenance, not redirected.
    assert http_get(cloud.http_port, PUBLIC, "/.well-known/acme-challenge/abc")[0] == 503


def test_port_80_routes_other_names_as_before(cloud: CloudSite) -> None:
    assert http_get(cloud.http_port, "unknown.homes.test")[0] == 404


# --- renewal -----------------------------------------------------------------------------------


def test_a_renewal_installs_a_new_certificate_without_reloading_haproxy(
    cloud: CloudSite, issued: dict, admin: requests.Session, roots: Path
) -> None:
    before = handshake(cloud, roots).cert
    pids = haproxy_pids(cloud)
    done = cloud.manage("public_cert", "--check")  # what beat runs: due, so renewed
    assert done.returncode == 0, done.stdout + done.stderr
    for step in ("the certificate expires on", "challenge answered", "certificate installed"):
        assert step in done.stdout, done.stdout
    after = handshake(cloud, roots).cert
    assert after.serial_number != before.serial_number
    assert haproxy_pids(cloud) == pids
    status = _status(cloud, admin)
    assert (
        status["state"] == "done" and status["certificate"]["serial"] == f"{after.serial_number:X}"
    )
    head, _ = curl(cloud, roots, "/healthz")
    assert head.startswith("http/2 200")


def test_a_failed_renewal_says_why_backs_off_and_keeps_serving_the_certificate(
    cloud: CloudSite, issued: dict, admin: requests.Session, roots: Path
) -> None:
    served = handshake(cloud, roots).cert
    dead = free_port()
    done = subprocess.run(
        cli("cloud", "manage", "public_cert", "--renew"),
        env={**cloud.env, "CLOUDATHOME_ACME_DIRECTORY": f"https://127.0.0.1:{dead}/dir"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    reason = f"{PUBLIC}: could not reach the ACME server 127.0.0.1:{dead} (connection refused)"
    assert f"failed: {reason}" in done.stdout
    status = _status(cloud, admin)
    assert (status["state"], status["error"], status["failures"]) == ("failed", reason, 1)
    assert status["retry_after"]
    assert handshake(cloud, roots).cert == served
    # Beat's next run waits for the backoff instead of asking the CA again.
    again = cloud.manage("public_cert", "--check")
    assert "challenge" not in again.stdout and _status(cloud, admin)["failures"] == 1


def test_every_file_of_the_public_host_has_its_mode(cloud: CloudSite, issued: dict) -> None:
    # The certificate with its key, the account key, HAProxy's TLS listener: the modes table.
    assert (cloud.state / "acme" / "account.key").exists()
    assert (cloud.state / "haproxy" / "web-tls.sock").exists()
    assert modes.walk(cloud=(cloud.state, modes.STATE)) == []


# --- the cloud's name is nobody else's ---------------------------------------------------------


@pytest.mark.parametrize("name", [PUBLIC, f"www.{PUBLIC}"])
def test_no_home_can_claim_the_public_host(cloud: CloudSite, alice: Tenant, name: str) -> None:
    r = alice.api.post(alice.url(cloud, "/domains"), json={"name": name}, timeout=10)
    assert r.status_code in (400, 403, 409, 422), r.text
    assert "reserved" in r.json()["detail"]
    r = alice.api.post(
        alice.url(cloud, "/proxy-mappings"),
        json={"host": name, "scheme": "https", "tunnel_port": alice.home["port_base"]},
        timeout=10,
    )
    assert r.status_code == 403, r.text


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("cloud_test.example", "label 'cloud_test' may only contain a-z, 0-9 and '-'"),
        ("*.cloud.test", "wildcards are not allowed"),
        ("cloud", "needs at least two labels (name.tld)"),
    ],
)
def test_a_bad_public_host_stops_the_cloud_at_start_in_one_line(
    tmp_path: Path, value: str, reason: str
) -> None:
    env = {
        **clean_environ(),
        "CLOUDATHOME_STATE_DIR": str(tmp_path / "state"),
        "CLOUDATHOME_PUBLIC_HOST": value,
    }
    done = subprocess.run(
        cli("cloud", "up"), env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert done.stderr.strip() == f"cloudathome: CLOUDATHOME_PUBLIC_HOST: {reason}"


# --- the certificate file and HAProxy's memory, on an edge of its own --------------------------


def _pem(host: str) -> tuple[str, int]:
    cert, key = acme.self_signed(host)
    pem = cert.public_bytes(serialization.Encoding.PEM) + acme.private_pem(key)
    return pem.decode(), cert.serial_number


def test_haproxy_starts_on_a_placeholder_and_takes_a_new_certificate_without_a_reload() -> None:
    with state_root() as root:
        cfg = EdgeConfig(
            root / "state",
            https_port=free_port(),
            http_port=free_port(),
            bind="127.0.0.1",
            web_port=free_port(),
            web_bind="127.0.0.1",
            public_host=PUBLIC,
        )
        write_config(cfg)
        placeholder = x509.load_pem_x509_certificates(cfg.public_pem.read_bytes())[0]
        assert placeholder.issuer == placeholder.subject  # self-signed, for the public host
        assert stat.S_IMODE(cfg.public_pem.stat().st_mode) == 0o600
        edge = Edge(cfg)
        with running(
            config_command(cfg),
            log=root / "haproxy.log",
            ready=lambda: port_open(cfg.https_port) and edge.generation() is not None,
            timeout=15,
        ):
            assert edge.served_serial() == placeholder.serial_number
            assert tls_get_cert(cfg.https_port) == placeholder
            generation = edge.generation()
            pem, serial = _pem(PUBLIC)
            edge.install_certificate(pem)
            assert edge.served_serial() == serial
            assert tls_get_cert(cfg.https_port).serial_number == serial
            assert cfg.public_pem.read_text() == pem
            # Something HAProxy could not start from (a certificate with another's key) never
            # replaces the file.
            other, _ = _pem(PUBLIC)
            mismatched = (
                pem.partition("-----BEGIN PRIVATE KEY")[0]
                + other[other.index("-----BEGIN PRIVATE KEY") :]
            )
            with pytest.raises(EdgeError, match="not a certificate with its key"):
                edge.install_certificate(mismatched)
            assert cfg.public_pem.read_text() == pem
            assert edge.generation() == generation


def tls_get_cert(port: int) -> x509.Certificate:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=PUBLIC) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der)
