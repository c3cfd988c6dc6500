"""Whole sites as real processes for integration tests: `cloudathome cloud up` on free
ports with its own PostgreSQL database, private Redis and state dir, stopped by PID and
cleaned (database, system users) whatever the test did."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import requests

from tests.support.procs import free_port, running, wait_for

PG_ADMIN_URL = os.environ.get("CLOUDATHOME_TEST_PG", "postgres://postgres@127.0.0.1:5432/test")
# sshd (StrictModes) refuses key files below a world-writable directory such as /tmp, so
# site state lives under a root-owned 0755 folder of ours.
TEST_ROOT = Path(os.environ.get("CLOUDATHOME_TEST_ROOT", "/var/lib/cloudathome-tests"))


@contextlib.contextmanager
def state_root() -> Iterator[Path]:
    TEST_ROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(dir=TEST_ROOT))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """A fresh PostgreSQL database for one site; dropped afterwards."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _clean_environ() -> dict[str, str]:
    """This process's environment without any setting of ours: each site gets only its own."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CLOUDATHOME_", "DJANGO_", "REDIS_URL"))
    }


def port_base() -> int:
    """A tunnel port range of its own for each cloud site: homes' forwards all bind on this
    machine's 127.0.0.1, so two sites running at once (the two suites) must not share ports."""
    TEST_ROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
    with open(TEST_ROOT / "port-base.counter", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        count = int(fh.read().strip() or 0)
        fh.seek(0)
        fh.truncate()
        fh.write(str(count + 1))
    return 10000 + (count % 40) * 1000


def remove_system_users(prefix: str) -> None:
    """Safety net: system users a cloud site of ours created, by their unique prefix."""
    for entry in pwd.getpwall():
        if entry.pw_name.startswith(prefix) and 62000 <= entry.pw_uid <= 62999:
            subprocess.run(["userdel", entry.pw_name], capture_output=True, check=False)


@dataclass
class CloudSite:
    state: Path
    env: dict[str, str]
    web_port: int
    https_port: int
    http_port: int
    ssh_port: int
    admin_password: str
    log: Path
    url: str = field(init=False)

    def __post_init__(self) -> None:
        self.url = f"http://127.0.0.1:{self.web_port}"

    def manage(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "workers.cli", "cloud", "manage", *args],
            env=self.env, capture_output=True, text=True, input=input, timeout=120, check=False,
        )  # fmt: skip

    def token(self, username: str, password: str) -> str:
        r = requests.post(
            f"{self.url}/api/auth/token",
            json={"username": username, "password": password},
            timeout=10,
        )
        r.raise_for_status()
        return str(r.json()["token"])

    def api(self, token: str) -> requests.Session:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        return session

    def create_user(
        self, username: str, password: str, active: bool = True, staff: bool = False
    ) -> None:
        code = (
            "from django.contrib.auth import get_user_model as g;"
            f"u=g().objects.create_user({username!r}, password={password!r});"
            f"u.is_active={active!r}; u.is_staff={staff!r}; u.save()"
        )
        done = self.manage("shell", "-c", code)
        assert done.returncode == 0, done.stderr

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@contextlib.contextmanager
def cloud_site(
    ssh_mode: str = "system-users", extra_env: dict[str, str] | None = None
) -> Iterator[CloudSite]:
    prefix = f"t{secrets.token_hex(2)}"
    with state_root() as root:
        yield from _cloud_site(root, prefix, ssh_mode, extra_env)


