"""`make compose-test`: compose/cloud.yaml and compose/home.yaml run by a real engine (Debian's
podman, driven by Debian's docker-compose through its Docker API) through the whole
walkthrough, reached only through their published ports and the documented commands.

The tests run in file order and share the two running sites, as the walkthrough's steps
do. Every container, network, volume and image made is removed at the end, whatever
happened (fixture teardown), and the last test checks that the documented `down` leaves
nothing. Not part of `make test`: it builds images for several minutes."""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.cloud.test_compose import image_account
from tests.compose.engine import Engine, engine
from tests.compose.images import BASE, POSTGRES, PROJECT, build_images
from tests.support.sites import CloudSite, HomeSite, state_root
from workers.local import demo
from workers.local.pebble import PebbleInfo, pebble_server
from workers.local.procs import free_port, port_open, wait_for

pytestmark = pytest.mark.timeout(1500)

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
COMPOSE = ROOT / "compose"
CACHE = Path(os.environ.get("CLOUDATHOME_COMPOSE_CACHE", ROOT / ".cache" / "compose"))
# home.yaml's certificate directory: a bind mount with the same path on the host.
CERTS = Path("/var/lib/cloudathome/home/certs")
# home.yaml's console and Flower listen on the host's loopback at the local run's defaults.
HOME_PORTS = {"web": 8001, "flower": 5556}
ACME_CA_IN_WORKER = "/etc/cloudathome-acme-ca.pem"  # home.override.yaml
USER, PASSWORD, EMAIL = demo.USER, demo.PASSWORD, demo.EMAIL
# Under the home's label on the cloud's base domain: owned with no DNS proof, so the worker's
# network needs no resolver of ours (the demo proves a custom domain instead).
BASE_DOMAIN = "homes.demo.test"
NAME = f"shop.{USER}.{BASE_DOMAIN}"


@dataclass
class Project:
    """One compose project: its files, the directory holding its secrets, its settings."""

    engine: Engine
    name: str
    directory: Path
    files: list[Path]
    env: dict[str, str]

    def __call__(self, *args: str, **kwargs: Any) -> Any:
        return self.engine.compose(self.name, self.directory, self.files, *args,
                                   env={**self.env, **kwargs.pop("env", {})}, **kwargs)  # fmt: skip

    def services(self) -> dict[str, dict[str, Any]]:
        return dict(yaml.safe_load(self.files[0].read_text())["services"])

    def containers(self) -> dict[str, dict[str, Any]]:
        """Service name -> `podman inspect` of its container (stopped ones included)."""
        ids = self("ps", "-q").stdout.split()
        return {
            info["Config"]["Labels"]["com.docker.compose.service"]: info
            for info in self.engine.inspect(*ids)
        }

    def down(self) -> None:
        """Keep the containers' logs beside the engine's, then take everything down."""
        logs = self("logs", "--no-color", "--timestamps", check=False)
        (self.engine.log.parent / f"{self.name}.log").write_text(logs.stdout + logs.stderr)
        self("down", "--volumes", "--remove-orphans", "--timeout", "10", check=False)


@dataclass
class Walk:
    """What the steps hand on to the next ones."""

    cloud: CloudSite | None = None
    home: HomeSite | None = None
    domain: dict[str, Any] = field(default_factory=dict)
    entry: dict[str, Any] = field(default_factory=dict)
    routes: list[dict[str, Any]] = field(default_factory=list)


def write_secret(path: Path, value: str) -> None:
    """As compose/README.md says: owned by the image's account, mode 0400."""
    _, uid = image_account()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
    with os.fdopen(fd, "w") as out:
        out.write(value)
    os.chown(path, uid, uid)


def free_block(count: int) -> int:
    """A tunnel port range free on 127.0.0.1, above the other suites' (10000-29999) and below
    the ephemeral range."""
    for base in random.sample(range(30000, 32000 - count, 10), 50):
        if not any(port_open(port) for port in range(base, base + count)):
            return base
    raise RuntimeError("no free tunnel port range in 30000-31999")


def container_limits(eng: Engine) -> dict[str, str]:
    """The hard limits a container starts with here, which none may raise (see
    cloud.override.yaml)."""
    code = "import resource as r; print(*(r.getrlimit(n)[1] for n in (r.RLIMIT_NOFILE, r.RLIMIT_NPROC)))"
    probe = eng.podman("run", "--rm", BASE, "python3", "-c", code)
    nofile, nproc = probe.stdout.split()
    return {"CLOUDATHOME_TEST_NOFILE": nofile, "CLOUDATHOME_TEST_NPROC": nproc}


