"""The home site against a real cloud site: keygen + register as the original walkthrough
does, then the Home Console (`cloudathome home up`) publishing a service through its
supervised ssh tunnel, surviving a dead tunnel and its own restart."""

from __future__ import annotations

import dataclasses
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import pytest
import requests
import yaml

from tests.support.net import self_signed, serve, tls_get, tls_refused
from tests.support.sites import (
    CloudSite,
    HomeSite,
    home_site,
    register_home,
    scratch_database,
)
from tests.support.ssh import keygen
from tests.support.unprivileged import User
from workers.bench.attack import closed_by_peer, slow_requests
from workers.local.procs import stop_pid, wait_for

# Three slots, so that a test can fill them all.
CLOUD_ENV = {"CLOUDATHOME_HOME_SLOTS": "3"}


@pytest.fixture(scope="module")
def registered(
    cloud: CloudSite, root: Path, console_user: User
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """The README's home steps (keygen, register) as an ordinary user."""
    cloud.create_user("homer", "Homer-pass-42")
    return register_home(cloud, root / "homer", "homer", "Homer-pass-42", console_user)


def test_register_writes_a_0600_cloudlink_yaml_pins_the_host_key_and_prints_the_summary(
    cloud: CloudSite, registered: tuple[Path, subprocess.CompletedProcess[str]]
) -> None:
    config, done = registered
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    data = yaml.safe_load(config.read_text())
    assert data["cloudserver_url"] == cloud.url and data["auth_token"].startswith("cah_")
    assert data["ports"]["count"] == 10 and data["ssh"]["port"] == cloud.ssh_port
    pinned = Path(data["ssh"]["known_hosts"]).read_text()
    host_key = (cloud.state / "ssh").glob("*ed25519*.pub")
    assert any(p.read_text().split()[1] in pinned for p in host_key)
    lines = done.stdout.splitlines()
    assert f"Done. Configuration written to: {config}" in lines
    for label in ("home_slug    :", "ssh_username :", "ssh_host     :", "port range   :"):
        assert any(line.startswith(f"  {label}") for line in lines), done.stdout
    assert f"  ssh_host     : 127.0.0.1:{cloud.ssh_port}" in lines


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong password", "invalid username or password"),
        ("inactive", "not active"),
        ("unreachable", "cannot reach"),
    ],
)
def test_register_failures_print_one_line_and_write_no_file(
    cloud: CloudSite, root: Path, case: str, expected: str
) -> None:
    name = {"wrong password": "wpuser", "inactive": "inuser", "unreachable": "unuser"}[case]
    cloud.create_user(name, "Right-pass-42", active=case != "inactive")
    password = "Wrong-pass-1" if case == "wrong password" else "Right-pass-42"
    # A port nothing listens on stands for a cloud that cannot be reached.
    target = cloud if case != "unreachable" else dataclasses.replace(cloud, web_port=1)
    config, done = register_home(target, root / name, name, password)
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and expected in done.stderr, done.stderr
    assert not config.exists() and not (config.parent / "known_hosts").exists()


def test_register_when_no_slot_is_free_says_so_and_leaves_no_file(
    cloud: CloudSite, root: Path, registered
) -> None:
    for name in ("fill1", "fill2"):
        cloud.create_user(name, "Fill-pass-42")
        _, done = register_home(cloud, root / name, name, "Fill-pass-42")
        assert done.returncode == 0, done.stderr
    cloud.create_user("late", "Late-pass-42")
    config, done = register_home(cloud, root / "late", "late", "Late-pass-42")
    assert done.returncode == 1 and "no free home slot" in done.stderr
    assert not config.exists()


