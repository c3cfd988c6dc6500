"""Both sites as real processes on one machine, for the demo, the benchmarks and the tests:
`cloudathome cloud up` / `home up` on free ports with their own state dirs, the setup
commands run as a user would, and every process stopped by PID when the block exits."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from workers.local.pebble import MockDns
from workers.local.procs import Account, free_port, running, wait_for


@contextlib.contextmanager
def _site_up(
    site: str,
    log: Path,
    env: dict[str, str],
    banner: str,
    account: Account | None = None,
    args: Sequence[str] = (),
) -> Iterator[subprocess.Popen]:
    """`cloudathome <site> up`, ready once it printed its banner; stopped by PID."""

    def ready() -> bool:
        return banner in log.read_text(errors="replace") if log.exists() else False

    with running(
        cli(site, "up", *args, account=account),
        log=log,
        env=env,
        ready=ready,
        timeout=90,
        account=account,
    ) as proc:
        yield proc


def cli(*args: str, account: Account | None = None) -> list[str]:
    """The argv of `cloudathome <args>` with this interpreter (or one `account` may run)."""
    return [account.python if account else sys.executable, "-m", "workers.common.cli", *args]


def clean_environ() -> dict[str, str]:
    """This process's environment without any setting of ours: each site gets only its own."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CLOUDATHOME_", "CLOUDLINK_", "DJANGO_", "DATABASE_URL", "REDIS_URL"))
    }