def one_process_each(project: Project, states: dict[str, dict[str, Any]]) -> None:
    """Each running container runs the compose file's argv as its one program: under the
    init Compose adds (`init: true`), as its only child; or as PID 1. Health-check runs are
    exec'd beside it, not under it."""
    for name, svc in project.services().items():
        info = states.get(name)
        if info is None or not info["State"]["Running"]:
            continue
        argv = [*(svc.get("entrypoint") or []), *svc["command"]]
        started = [info["Path"], *info["Args"]]
        assert started[-len(argv) :] == argv, f"{name} runs {started}, not {argv}"
        if info["HostConfig"].get("Init"):
            assert started[1:] == ["--", *argv], f"{name}: {started}"
            top = project.engine.podman("top", info["Id"], "pid", "ppid").stdout.split("\n")[1:]
            children = [row.split()[0] for row in top if row.split()[1:] == ["1"]]
            assert len(children) == 1, f"{name}: its init has children {children}"


def healthy(project: Project, one_shots: set[str]) -> dict[str, dict[str, Any]]:
    """Wait until the one-shots exited 0 and every other service is healthy (`up --detach`
    returns once the last container started); at the deadline, say which one is not."""
    expected = set(project.services()) - {"cli"}

    def settled() -> dict[str, dict[str, Any]] | None:
        states = project.containers()
        assert set(states) == expected, sorted(states)
        for name, info in states.items():
            state = info["State"]
            if name in one_shots:
                assert not state["Running"] and state["ExitCode"] == 0, f"{name}: {state}"
                continue
            assert state["Running"], f"{name} is not running: {state}"
            status = state["Health"]["Status"]
            assert status != "unhealthy", f"{name}: {state['Health']['Log'][-1:]}"
            if status != "healthy":
                return None
        return states

    return wait_for(settled, timeout=180, interval=1, what=f"{project.name} to be healthy")


# --- the engine, the images, the sites ---------------------------------------------------


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    with state_root() as path:
        yield path


@pytest.fixture(scope="module")
def eng(root: Path) -> Iterator[Engine]:
    with engine(root / "engine", CACHE / "last-run") as running_engine:
        took = build_images(running_engine, CACHE)
        with open(running_engine.log, "a") as out:
            out.write(
                "images built: " + ", ".join(f"{k} {v:.0f} s" for k, v in took.items()) + "\n"
            )
        yield running_engine


@pytest.fixture(scope="module")
def walk() -> Walk:
    return Walk()


@pytest.fixture(scope="module")
def cloud_project(eng: Engine, root: Path) -> Iterator[Project]:
    directory = root / "cloud"
    (directory / "secrets").mkdir(parents=True, mode=0o700)
    password = secrets.token_hex(24)
    write_secret(directory / "secrets" / "postgres_password", password)
    write_secret(directory / "secrets" / "database_url",
                 f"postgres://cloudathome:{password}@postgres:5432/cloudathome")  # fmt: skip
    write_secret(directory / "secrets" / "secret_key", secrets.token_urlsafe(50))
    write_secret(directory / "secrets" / "admin_password", secrets.token_urlsafe(16))
    ports = {name: free_port() for name in ("web", "https", "http", "ssh")}
    env = {
        "CLOUDATHOME_PUBLIC_HOST": "127.0.0.1",
        "CLOUDATHOME_BASE_DOMAIN": BASE_DOMAIN,
        "CLOUDATHOME_WEB_PORT": str(ports["web"]),
        "CLOUDATHOME_HTTPS_PORT": str(ports["https"]),
        "CLOUDATHOME_HTTP_PORT": str(ports["http"]),
        "CLOUDATHOME_EDGE_BIND": "127.0.0.1",
        "CLOUDATHOME_SSH_PORT": str(ports["ssh"]),
        "CLOUDATHOME_SSH_BIND": "127.0.0.1",
        "CLOUDATHOME_PORT_BASE": str(free_block(10)),
        **container_limits(eng),
    }
    project = Project(eng, f"cah-cloud-{secrets.token_hex(3)}", directory,
                      [COMPOSE / "cloud.yaml", HERE / "cloud.override.yaml"], env)  # fmt: skip
    try:
        yield project
    finally:
        project.down()