def test_console_refuses_to_start_on_a_malformed_cloudlink_yaml_naming_the_field(
    root: Path, registered
) -> None:
    config, _ = registered
    bad = root / "bad.yaml"
    data = yaml.safe_load(config.read_text())
    del data["ssh"]["username"]
    bad.write_text(yaml.safe_dump(data))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDATHOME_")}
    done = subprocess.run(
        [sys.executable, "-m", "workers.common.cli", "home", "up", "--allow-root"],
        env={**env, "CLOUDLINK_CONFIG": str(bad), "CLOUDATHOME_STATE_DIR": str(root / "bad-state")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == f"cloudathome home: {bad}: ssh.username: missing"


def test_home_up_as_root_refuses_unless_asked_and_writes_nothing(root: Path, registered) -> None:
    config, _ = registered
    state = root / "root-state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDATHOME_")}
    done = subprocess.run(
        [sys.executable, "-m", "workers.common.cli", "home", "up"],
        env={**env, "CLOUDLINK_CONFIG": str(config), "CLOUDATHOME_STATE_DIR": str(state)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("cloudathome home: refusing to run as root")
    assert "--allow-root" in done.stderr
    assert not (state / "db.sqlite3").exists() and not (state / "logs").exists()


def test_the_console_runs_as_the_ordinary_user_that_registered(
    console: HomeSite, console_user: User, registered
) -> None:
    config, _ = registered
    assert config.stat().st_uid == console_user.uid
    assert console.proc is not None
    assert Path(f"/proc/{console.proc.pid}").stat().st_uid == console_user.uid
    assert console.state.stat().st_uid == console_user.uid


# --- the console publishing a service ---------------------------------------------------------


@pytest.fixture(scope="module")
def home_db() -> Iterator[str]:
    with scratch_database("cah_home") as url:
        yield url


@pytest.fixture(scope="module")
def console(root: Path, registered, home_db: str, console_user: User) -> Iterator[HomeSite]:
    config, done = registered
    assert done.returncode == 0, done.stderr
    with home_site(root / "homer", config, home_db, "Console-pass-1", user=console_user) as site:
        yield site


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    ctx, der = self_signed(tmp_path_factory.mktemp("svc"), "www.homer.homes.test")
    with serve("homer-service", ctx, der) as svc:
        yield svc


def _entry(api: requests.Session, site: HomeSite, entry_id: int) -> dict:
    r = api.get(f"{site.url}/api/proxy-entries/{entry_id}", timeout=10)
    assert r.status_code == 200, r.text
    return dict(r.json())


@pytest.fixture(scope="module")
def entry(console: HomeSite, service) -> Iterator[dict]:
    api = console.api()
    r = api.post(
        f"{console.url}/api/domains",
        json={
            "name": "www.homer.homes.test",
            "email": "homer@example.com",
            "cert_dir": str(console.cert_root),
        },
        timeout=10,
    )
    assert r.status_code == 201, r.text
    domain = r.json()["id"]
    r = api.post(
        f"{console.url}/api/domains/{domain}/proxy-entries",
        json={"hostname": "www.homer.homes.test", "home_port": service.port},
        timeout=15,
    )
    assert r.status_code == 201, r.text
    created = dict(r.json())
    yield created
    # Tunnels outlive the console on purpose; this test module stops what it opened.
    last = created["tunnel"]
    if last.get("pid"):
        subprocess.run(["kill", str(last["pid"])], capture_output=True, check=False)


def _status(console: HomeSite) -> dict:
    r = console.api().get(f"{console.url}/api/status", timeout=10)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_the_worker_checks_the_link_and_check_now_gets_a_newer_result(
    console: HomeSite, registered: tuple[Path, subprocess.CompletedProcess[str]]
) -> None:
    first = wait_for(
        lambda: (s := _status(console))["state"] != "unknown" and s,
        timeout=30,
        what="the check of the worker's start",
    )
    assert first["state"] == "ok", first
    checks = {c["name"]: c for c in first["checks"]}
    assert set(checks) == {"api", "token", "ssh"} and all(c["ok"] for c in checks.values())
    ports = yaml.safe_load(registered[0].read_text())["ports"]
    # The probe listens on the last free port, away from the one the next tunnel gets.
    assert checks["ssh"]["detail"].endswith(f"port {ports['base'] + ports['count'] - 1}")
    r = console.api().post(f"{console.url}/api/status/check", timeout=10)
    assert r.status_code == 202 and r.json()["queued"], r.text
    newer = wait_for(
        lambda: not (s := _status(console))["queued"] and s, timeout=30, what="check now"
    )
    assert newer["state"] == "ok"
    assert datetime.fromisoformat(newer["checked_at"]) > datetime.fromisoformat(first["checked_at"])


def test_slow_local_clients_do_not_stall_the_console(console: HomeSite) -> None:
    # 40 sockets of another local user, each with a request that never ends: with gunicorn's
    # 8 threads facing them, every other request waited until they gave up.
    port = int(console.url.rsplit(":", 1)[1])
    with slow_requests("127.0.0.2", port, 40) as slow:

        def healthz(_: int) -> int:
            return requests.get(f"{console.url}/healthz", timeout=10).status_code

        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(healthz, range(24))) == [200] * 24
        # The slow ones are still open, costing the console a socket each and no thread.
        assert not any(closed_by_peer(sock, 0) for sock in slow)


def _open(console: HomeSite, entry: dict, open_: bool) -> None:
    r = console.api().post(
        f"{console.url}/api/proxy-entries/{entry['id']}/tunnel", json={"open": open_}, timeout=10
    )
    assert r.status_code in (200, 202), r.text


def test_open_tunnel_publishes_the_service_through_the_cloud_edge(
    cloud: CloudSite, console: HomeSite, entry: dict, service
) -> None:
    _open(console, entry, True)
    api = console.api()
    state = wait_for(
        lambda: (e := _entry(api, console, entry["id"]))["tunnel"]["state"] == "open" and e,
        timeout=30,
        what="tunnel open",
    )
    assert state["tunnel"]["pid"] and state["tunnel"]["since"]
    entry["tunnel"] = state["tunnel"]
    body, cert = wait_for(
        lambda: tls_get(cloud.https_port, "www.homer.homes.test"), timeout=15, what="edge route"
    )
    assert body == b"homer-service" and cert == service.cert_der


def test_a_killed_tunnel_comes_back_within_10_seconds_without_a_click(
    cloud: CloudSite, console: HomeSite, entry: dict
) -> None:
    api = console.api()
    before = wait_for(
        lambda: (e := _entry(api, console, entry["id"]))["tunnel"]["state"] == "open" and e,
        timeout=30,
    )
    os.kill(before["tunnel"]["pid"], signal.SIGKILL)
    body, _ = wait_for(
        lambda: tls_get(cloud.https_port, "www.homer.homes.test"),
        timeout=10,
        interval=0.2,
        what="traffic back",
    )
    assert body == b"homer-service"
    after = wait_for(
        lambda: (
            (e := _entry(api, console, entry["id"]))["tunnel"]["pid"]
            not in (None, before["tunnel"]["pid"])
            and e
        ),
        timeout=10,
    )
    entry["tunnel"] = after["tunnel"]


def test_tunnel_survives_a_console_restart_and_close_still_stops_it(
    cloud: CloudSite,
    root: Path,
    registered,
    home_db: str,
    console: HomeSite,
    entry: dict,
    console_user: User,
) -> None:
    api = console.api()
    running = wait_for(
        lambda: (e := _entry(api, console, entry["id"]))["tunnel"]["state"] == "open" and e,
        timeout=30,
    )
    pid = running["tunnel"]["pid"]
    assert console.proc is not None
    stop_pid(console.proc)
    assert os.path.exists(f"/proc/{pid}")
    assert tls_get(cloud.https_port, "www.homer.homes.test")[0] == b"homer-service"
    config, _ = registered
    with home_site(root / "homer", config, home_db, "Console-pass-1", user=console_user) as again:
        api = again.api()
        assert _entry(api, again, entry["id"])["tunnel"]["pid"] == pid
        _open(again, entry, False)
        wait_for(
            lambda: _entry(api, again, entry["id"])["tunnel"]["state"] == "closed",
            timeout=20,
            what="closed",
        )
        wait_for(lambda: not os.path.exists(f"/proc/{pid}"), timeout=10, what="ssh stopped")
        wait_for(
            lambda: tls_refused(cloud.https_port, "www.homer.homes.test"),
            timeout=10,
            what="edge no longer reaches",
        )
        entry["tunnel"] = {}


def _manage(site: HomeSite, code: str) -> str:
    done = site.manage("shell", "-c", code)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_stale_pid_that_now_belongs_to_an_unrelated_process_is_never_killed(
    root: Path, registered, home_db: str, entry: dict, console_user: User
) -> None:
    config, _ = registered
    sleeper = subprocess.Popen(["sleep", "120"], start_new_session=True)
    try:
        with home_site(
            root / "homer", config, home_db, "Console-pass-1", user=console_user
        ) as site:
            # The database says our tunnel runs as this PID, started at another time: a recycled PID.
            _manage(
                site,
                "from home.tunnels.models import ProxyEntry as P; t = P.objects.get(pk="
                f"{entry['id']}).tunnel; type(t).objects.filter(pk=t.pk).update(pid={sleeper.pid}, "
                "start_time=1, state='open', desired_open=False)",
            )
            api = site.api()
            wait_for(
                lambda: _entry(api, site, entry["id"])["tunnel"]["pid"] is None,
                timeout=20,
                what="forgotten",
            )
            assert sleeper.poll() is None
    finally:
        stop_pid(sleeper)


def test_a_tampered_host_key_makes_the_tunnel_refuse_and_the_console_says_why(
    root: Path, registered, home_db: str, entry: dict, console_user: User
) -> None:
    config, _ = registered
    known = Path(yaml.safe_load(config.read_text())["ssh"]["known_hosts"])
    original = known.read_text()
    other = keygen(root / "impostor_host_key")
    known.write_text(f"{original.split()[0]} {' '.join(other.split()[:2])}\n")
    try:
        with home_site(
            root / "homer", config, home_db, "Console-pass-1", user=console_user
        ) as site:
            api = site.api()
            _open(site, entry, True)
            failed = wait_for(
                lambda: (e := _entry(api, site, entry["id"]))["tunnel"]["state"] == "failed" and e,
                timeout=30,
                what="tunnel refused",
            )
            assert "Host key verification failed" in failed["tunnel"]["last_error"]
            _open(site, entry, False)
            wait_for(
                lambda: _entry(api, site, entry["id"])["tunnel"]["state"] == "closed", timeout=20
            )
    finally:
        known.write_text(original)