@dataclass
class CloudSite:
    state: Path
    env: dict[str, str]
    web_port: int
    https_port: int
    http_port: int
    ssh_port: int
    flower_port: int
    admin_password: str
    log: Path
    url: str = field(init=False)
    proc: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        self.url = f"http://127.0.0.1:{self.web_port}"

    def manage(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return _manage(self.env, "cloud", args, input)

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
        """`cloud manage create_account`, the password on stdin."""
        flags = [*(["--staff"] if staff else []), *([] if active else ["--inactive"])]
        done = self.manage("create_account", username, "--password-stdin", *flags, input=password)
        if done.returncode != 0:
            raise RuntimeError(f"creating user {username} failed: {done.stderr.strip()}")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@contextlib.contextmanager
def start_cloud(root: Path, settings: dict[str, str] | None = None) -> Iterator[CloudSite]:
    """`cloudathome cloud up` with its state in `root/state`, every listener on a free
    loopback port; `settings` adds or overrides environment variables (DATABASE_URL, ...)."""
    state = root / "state"
    admin_password = secrets.token_urlsafe(12)
    ports = {name: free_port() for name in ("web", "https", "http", "ssh", "flower")}
    env = {
        **clean_environ(),
        "CLOUDATHOME_STATE_DIR": str(state),
        "CLOUDATHOME_WEB_PORT": str(ports["web"]),
        "CLOUDATHOME_WEB_BIND": "127.0.0.1",
        "CLOUDATHOME_HTTPS_PORT": str(ports["https"]),
        "CLOUDATHOME_HTTP_PORT": str(ports["http"]),
        "CLOUDATHOME_EDGE_BIND": "127.0.0.1",
        "CLOUDATHOME_SSH_PORT": str(ports["ssh"]),
        "CLOUDATHOME_SSH_BIND": "127.0.0.1",
        "CLOUDATHOME_FLOWER_PORT": str(ports["flower"]),
        "CLOUDATHOME_PUBLIC_HOST": "127.0.0.1",
        "CLOUDATHOME_ADMIN_PASSWORD": admin_password,
        **(settings or {}),
    }
    log = root / "cloud-up.log"
    site = CloudSite(
        state=state,
        env=env,
        # `settings` may choose a port (a local CA validates on a fixed one, chosen first).
        web_port=int(env["CLOUDATHOME_WEB_PORT"]),
        https_port=int(env["CLOUDATHOME_HTTPS_PORT"]),
        http_port=int(env["CLOUDATHOME_HTTP_PORT"]),
        ssh_port=int(env["CLOUDATHOME_SSH_PORT"]),
        flower_port=int(env["CLOUDATHOME_FLOWER_PORT"]),
        admin_password=admin_password,
        log=log,
    )

    with _site_up("cloud", log, env, banner="cloud site up") as proc:
        wait_for(
            lambda: requests.get(f"{site.url}/healthz", timeout=2).ok, timeout=30, what="cloud web"
        )
        site.proc = proc
        yield site


def prove_domain(
    cloud: CloudSite, api: requests.Session, slug: str, dns: MockDns, name: str
) -> dict[str, Any]:
    """A custom domain proven as its user would: add it to the home, create the TXT record
    the cloud shows (in `dns`, the cloud's resolver), ask for a check, wait until verified."""
    home = f"{cloud.url}/api/homes/{slug}"
    r = api.post(f"{home}/domains", json={"name": name}, timeout=10)
    r.raise_for_status()
    record = r.json()["verification"]
    dns.add_txt(record["name"], record["value"])
    api.post(f"{home}/domains/{name}/verify", timeout=10).raise_for_status()

    def verified() -> dict[str, Any] | None:
        domain = dict(api.get(f"{home}/domains/{name}", timeout=10).json())
        return domain if domain["status"] == "verified" else None

    return wait_for(verified, timeout=30, what=f"{name} verified")


@dataclass
class HomeSite:
    state: Path
    env: dict[str, str]
    port: int
    flower_port: int
    admin_password: str
    log: Path
    account: Account | None = None
    url: str = field(init=False)
    cert_root: Path = field(init=False)
    proc: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        self.url = f"http://127.0.0.1:{self.port}"
        # The console's own default when the site's environment does not set one (compose).
        self.cert_root = Path(self.env.get("CLOUDATHOME_CERT_ROOT") or self.state / "certs")

    def manage(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A Django command of the site, as the account the site runs as."""
        return _manage(self.env, "home", args, account=self.account)

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


def _run(
    argv: list[str], env: dict[str, str], account: Account | None, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command of ours bounded in time, its output captured; as `account` (with its
    own HOME) when given."""
    return subprocess.run(
        argv,
        env={**env, "HOME": str(account.home)} if account else env,
        capture_output=True,
        text=True,
        input=input,
        timeout=120,
        check=False,
        **(account.popen_args() if account else {}),
    )


def register_home(
    cloud: CloudSite, root: Path, username: str, password: str, account: Account | None = None
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """keygen + register as a user would run them (as `account` when given, in `root`, which
    becomes that account's); returns (cloudlink.yaml path, register run)."""
    key = root / "keys" / "cloudathome_ed25519"
    config = root / "config" / "cloudlink.yaml"
    if account is not None:
        root.mkdir(mode=0o755, parents=True, exist_ok=True)
        os.chown(root, account.uid, account.gid)
    env = {**clean_environ(), "CLOUDLINK_CONFIG": str(config), "CLOUDATHOME_PASSWORD": password}
    keygen = _run(cli("keygen", "--output", str(key), account=account), env, account)
    if keygen.returncode != 0:
        raise RuntimeError(f"keygen failed: {keygen.stderr.strip()}")
    register = cli(
        "register",
        *("--cloudserver-url", cloud.url, "--username", username),
        *("--public-key", f"{key}.pub", "--private-key", str(key)),
        account=account,
    )
    done = _run(register, env, account)
    return config, done


@contextlib.contextmanager
def start_home(
    root: Path,
    config: Path,
    admin_password: str,
    settings: dict[str, str] | None = None,
    account: Account | None = None,
) -> Iterator[HomeSite]:
    """`cloudathome home up` with its state in `root/home-state`, as `account` (which owns
    `root`); the tunnels it opens outlive it on purpose (they belong to the home, not to one
    run of the console). Without an account it runs as this process's user, and as root
    only because it is asked to (`--allow-root`: the demo and the benchmarks)."""
    state = root / "home-state"
    ports = {name: free_port() for name in ("web", "flower")}
    env = home_environ(
        state,
        config,
        {
            "CLOUDATHOME_HOME_PORT": str(ports["web"]),
            "CLOUDATHOME_FLOWER_PORT": str(ports["flower"]),
            "CLOUDATHOME_ADMIN_PASSWORD": admin_password,
            # Certificates beside the state, where the sample services read them.
            "CLOUDATHOME_CERT_ROOT": str(root / "certs"),
            **({"HOME": str(account.home)} if account else {}),
            **(settings or {}),
        },
    )
    log = root / f"home-up-{secrets.token_hex(2)}.log"
    site = HomeSite(state, env, ports["web"], ports["flower"], admin_password, log, account)
    args = ["--allow-root"] if account is None and os.geteuid() == 0 else []
    with _site_up("home", log, env, "home console up", account, args) as proc:
        # The first request imports the URLconf and the API: let it happen here, not in a test.
        wait_for(
            lambda: requests.get(f"{site.url}/healthz", timeout=5).ok,
            timeout=30,
            what="console web",
        )
        site.proc = proc
        yield site


def home_environ(
    state: Path, config: Path, settings: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment of a home's processes: its state dir and cloudlink.yaml, then `settings`."""
    return {
        **clean_environ(),
        "CLOUDATHOME_STATE_DIR": str(state),
        "CLOUDLINK_CONFIG": str(config),
        **(settings or {}),
    }


@dataclass(frozen=True)
class TunnelRun:
    pid: int  # the home's ssh master connection, carrying every forward
    ready_s: float  # master spawned -> the cloud accepted every forward
    proc: subprocess.Popen  # `home manage tunnel_run` itself


@contextlib.contextmanager
def run_tunnel(
    state: Path, config: Path, forwards: Sequence[tuple[int, int]], log: Path
) -> Iterator[TunnelRun]:
    """`cloudathome home manage tunnel_run`: the home's forwards, (remote port, local port)
    each, on one master connection of their own (the console's command line, spawn and
    readiness) without a console, until the block exits (SIGTERM; it stops its ssh)."""
    argv = cli(
        "home",
        "manage",
        "tunnel_run",
        "--json",
        *(arg for remote, local in forwards for arg in ("--forward", f"{remote}:{local}")),
    )
    offset = log.stat().st_size if log.exists() else 0

    def ready() -> dict[str, Any] | None:
        with open(log, "rb") as out:
            out.seek(offset)
            lines = out.read().decode(errors="replace").splitlines()
        return next((json.loads(ln) for ln in lines if ln.startswith('{"pid"')), None)

    env = home_environ(state, config)
    with running(argv, log=log, env=env, ready=ready, timeout=60) as proc:
        line = ready() or {}
        yield TunnelRun(int(line["pid"]), float(line["ready_s"]), proc)


def _manage(
    env: dict[str, str],
    site: str,
    args: tuple[str, ...],
    input: str | None = None,
    account: Account | None = None,
) -> subprocess.CompletedProcess[str]:
    """`cloudathome <site> manage <args>`, bounded in time, its output captured."""
    return _run(cli(site, "manage", *args, account=account), env, account, input)


def run_state(command: str, given: Path | None, base: Path) -> Path | None:
    """The state folder of a demo or benchmark run: `given`, else a new one under `base`; None
    (with the reason printed) unless we are root, as the cloud gives each home a system user.
    Never under /tmp: sshd refuses key files below a world-writable folder."""
    if os.geteuid() != 0:
        print(
            f"{command}: run it as root (the cloud gives each home a system user)", file=sys.stderr
        )
        return None
    if given:
        root = given.resolve()
        root.mkdir(mode=0o755, parents=True, exist_ok=True)
        return root
    base.mkdir(mode=0o755, parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="run-", dir=base))
    root.chmod(0o755)
    return root