@pytest.fixture(scope="module")
def certs_dir() -> Iterator[Path]:
    """home.yaml's certificate directory on the host, made as compose/README.md says; what
    this test made of it is removed afterwards."""
    made = next((p for p in [*reversed(CERTS.parents), CERTS] if not p.exists()), None)
    _, uid = image_account()
    CERTS.mkdir(parents=True, exist_ok=True, mode=0o755)
    os.chown(CERTS, uid, uid)
    CERTS.chmod(0o750)
    try:
        yield CERTS
    finally:
        shutil.rmtree(CERTS / NAME, ignore_errors=True)
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)


@pytest.fixture(scope="module")
def pebble(root: Path, walk: Walk) -> Iterator[PebbleInfo]:
    assert walk.cloud, "the cloud is not up"
    pebble_dir = root / "pebble"
    with pebble_server(pebble_dir, walk.cloud.http_port, walk.cloud.https_port) as info:
        pebble_dir.chmod(0o755)  # the worker (UID 10001) reads the CA through a bind mount
        yield info


@pytest.fixture(scope="module")
def home_project(eng: Engine, root: Path, certs_dir: Path) -> Iterator[Project]:
    busy = [port for port in HOME_PORTS.values() if port_open(port)]
    assert not busy, f"home.yaml's console and Flower need 127.0.0.1:{busy}, which are taken"
    directory = root / "home"
    (directory / "secrets").mkdir(parents=True, mode=0o700)
    write_secret(directory / "secrets" / "home_admin_password", secrets.token_urlsafe(16))
    project = Project(eng, f"cah-home-{secrets.token_hex(3)}", directory,
                      [COMPOSE / "home.yaml", HERE / "home.override.yaml"], {})  # fmt: skip
    try:
        yield project
    finally:
        project.down()


@pytest.fixture(scope="module")
def sample_service(walk: Walk) -> Iterator[int]:
    """The user's own HTTPS service on the host, serving the certificate the console got."""
    assert walk.domain, "no certificate was issued"
    with demo.sample_service(Path(walk.domain["cert_path"])) as port:
        yield port


# --- the walkthrough -------------------------------------------------------------------------


def test_cloud_comes_up_with_init_done_and_every_service_healthy(
    cloud_project: Project, walk: Walk
) -> None:
    cloud_project("up", "--detach", "--no-build")
    states = healthy(cloud_project, one_shots={"init"})
    one_process_each(cloud_project, states)
    env = cloud_project.env
    admin_password = (cloud_project.directory / "secrets" / "admin_password").read_text()
    walk.cloud = CloudSite(
        state=Path("/var/lib/cloudathome/cloud"), env=env,
        web_port=int(env["CLOUDATHOME_WEB_PORT"]), https_port=int(env["CLOUDATHOME_HTTPS_PORT"]),
        http_port=int(env["CLOUDATHOME_HTTP_PORT"]), ssh_port=int(env["CLOUDATHOME_SSH_PORT"]),
        flower_port=5555, admin_password=admin_password, log=cloud_project.engine.log,
    )  # fmt: skip
    assert requests.get(f"{walk.cloud.url}/healthz", timeout=10).ok
    banner = socket.create_connection(("127.0.0.1", walk.cloud.ssh_port), timeout=10).recv(64)
    assert banner.startswith(b"SSH-2.0-")


def test_signup_waits_for_approval_given_with_the_documented_command(
    cloud_project: Project, walk: Walk
) -> None:
    assert walk.cloud
    demo.signup(walk.cloud)
    refused = requests.post(f"{walk.cloud.url}/api/auth/token", timeout=10,
                            json={"username": USER, "password": PASSWORD})  # fmt: skip
    assert refused.status_code in (401, 403), refused.text
    done = cloud_project("exec", "-T", "web", "cloudathome", "cloud", "manage", "approve", USER)
    assert f"approved: {USER}" in done.stdout
    assert walk.cloud.token(USER, PASSWORD)


def test_home_registers_with_keygen_and_register(home_project: Project, walk: Walk) -> None:
    assert walk.cloud
    home_project("run", "--rm", "cli", "keygen")
    done = home_project(
        "run", "--rm", "-e", "CLOUDATHOME_PASSWORD", "cli", "register",
        "--cloudserver-url", walk.cloud.url, "--username", USER,
        env={"CLOUDATHOME_PASSWORD": PASSWORD},
    )  # fmt: skip
    assert "Done. Configuration written to: /etc/cloudathome/cloudlink.yaml" in done.stdout
    assert f"ssh_host     : 127.0.0.1:{walk.cloud.ssh_port}" in done.stdout
    api = walk.cloud.api(walk.cloud.token(USER, PASSWORD))
    homes = api.get(f"{walk.cloud.url}/api/homes", timeout=10).json()
    assert [h["status"] for h in homes] == ["ready"]


