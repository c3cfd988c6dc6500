"""Whole sites as real processes for integration tests (workers.local.sites), each cloud site with
its own PostgreSQL database, SSH user prefix and tunnel port range, cleaned (database,
system users, state) whatever the test did."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg

from cloud.edge.sshd import HOME_UID_RANGE, homes_group
from workers.common.processes import stop_user_processes
from workers.local.procs import Account
from workers.local.sites import CloudSite, HomeSite, register_home, start_cloud, start_home

__all__ = [
    "CloudSite",
    "HomeSite",
    "cloud_site",
    "home_site",
    "register_home",
    "registered_console",
    "run_bounded",
    "scratch_database",
    "state_root",
]

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


def run_bounded(
    argv: list[str], timeout: float, grace: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run a command that starts whole sites (demo, bench). Past `timeout` it gets SIGTERM and
    `grace` seconds to stop every site it started, then SIGKILL: a slow run fails with its
    output instead of leaving processes behind (subprocess.run's timeout would SIGKILL it)."""
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                out, err = proc.communicate(timeout=grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
            err += f"\n(stopped: still running after {timeout:g} s)"
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


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


def port_base() -> int:
    """A tunnel port range of its own for each cloud site: homes' forwards all bind on this
    machine's 127.0.0.1, so two sites running at once (the two suites) must not share ports."""
    # Below the ephemeral range (32768+), where free_port() and every client socket live.
    return 10000 + (_count("port-base") % 20) * 1000


def tcp_ports() -> tuple[int, int]:
    """A public tcp port range of its own for each edge (8 ports), above every port_base()
    range and below the ephemeral one."""
    first = 30000 + (_count("tcp-ports") % 256) * 8
    return first, first + 7


def _count(name: str) -> int:
    """The next number of a counter shared by every test process on this machine."""
    TEST_ROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
    with open(TEST_ROOT / f"{name}.counter", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        count = int(fh.read().strip() or 0)
        fh.seek(0)
        fh.truncate()
        fh.write(str(count + 1))
    return count


def remove_system_users(prefix: str) -> None:
    """Safety net: the system users a cloud site of ours created (by their unique prefix),
    after ending their sessions, which outlive the site's sshd by design."""
    low, high = HOME_UID_RANGE
    for entry in pwd.getpwall():
        if entry.pw_name.startswith(prefix) and low <= entry.pw_uid <= high:
            stop_user_processes(entry.pw_uid)
            subprocess.run(["userdel", entry.pw_name], capture_output=True, check=False)
    # The site's own group of homes goes with them.
    subprocess.run(["groupdel", homes_group(prefix)], capture_output=True, check=False)


# An ACME server nothing listens on: a console's domains (or a cloud's public host) reach no CA,
# and fail fast.
NO_CA = {"CLOUDATHOME_ACME_DIRECTORY": "https://127.0.0.1:1/directory"}


@contextlib.contextmanager
def cloud_site(
    ssh_mode: str = "system-users", extra_env: dict[str, str] | None = None
) -> Iterator[CloudSite]:
    prefix = f"t{secrets.token_hex(2)}"
    with state_root() as root, scratch_database("cah_cloud") as db_url:
        settings = {
            "DATABASE_URL": db_url,
            "CLOUDATHOME_SSH_MODE": ssh_mode,
            "CLOUDATHOME_SSH_USER_PREFIX": prefix,
            "CLOUDATHOME_PORT_BASE": str(port_base()),
            "CLOUDATHOME_TCP_PORTS": "{}-{}".format(*tcp_ports()),
            # Every home owns <its user>.homes.test and the names below it.
            "CLOUDATHOME_BASE_DOMAIN": "homes.test",
            # A public host that is a DNS name gets its certificate from this CA: none, unless
            # the module runs one (never the internet's).
            **NO_CA,
            **(extra_env or {}),
        }
        try:
            with start_cloud(root, settings) as site:
                yield site
        finally:
            remove_system_users(prefix)


@contextlib.contextmanager
def home_site(
    root: Path,
    config: Path,
    db_url: str,
    admin_password: str,
    extra_env: dict[str, str] | None = None,
    *,
    user: Account,
) -> Iterator[HomeSite]:
    """The console as an ordinary user (who owns `root`: register_home as that user made it),
    with the given database (so a test can restart it) and a fast supervisor."""
    settings = {
        "DATABASE_URL": db_url,
        "CLOUDATHOME_TUNNEL_SUPERVISE_SECONDS": "2",
        **(extra_env or {}),
    }
    with start_home(root, config, admin_password, settings, account=user) as site:
        yield site


@contextlib.contextmanager
def registered_console(
    cloud: CloudSite, root: Path, name: str, user: Account, extra_env: dict[str, str] | None = None
) -> Iterator[HomeSite]:
    """A cloud account `name` whose home `user` registers in `root/name` (the README's home
    steps), and that home's console run by `user` with a database of its own (no CA unless
    `extra_env` names one)."""
    password = f"{name.capitalize()}-pass-42"
    cloud.create_user(name, password)
    config, done = register_home(cloud, root / name, name, password, user)
    if done.returncode != 0:
        raise RuntimeError(f"register {name} failed: {done.stderr.strip()}")
    with (
        scratch_database("cah_home") as db,
        home_site(
            root / name,
            config,
            db,
            f"{password}-console",
            {**NO_CA, **(extra_env or {})},
            user=user,
        ) as site,
    ):
        yield site