def _cloud_site(
    root: Path, prefix: str, ssh_mode: str, extra_env: dict[str, str] | None
) -> Iterator[CloudSite]:
    state = root / "state"
    admin_password = secrets.token_urlsafe(12)
    ports = {name: free_port() for name in ("web", "https", "http", "ssh", "flower")}
    with scratch_database("cah_cloud") as db_url:
        env = {
            **_clean_environ(),
            "CLOUDATHOME_STATE_DIR": str(state),
            "DATABASE_URL": db_url,
            "CLOUDATHOME_WEB_PORT": str(ports["web"]),
            "CLOUDATHOME_WEB_BIND": "127.0.0.1",
            "CLOUDATHOME_HTTPS_PORT": str(ports["https"]),
            "CLOUDATHOME_HTTP_PORT": str(ports["http"]),
            "CLOUDATHOME_EDGE_BIND": "127.0.0.1",
            "CLOUDATHOME_SSH_PORT": str(ports["ssh"]),
            "CLOUDATHOME_SSH_BIND": "127.0.0.1",
            "CLOUDATHOME_FLOWER_PORT": str(ports["flower"]),
            "CLOUDATHOME_PUBLIC_HOST": "127.0.0.1",
            "CLOUDATHOME_SSH_MODE": ssh_mode,
            "CLOUDATHOME_SSH_USER_PREFIX": prefix,
            "CLOUDATHOME_PORT_BASE": str(port_base()),
            "CLOUDATHOME_ADMIN_PASSWORD": admin_password,
            **(extra_env or {}),
        }
        log = root / "cloud-up.log"
        site = CloudSite(
            state,
            env,
            ports["web"],
            ports["https"],
            ports["http"],
            ports["ssh"],
            admin_password,
            log,
        )

        def ready() -> bool:
            return "cloud site up" in log.read_text(errors="replace") if log.exists() else False

        try:
            with running(
                [sys.executable, "-m", "workers.cli", "cloud", "up"],
                log=log,
                env=env,
                ready=ready,
                timeout=90,
            ) as proc:
                wait_for(
                    lambda: requests.get(f"{site.url}/healthz", timeout=2).ok,
                    timeout=30,
                    what="cloud web",
                )
                site.proc = proc  # type: ignore[attr-defined]
                yield site
        finally:
            remove_system_users(prefix)


@dataclass
class HomeSite:
    state: Path
    env: dict[str, str]
    port: int
    admin_password: str
    log: Path
    url: str = field(init=False)

    def __post_init__(self) -> None:
        self.url = f"http://127.0.0.1:{self.port}"

    def api(self) -> requests.Session:
        r = requests.post(
            f"{self.url}/api/auth/token",
            json={"username": "admin", "password": self.admin_password},
            timeout=10,
        )
        r.raise_for_status()
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {r.json()['token']}"
        return session

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def register_home(
    cloud: CloudSite, root: Path, username: str, password: str
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """keygen + register as a user would run them; returns (cloudlink.yaml path, register run)."""
    key = root / "keys" / "cloudathome_ed25519"
    config = root / "config" / "cloudlink.yaml"
    env = {**cloud.env, "CLOUDLINK_CONFIG": str(config), "CLOUDATHOME_PASSWORD": password}
    subprocess.run(
        [sys.executable, "-m", "workers.cli", "keygen", "--output", str(key)],
        check=True,
        capture_output=True,
        env=env,
    )
    done = subprocess.run(
        [sys.executable, "-m", "workers.cli", "register", "--cloudserver-url", cloud.url, "--username", username,
         "--public-key", f"{key}.pub", "--private-key", str(key)],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    return config, done


@contextlib.contextmanager
def home_site(
    root: Path,
    config: Path,
    db_url: str,
    admin_password: str,
    extra_env: dict[str, str] | None = None,
) -> Iterator[HomeSite]:
    """`cloudathome home up` on free ports with the given database (so a test can restart it);
    its tunnels outlive it on purpose and are stopped by the test's own cleanup."""
    state = root / "home-state"
    ports = {name: free_port() for name in ("web", "flower")}
    env = {
        **_clean_environ(),
        "CLOUDATHOME_STATE_DIR": str(state),
        "CLOUDLINK_CONFIG": str(config),
        "DATABASE_URL": db_url,
        "CLOUDATHOME_HOME_PORT": str(ports["web"]),
        "CLOUDATHOME_FLOWER_PORT": str(ports["flower"]),
        "CLOUDATHOME_ADMIN_PASSWORD": admin_password,
        "CLOUDATHOME_TUNNEL_SUPERVISE_SECONDS": "2",
        **(extra_env or {}),
    }
    log = root / f"home-up-{secrets.token_hex(2)}.log"
    site = HomeSite(state, env, ports["web"], admin_password, log)

    def ready() -> bool:
        return "home console up" in log.read_text(errors="replace") if log.exists() else False

    with running(
        [sys.executable, "-m", "workers.cli", "home", "up"],
        log=log,
        env=env,
        ready=ready,
        timeout=90,
    ) as proc:
        site.proc = proc  # type: ignore[attr-defined]
        yield site