def test_home_console_comes_up_with_every_service_healthy(
    home_project: Project, pebble: PebbleInfo, walk: Walk
) -> None:
    home_project.env.update(
        CLOUDATHOME_ACME_DIRECTORY=pebble.directory_url,
        CLOUDATHOME_ACME_CA_BUNDLE=ACME_CA_IN_WORKER,
        CLOUDATHOME_TEST_ACME_CA=pebble.ca_bundle,
    )
    home_project("up", "--detach", "--no-build")
    states = healthy(home_project, one_shots={"init"})
    one_process_each(home_project, states)
    admin_password = (home_project.directory / "secrets" / "home_admin_password").read_text()
    walk.home = HomeSite(
        state=Path("/var/lib/cloudathome/home"), env=home_project.env,
        port=HOME_PORTS["web"], flower_port=HOME_PORTS["flower"],
        admin_password=admin_password, log=home_project.engine.log,
    )  # fmt: skip
    api, url = walk.home.api(), f"{walk.home.url}/api/status"
    status = wait_for(
        lambda: (s := api.get(url, timeout=30).json())["state"] != "unknown" and s,
        timeout=60,
        what="the worker's first check of the cloud link",
    )
    assert status["state"] == "ok" and all(c["ok"] for c in status["checks"]), status


def test_a_domain_gets_its_certificate_from_pebble_through_the_edge(
    walk: Walk, certs_dir: Path
) -> None:
    assert walk.home
    walk.domain = demo.issue_certificate(walk.home, walk.home.api(), certs_dir, name=NAME)
    assert walk.domain["cert_status"] == "valid", walk.domain
    assert Path(walk.domain["cert_path"]) == certs_dir / NAME
    assert (certs_dir / NAME / "fullchain.pem").read_text().count("BEGIN CERT") >= 2


def test_a_proxy_entry_opens_its_tunnel(walk: Walk, sample_service: int) -> None:
    assert walk.home and walk.cloud
    walk.entry = demo.open_tunnel(
        walk.home, walk.home.api(), walk.domain["id"], sample_service, name=NAME
    )
    assert walk.entry["tunnel"]["state"] == "open"


def test_the_page_comes_through_the_edge_with_a_chain_to_pebbles_root(
    walk: Walk, pebble: PebbleInfo, root: Path
) -> None:
    assert walk.cloud
    result = demo.verify(walk.cloud, pebble, root / "roots.pem", name=NAME)
    assert "Pebble Intermediate CA" in result, result
    admin = walk.cloud.api(walk.cloud.token("admin", walk.cloud.admin_password))
    walk.routes = admin.get(f"{walk.cloud.url}/api/admin/proxy-mappings/haproxy", timeout=10).json()
    assert {"host": NAME, "scheme": "https"}.items() <= walk.routes[0].items()


def test_a_restarted_edge_container_comes_back_with_every_route(
    cloud_project: Project, walk: Walk, pebble: PebbleInfo, root: Path
) -> None:
    assert walk.cloud
    before = cloud_project.containers()["haproxy"]["State"]["StartedAt"]
    cloud_project("restart", "haproxy")
    after = cloud_project.containers()["haproxy"]
    assert after["State"]["StartedAt"] != before
    wait_for(lambda: cloud_project.containers()["haproxy"]["State"]["Health"]["Status"] == "healthy",
             timeout=60, interval=1, what="the edge container to be healthy again")  # fmt: skip
    admin = walk.cloud.api(walk.cloud.token("admin", walk.cloud.admin_password))
    live = admin.get(f"{walk.cloud.url}/api/admin/proxy-mappings/haproxy", timeout=10).json()
    assert live == walk.routes
    assert "Pebble Intermediate CA" in demo.verify(
        walk.cloud, pebble, root / "roots.pem", name=NAME
    )


def test_down_leaves_no_container_network_or_volume_and_the_images_go(
    eng: Engine, cloud_project: Project, home_project: Project, walk: Walk
) -> None:
    assert walk.home
    with contextlib.suppress(requests.RequestException, TimeoutError):
        demo.close_tunnel(walk.home, walk.home.api(), walk.entry["id"])
    for project in (home_project, cloud_project):
        project("down", "--volumes", "--timeout", "10")
    assert eng.containers() == []
    assert eng.volumes() == []
    assert [n for n in eng.networks() if n != "podman"] == []
    eng.podman("rmi", PROJECT, POSTGRES, BASE)
    assert eng.images() == []
