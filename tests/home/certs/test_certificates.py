"""Certificates end to end: the Home Console's ACME flow against a real Pebble that
validates through the real cloud edge (HAProxy :80/:443 equivalents), our sshd and a
temporary tunnel to our challenge responder; nothing is left behind afterwards."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support import modes
from tests.support.sites import (
    CloudSite,
    HomeSite,
    home_site,
    register_home,
    scratch_database,
)
from tests.support.unprivileged import User
from workers.local.pebble import MockDns, PebbleInfo
from workers.local.procs import wait_for


@pytest.fixture(scope="module")
def console(
    cloud: CloudSite, root: Path, pebble: PebbleInfo, console_user: User
) -> Iterator[HomeSite]:
    cloud.create_user("certy", "Certy-pass-42")
    config, done = register_home(cloud, root / "certy", "certy", "Certy-pass-42", console_user)
    assert done.returncode == 0, done.stderr
    env = {
        "CLOUDATHOME_ACME_DIRECTORY": pebble.directory_url,
        "CLOUDATHOME_ACME_CA_BUNDLE": pebble.ca_bundle,
        # Every certificate is due for renewal once it is 30 s old (see the renewal test): the
        # module's other certificates renew in the same beat run, and on a loaded machine they
        # finish seconds apart; a shorter age made them due again before the second run.
        "CLOUDATHOME_RENEW_DAYS": "36500",
        "CLOUDATHOME_RENEW_MIN_AGE": "30",
        "CLOUDATHOME_POST_RENEW_ACTIONS": json.dumps(
            {"mark": ["/usr/bin/mktemp", f"{root}/renew-marks/reloaded.XXXXXX"]}
        ),
    }
    with (
        scratch_database("cah_home") as db,
        home_site(root / "certy", config, db, "Console-pass-2", env, user=console_user) as site,
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
    found = subprocess.run(
        ["pgrep", "-c", "-f", str(root / "certy" / "config" / "known_hosts")],
        capture_output=True,
        text=True,
        check=False,
    )
    return int(found.stdout.strip() or 0)


def _issue(console: HomeSite, api: requests.Session, name: str, out: Path, **extra: object) -> dict:
    r = api.post(
        f"{console.url}/api/domains",
        json={"name": name, "email": "certy@example.com", "cert_dir": str(out), **extra},
        timeout=10,
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def _finished(api: requests.Session, console: HomeSite, domain_id: int) -> dict:
    return wait_for(
        lambda: (d := _domain(api, console, domain_id))["job"]["state"] in ("done", "failed") and d,
        timeout=90,
        what="certificate job",
    )


@pytest.mark.parametrize("challenge", ["http-01", "tls-alpn-01"])
def test_certificate_is_issued_through_the_tunnel_and_verifies_against_pebbles_root(
    cloud: CloudSite, console: HomeSite, pebble: PebbleInfo, root: Path, challenge: str
) -> None:
    api = console.api()
    name = f"{challenge.replace('-', '')}.certy.homes.test"
    out = console.cert_root
    done = _finished(api, console, _issue(console, api, name, out, challenge=challenge)["id"])
    assert done["job"]["state"] == "done", done["job"]
    assert done["cert_status"] == "valid" and done["cert_expiry"]
    live = out / name
    assert stat.S_IMODE((live / "privkey.pem").stat().st_mode) == 0o600
    roots = root / f"roots-{challenge}.pem"
    roots.write_text("".join(pebble.roots()))
    chain = live / "chain.pem"
    verify = ["openssl", "verify", "-CAfile", str(roots), "-untrusted", str(chain)]
    verified = subprocess.run(
        [*verify, str(live / "cert.pem")], capture_output=True, text=True, check=False
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    text = subprocess.run(
        ["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(live / "cert.pem")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"DNS:{name}" in text
    # The temporary mapping and tunnel are gone.
    assert name not in _live_hosts(cloud)
    assert _tunnel_processes(root) == 0


def test_a_name_that_does_not_resolve_fails_with_a_clear_reason_and_leaves_nothing(
    cloud: CloudSite, console: HomeSite, pebble: PebbleInfo, root: Path
) -> None:
    name = "nowhere.certy.homes.test"
    pebble.dns.set_servfail(name)
    api = console.api()
    out = console.cert_root / "fail"
    failed = _finished(api, console, _issue(console, api, name, out)["id"])
    assert failed["job"]["state"] == "failed" and failed["cert_status"] == "failed"
    error = failed["job"]["error"]
    assert name in error and "DNS" in error and "\n" not in error
    assert name not in _live_hosts(cloud)
    assert not (out / name).exists()
    assert _tunnel_processes(root) == 0


def _due(console: HomeSite) -> list[int]:
    done = console.manage(
        "shell", "-c", "from home.certs.services import certificates_due; print(certificates_due())"
    )
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout.strip().splitlines()[-1]))


def _run_renewals(console: HomeSite) -> int:
    """What beat runs daily, run now (its body, in a process of the site)."""
    done = console.manage(
        "shell",
        "-c",
        "from home.certs.tasks import certificates_renew; print(certificates_renew.apply().get())",
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip().splitlines()[-1])


def test_due_certificates_are_renewed_by_the_beat_task_and_a_second_run_does_nothing(
    console: HomeSite, root: Path, console_user: User
) -> None:
    api = console.api()
    marks = root / "renew-marks"
    marks.mkdir()
    console_user.own(marks)
    name = "renew.certy.homes.test"
    domain = _issue(console, api, name, console.cert_root / "renew", post_renew_action="mark")
    first = _finished(api, console, domain["id"])
    assert first["job"]["state"] == "done", first["job"]
    # The operator's action told the service about its first certificate, as the console's
    # own (unprivileged) user.
    ran = wait_for(lambda: (d := _domain(api, console, domain["id"]))["action"] and d, timeout=30)
    assert ran["action"]["exit_code"] == 0, ran["action"]
    (mark,) = marks.iterdir()
    assert ran["action"]["output"].strip() == str(mark)
    assert mark.stat().st_uid == console_user.uid
    # The window (RENEW_DAYS) makes every certificate due once it is older than RENEW_MIN_AGE.
    wait_for(lambda: domain["id"] in _due(console), timeout=90, interval=2, what="certificate due")
    assert _run_renewals(console) >= 1
    renewed = wait_for(
        lambda: (
            (d := _domain(api, console, domain["id"]))["cert_expiry"] != first["cert_expiry"]
            and d["job"]["state"] == "done"
            and d
        ),
        timeout=90,
        what="renewal",
    )
    assert renewed["cert_status"] == "valid"
    assert _run_renewals(console) == 0
    wait_for(lambda: len(list(marks.iterdir())) == 2, timeout=30, what="the action ran again")


def test_a_worker_killed_mid_flow_leaves_nothing_behind_and_the_flow_can_be_retried(
    cloud: CloudSite, console: HomeSite, root: Path
) -> None:
    api = console.api()
    name = "killed.certy.homes.test"
    out = console.cert_root / "killed"
    worker = next(
        int(line.split()[2])
        for line in reversed(console.tail().splitlines())
        if line.strip().startswith("worker")
    )
    domain = _issue(console, api, name, out)
    # Freeze the worker as soon as the flow registered its temporary mapping, then kill it.
    wait_for(
        lambda: "mapping registered" in _domain(api, console, domain["id"])["job"]["step"],
        timeout=60,
        interval=0.01,
        what="temporary mapping",
    )
    os.killpg(worker, signal.SIGSTOP)
    os.killpg(worker, signal.SIGKILL)
    failed = wait_for(
        lambda: (d := _domain(api, console, domain["id"]))["job"]["state"] == "failed" and d,
        timeout=60,
        what="the restarted worker to recover",
    )
    assert "worker stopped" in failed["job"]["error"]
    wait_for(lambda: name not in _live_hosts(cloud), timeout=15, what="temporary mapping removed")
    assert _tunnel_processes(root) == 0
    assert not (out / name).exists()
    r = api.post(f"{console.url}/api/domains/{domain['id']}/renew", timeout=10)
    assert r.status_code in (200, 202), r.text
    retried = _finished(api, console, domain["id"])
    assert retried["job"]["state"] == "done" and (out / name / "fullchain.pem").exists()


def _orders(root: Path) -> int:
    """New-order requests Pebble has answered so far."""
    return (root / "pebble" / "pebble.log").read_text().count("POST /order-plz")


def test_a_custom_domain_waits_for_its_txt_record_and_then_gets_its_certificate_by_itself(
    cloud: CloudSite, console: HomeSite, dns: MockDns, root: Path
) -> None:
    api = console.api()
    name = "shop-certy.test"
    orders = _orders(root)
    domain = _issue(console, api, name, console.cert_root / "custom")
    waiting = wait_for(
        lambda: (d := _domain(api, console, domain["id"]))["job"]["state"] == "waiting" and d,
        timeout=30,
        what="the job waiting for the DNS proof",
    )
    ownership = waiting["ownership"]
    assert ownership["status"] == "unverified" and ownership["record"]["type"] == "TXT"
    assert ownership["record"]["name"] == f"_cloudathome.{name}"
    assert waiting["job"]["step"] == f"waiting for the TXT record _cloudathome.{name}"
    assert [s["name"] for s in waiting["job"]["steps"] if s["status"] == "current"] == [
        "TXT record found (not needed under the base domain)"
    ]
    assert name not in _live_hosts(cloud) and _orders(root) == orders  # nothing mapped or ordered
    dns.add_txt(ownership["record"]["name"], ownership["record"]["value"])
    r = api.post(f"{console.url}/api/domains/{domain['id']}/verify", timeout=10)
    assert r.status_code == 202, r.text
    done = _finished(api, console, domain["id"])
    assert done["job"]["state"] == "done", done["job"]
    assert done["ownership"]["status"] == "verified" and done["cert_status"] == "valid"
    assert (console.cert_root / "custom" / name / "fullchain.pem").exists()
    assert _orders(root) == orders + 1


def _console_page(console: HomeSite, path: str) -> str:
    web = requests.Session()
    web.get(f"{console.url}/login/", timeout=10)
    r = web.post(
        f"{console.url}/login/",
        timeout=10,
        headers={"Referer": f"{console.url}/login/"},
        data={
            "username": "admin",
            "password": console.admin_password,
            "csrfmiddlewaretoken": web.cookies["cah_home_csrftoken"],
        },
    )
    assert r.ok
    return web.get(f"{console.url}{path}", timeout=10).text


def test_a_name_the_home_cannot_own_stops_before_any_mapping_or_order_with_the_reason_shown(
    cloud: CloudSite, console: HomeSite, root: Path
) -> None:
    api = console.api()
    name = "www.other.homes.test"  # under the base domain, but another label than certy's
    orders = _orders(root)
    domain = _issue(console, api, name, console.cert_root / "refused")
    failed = _finished(api, console, domain["id"])
    assert failed["job"]["state"] == "failed" and failed["ownership"]["status"] == "refused"
    reason = failed["job"]["error"]
    assert "names under homes.test come with a home's label" in reason
    assert "certy.homes.test" in reason  # the step: this home's own names
    assert name not in _live_hosts(cloud) and _orders(root) == orders
    assert not (console.cert_root / "refused").exists()
    assert "names under homes.test come with a home&#x27;s label" in _console_page(
        console, f"/domains/{domain['id']}/"
    )


def test_a_domain_named_like_a_folder_of_another_tool_fails_and_keeps_that_folder(
    cloud: CloudSite, console: HomeSite, console_user: User
) -> None:
    """The attack of issue 12: a domain named like a folder already in the certificate
    directory replaced it. Now the job fails naming the path, and the folder stays whole."""
    name = "clash.certy.homes.test"
    out = console.cert_root / "clash"
    out.mkdir(parents=True)
    console_user.own(console.cert_root, out)
    (out / name).mkdir()  # root's, as another tool's would be
    (out / name / "site.conf").write_text("someone else's file\n")
    api = console.api()
    failed = _finished(api, console, _issue(console, api, name, out)["id"])
    assert failed["job"]["state"] == "failed", failed["job"]
    assert failed["job"]["error"].startswith(f"{out / name}: is in the way")
    assert sorted(p.name for p in out.iterdir()) == [name]  # no version folder left
    assert [p.name for p in (out / name).iterdir()] == ["site.conf"]
    assert (out / name / "site.conf").read_text() == "someone else's file\n"
    assert name not in _live_hosts(cloud)
    shutil.rmtree(out / name)  # the other tool's folder has no place in the modes table


def test_every_file_both_sites_wrote_during_the_flow_has_the_mode_of_the_table(
    cloud: CloudSite, console: HomeSite, root: Path
) -> None:
    """Run last in this module: register, certificates (tunnels, mappings), renewals done; the
    home's key file is live on the cloud (system users: the one 0644 exception)."""
    home_user = next((cloud.state / "ssh" / "keys").glob("t*_certy"))
    assert stat.S_IMODE(home_user.stat().st_mode) == 0o644
    assert (
        modes.walk(
            cloud=(cloud.state, modes.STATE),
            home=(console.state, modes.STATE),
            link=(root / "certy" / "config", modes.LINK),
            keys=(root / "certy" / "keys", modes.LINK),
            certs=(console.cert_root, modes.CERTS),
        )
        == []
    )
