"""Certificates end to end: the Home Console's ACME flow against a real Pebble that
validates through the real cloud edge (HAProxy :80/:443 equivalents), our sshd and a
temporary tunnel to our challenge responder; nothing is left behind afterwards."""

from __future__ import annotations

import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.pebble import PebbleInfo, pebble_server
from tests.support.procs import wait_for
from tests.support.sites import (
    CloudSite,
    HomeSite,
    cloud_site,
    home_site,
    register_home,
    scratch_database,
)


@pytest.fixture(scope="module")
def cloud() -> Iterator[CloudSite]:
    with cloud_site() as site:
        yield site


@pytest.fixture(scope="module")
def pebble(cloud: CloudSite, root: Path) -> Iterator[PebbleInfo]:
    with pebble_server(
        root / "pebble", http_port=cloud.http_port, tls_port=cloud.https_port
    ) as info:
        yield info


@pytest.fixture(scope="module")
def console(cloud: CloudSite, root: Path, pebble: PebbleInfo) -> Iterator[HomeSite]:
    cloud.create_user("certy", "Certy-pass-42")
    config, done = register_home(cloud, root / "certy", "certy", "Certy-pass-42")
    assert done.returncode == 0, done.stderr
    env = {
        "CLOUDATHOME_ACME_DIRECTORY": pebble.directory_url,
        "CLOUDATHOME_ACME_CA_BUNDLE": pebble.ca_bundle,
    }
    with (
        scratch_database("cah_home") as db,
        home_site(root / "certy", config, db, "Console-pass-2", env) as site,
    ):
        yield site


def _domain(api: requests.Session, site: HomeSite, domain_id: int) -> dict:
    r = api.get(f"{site.url}/api/domains/{domain_id}", timeout=10)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _live_hosts(cloud: CloudSite) -> set[str]:
    admin = cloud.api(cloud.token("admin", cloud.admin_password))
    return {
        m["host"]
        for m in admin.get(f"{cloud.url}/api/admin/proxy-mappings/haproxy", timeout=10).json()
    }


def _tunnel_processes(root: Path) -> int:
    """ssh processes of this console (their argv names its pinned known_hosts file)."""
    found = subprocess.run(["pgrep", "-c", "-f", str(root / "certy" / "config" / "known_hosts")],
                           capture_output=True, text=True, check=False)  # fmt: skip
    return int(found.stdout.strip() or 0)


@pytest.mark.parametrize("challenge", ["http-01", "tls-alpn-01"])
def test_certificate_is_issued_through_the_tunnel_and_verifies_against_pebbles_root(
    cloud: CloudSite, console: HomeSite, pebble: PebbleInfo, root: Path, challenge: str
) -> None:
    api = console.api()
    name = f"{challenge.replace('-', '')}.certy.test"
    out = root / "certs"
    r = api.post(f"{console.url}/api/domains", json={"name": name, "email": "certy@example.com",
                 "cert_dir": str(out), "challenge": challenge}, timeout=10)  # fmt: skip
    assert r.status_code == 201, r.text
    done = wait_for(lambda: (d := _domain(api, console, r.json()["id"]))["job"]["state"] in ("done", "failed") and d,
                    timeout=90, what="certificate job")  # fmt: skip
    assert done["job"]["state"] == "done", done["job"]
    assert done["cert_status"] == "valid" and done["cert_expiry"]
    live = out / name
    assert stat.S_IMODE((live / "privkey.pem").stat().st_mode) == 0o600
    roots = root / f"roots-{challenge}.pem"
    roots.write_text("".join(pebble.roots()))
    chain = live / "chain.pem"
    verified = subprocess.run(["openssl", "verify", "-CAfile", str(roots), "-untrusted", str(chain), str(live / "cert.pem")],
                              capture_output=True, text=True, check=False)  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    text = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(live / "cert.pem")],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert f"DNS:{name}" in text
    # The temporary mapping and tunnel are gone.
    assert name not in _live_hosts(cloud)
    assert _tunnel_processes(root) == 0


def test_a_name_that_does_not_resolve_fails_with_a_clear_reason_and_leaves_nothing(
    cloud: CloudSite, console: HomeSite, pebble: PebbleInfo, root: Path
) -> None:
    name = "nowhere.certy.test"
    pebble.set_servfail(name)
    api = console.api()
    out = root / "certs-fail"
    r = api.post(
        f"{console.url}/api/domains",
        json={"name": name, "email": "certy@example.com", "cert_dir": str(out)},
        timeout=10,
    )
    assert r.status_code == 201, r.text
    failed = wait_for(lambda: (d := _domain(api, console, r.json()["id"]))["job"]["state"] in ("done", "failed") and d,
                      timeout=90, what="certificate job")  # fmt: skip
    assert failed["job"]["state"] == "failed" and failed["cert_status"] == "failed"
    error = failed["job"]["error"]
    assert name in error and "DNS" in error and "\n" not in error
    assert name not in _live_hosts(cloud)
    assert not (out / name).exists()
    assert _tunnel_processes(root) == 0
