"""The container deployment in compose/ stays consistent with the local run: one program per
container with the argv `up` runs, health checks that exist and probe the paths the code uses,
start order, volumes, the SSH identity mode and documented variables. No Docker is needed:
the files are parsed, and `prepare` plus the health checks run against real processes."""

from __future__ import annotations

import getpass
import importlib.util
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from cloud.edge import haproxy, sshd
from tests.support.sites import state_root
from workers.common.supervise import (
    Service,
    celery_services,
    console_service,
    redis_service,
    web_service,
)
from workers.local.procs import free_port, running

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose"
SITES = ("cloud", "home")
IMAGE = "cloudathome:latest"
SHELLS = {"sh", "bash", "dash", "ash", "zsh"}
SHELL_OPERATORS = {"&&", "||", ";", "|", "&"}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
OUR_VARIABLE = re.compile(
    r"(CLOUDATHOME_[A-Z0-9_]+|DATABASE_URL|REDIS_URL|CLOUDLINK_CONFIG)(_FILE)?"
)
# The listeners `up` uses by default (README's configuration table): what the containers run.
WEB = {"cloud": "cloud.wsgi", "home": "home.wsgi"}
FLOWER_PORT = {"cloud": 5555, "home": 5556}


def compose(site: str) -> dict[str, Any]:
    data = yaml.safe_load((COMPOSE / f"{site}.yaml").read_text())
    assert isinstance(data, dict)
    return data


def services(site: str) -> dict[str, dict[str, Any]]:
    return dict(compose(site)["services"])


def ours(site: str) -> dict[str, dict[str, Any]]:
    """Services running the project's image and part of the site (not the `tools` profile)."""
    return {
        name: svc
        for name, svc in services(site).items()
        if svc.get("image") == IMAGE and not svc.get("profiles")
    }


def state_dir(site: str) -> Path:
    return Path(services(site)["init"]["environment"]["CLOUDATHOME_STATE_DIR"])


def one_shot(svc: dict[str, Any]) -> bool:
    return svc.get("restart") == "no"


def depends_on(svc: dict[str, Any]) -> dict[str, str]:
    deps = svc.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def volume_mounts(svc: dict[str, Any]) -> dict[str, str]:
    """target -> named volume source ("" for binds)."""
    mounts = {}
    for item in svc.get("volumes", []):
        if isinstance(item, str):
            source, target = item.split(":")[:2]
            named = not source.startswith(("/", ".", "~"))
            mounts[target] = source if named else ""
        else:
            mounts[item["target"]] = item["source"] if item.get("type") == "volume" else ""
    return mounts


def local_argv(argv: Sequence[str]) -> list[str]:
    """An argv of the local run as a container writes it: `python` is the image's interpreter,
    programs are found on PATH."""
    head = "python" if argv[0] == sys.executable else argv[0]
    if head.startswith("/usr/"):
        head = os.path.basename(head)
    return [head, *argv[1:]]


def dockerfile() -> str:
    return (COMPOSE / "Dockerfile").read_text().replace("\\\n", " ")


def image_account() -> tuple[str, int]:
    match = re.search(r"useradd\s+([^&\n]*)", dockerfile())
    assert match, "the Dockerfile creates no account"
    words = match.group(1).split()
    return words[-1], int(words[words.index("--uid") + 1])


def healthcheck_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("compose_healthcheck", COMPOSE / "healthcheck.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def readme_variables() -> set[str]:
    """Names in the first column of README's configuration table (`_X` continues CLOUDATHOME_,
    `X[_FILE]` documents X and X_FILE)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    names = set()
    for line in section.splitlines():
        if not line.startswith("|"):
            continue
        for name, file_suffix in re.findall(
            r"`([A-Z_][A-Z0-9_]*)(\[_FILE\])?`", line.split("|")[1]
        ):
            full = f"CLOUDATHOME{name}" if name.startswith("_") else name
            names.add(full)
            if file_suffix:
                names.add(f"{full}_FILE")
    return names


def env_example_variables() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", text, re.MULTILINE))


def compose_variables(site: str) -> set[str]:
    """Our variables set in any service's environment or interpolated anywhere in the file."""
    names = set(re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", (COMPOSE / f"{site}.yaml").read_text()))
    for svc in services(site).values():
        names.update(svc.get("environment") or {})
    return {name for name in names if OUR_VARIABLE.fullmatch(name)}


# --- shape of each service ----------------------------------------------------------------


@pytest.mark.parametrize("site", SITES)
def test_every_service_runs_one_program_without_a_shell(site: str) -> None:
    for name, svc in services(site).items():
        argv = [*(svc.get("entrypoint") or []), *(svc.get("command") or [])]
        assert isinstance(svc.get("command"), list), f"{name}: command must be an argv list"
        assert all(isinstance(word, str) for word in argv), f"{name}: {argv}"
        assert os.path.basename(argv[0]) not in SHELLS, f"{name} runs a shell: {argv}"
        assert not SHELL_OPERATORS & set(argv), f"{name} chains programs: {argv}"


@pytest.mark.parametrize("site", SITES)
def test_every_long_running_service_has_a_health_check(site: str) -> None:
    for name, svc in services(site).items():
        if one_shot(svc):
            continue
        test = (svc.get("healthcheck") or {}).get("test")
        assert isinstance(test, list), f"{name} has no health check"
        assert test[0] == "CMD" and len(test) > 1, f"{name}: exec-form check expected, got {test}"


@pytest.mark.parametrize("site", SITES)
def test_health_checks_name_checks_the_script_has(site: str) -> None:
    checks = healthcheck_module()
    assert "/usr/local/bin/cloudathome-healthcheck" in dockerfile()
    for name, svc in services(site).items():
        test = (svc.get("healthcheck") or {}).get("test") or []
        if test[1:2] == ["cloudathome-healthcheck"]:
            kind, args = test[2], test[3:]
            assert kind in checks.CHECKS, f"{name}: unknown check {kind}"
            assert len(args) == checks.ARITY[kind], f"{name}: {kind} takes {checks.ARITY[kind]}"


@pytest.mark.parametrize("site", SITES)
def test_health_check_arguments_hold_no_whitespace(site: str) -> None:
    """podman's Docker API (4.x) splits every argument of a health check at whitespace."""
    for name, svc in services(site).items():
        test = (svc.get("healthcheck") or {}).get("test") or []
        assert not [word for word in test if len(word.split()) != 1], f"{name}: {test}"


def test_cloud_health_checks_probe_the_paths_the_edge_uses() -> None:
    svcs, state = services("cloud"), state_dir("cloud")
    socket_path = haproxy.EdgeConfig(state_dir=state).socket_path
    assert svcs["haproxy"]["healthcheck"]["test"][3] == str(socket_path)
    assert svcs["beat"]["healthcheck"]["test"][3] == str(state / "beat-schedule")
    assert svcs["flower"]["healthcheck"]["test"][3].endswith(f":{FLOWER_PORT['cloud']}/healthcheck")


# --- the same programs as the local run ------------------------------------------------------


def web(site: str, state: Path) -> Service:
    """The web server of `up`: gunicorn on the cloud's unix socket behind HAProxy, waitress on
    the console's port."""
    if site == "cloud":
        return web_service(WEB[site], haproxy.EdgeConfig(state).web_socket, env={})
    return console_service(WEB[site], "127.0.0.1", 8001, env={})


def expected_argv(site: str) -> dict[str, list[str]]:
    state = state_dir(site)
    local: list[Service] = [
        web(site, state),
        *celery_services(site, state, "127.0.0.1", FLOWER_PORT[site], env={}),
    ]
    expected = {service.name: local_argv(service.argv) for service in local}
    if site == "cloud":
        account, _ = image_account()
        ssh = sshd.SshdConfig(state_dir=state, mode="single-account", account=account)
        expected["haproxy"] = local_argv(haproxy.config_command(haproxy.EdgeConfig(state)))
        expected["sshd"] = local_argv(sshd.command(ssh))
    else:
        expected["redis"] = local_argv(redis_service(state).argv)
    return expected


@pytest.mark.parametrize("site", SITES)
def test_containers_run_the_argv_of_the_local_run(site: str) -> None:
    svcs = services(site)
    for name, argv in expected_argv(site).items():
        assert svcs[name]["command"] == argv, name


@pytest.mark.parametrize("site", SITES)
def test_init_runs_prepare_and_everything_of_the_site_waits_for_it(site: str) -> None:
    init = services(site)["init"]
    assert init["command"] == ["cloudathome", site, "prepare"]
    assert one_shot(init)
    for name, svc in ours(site).items():
        if name in ("init", "redis"):
            continue
        assert depends_on(svc).get("init") == "service_completed_successfully", name


# --- wiring ----------------------------------------------------------------------------------


@pytest.mark.parametrize("site", SITES)
def test_depends_on_names_existing_services_in_an_order_that_can_start(site: str) -> None:
    svcs = services(site)
    for name, svc in svcs.items():
        for dep, condition in depends_on(svc).items():
            assert dep in svcs, f"{name} depends on unknown {dep}"
            assert condition in CONDITIONS, f"{name}: {condition}"
            if condition == "service_healthy":
                assert "healthcheck" in svcs[dep], f"{name} waits for {dep} to be healthy"
            if condition == "service_completed_successfully":
                assert one_shot(svcs[dep]), f"{name} waits for long-running {dep} to exit"
        mode = svc.get("network_mode", "")
        if mode.startswith("service:"):
            assert mode.split(":", 1)[1] in svcs, f"{name}: {mode}"
    started: set[str] = set()
    while len(started) < len(svcs):
        ready = {n for n, s in svcs.items() if n not in started and set(depends_on(s)) <= started}
        assert ready, f"depends_on has a cycle among {sorted(set(svcs) - started)}"
        started |= ready


@pytest.mark.parametrize("site", SITES)
def test_volumes_networks_and_secrets_are_declared(site: str) -> None:
    data = compose(site)
    for name, svc in data["services"].items():
        for source in volume_mounts(svc).values():
            if source:
                assert source in (data.get("volumes") or {}), f"{name}: volume {source}"
        for network in svc.get("networks") or []:
            assert network in (data.get("networks") or {}), f"{name}: network {network}"
        for secret in svc.get("secrets") or []:
            assert secret in (data.get("secrets") or {}), f"{name}: secret {secret}"
            file_vars = [
                v for v in (svc.get("environment") or {}).values() if v == f"/run/secrets/{secret}"
            ]
            assert file_vars, f"{name} mounts {secret} but reads no *_FILE"


@pytest.mark.parametrize("site", SITES)
def test_every_process_of_the_site_sees_the_one_state_volume(site: str) -> None:
    state = str(state_dir(site))
    for name, svc in ours(site).items():
        env = svc.get("environment") or {}
        reads_state = env.get("CLOUDATHOME_STATE_DIR") == state or any(
            word.startswith(state) for word in svc["command"]
        )
        assert reads_state, f"{name} does not use the state dir"
        assert volume_mounts(svc).get(state) == "state", f"{name} must mount the state volume"
        assert not env or env.get("CLOUDATHOME_STATE_DIR") == state, name


def test_the_image_installs_every_program_the_containers_run() -> None:
    packages = {"haproxy": "haproxy", "redis-server": "redis-server", "redis-cli": "redis-tools"}
    installed = re.search(r"apt-get install ([^&]*)", dockerfile())
    assert installed, "the Dockerfile installs no Debian package"
    wanted = {"openssh-server", "openssh-client"}  # our sshd (via its link) and the tunnels
    for site in SITES:
        for svc in ours(site).values():
            for argv in (svc["command"], (svc.get("healthcheck") or {}).get("test", [])[1:]):
                if argv and argv[0] in packages:
                    wanted.add(packages[argv[0]])
    assert wanted <= set(installed.group(1).split())
    assert {"haproxy", "redis-server", "redis-tools"} <= wanted


def test_haproxy_runs_under_the_open_file_limit_its_config_was_rendered_for() -> None:
    svcs = services("cloud")
    assert svcs["haproxy"]["ulimits"] == svcs["init"]["ulimits"]


def test_cloud_homes_log_in_as_the_account_that_owns_the_key_file_and_admin_socket() -> None:
    account, uid = image_account()
    env = services("cloud")["init"]["environment"]
    assert env["CLOUDATHOME_SSH_MODE"] == "single-account"
    assert env["CLOUDATHOME_SSH_ACCOUNT"] == account
    user = re.search(r"^USER\s+(\d+)", dockerfile(), re.MULTILINE)
    assert user and int(user.group(1)) == uid, "the image must run as the account"
    # Worker (writes the key file, talks to the 0600 socket) and HAProxy share the image's
    # USER; only sshd may differ, as root.
    overridden = {name: svc["user"] for name, svc in ours("cloud").items() if "user" in svc}
    assert overridden == {"sshd": "0:0"}


# --- documentation ---------------------------------------------------------------------------


@pytest.mark.parametrize("site", SITES)
def test_variables_used_by_compose_are_documented(site: str) -> None:
    readme, example = readme_variables(), env_example_variables()
    for name in compose_variables(site):
        base = name.removesuffix("_FILE")
        assert name in readme, f"{name} is missing from README's configuration table"
        assert name in example or base in example, f"{name} is missing from .env.example"


def test_every_variable_the_settings_read_is_documented() -> None:
    readme = readme_variables()
    read = set()
    for path in [
        *ROOT.glob("cloud/**/*.py"),
        *ROOT.glob("home/**/*.py"),
        *ROOT.glob("workers/**/*.py"),
    ]:
        read |= set(re.findall(r"\benv(?:int|bool)?\(\s*\"([A-Z][A-Z0-9_]*)\"", path.read_text()))
    assert {"CLOUDATHOME_STATE_DIR", "DATABASE_URL", "CLOUDATHOME_SSH_MODE"} <= read
    assert read - readme == set()


# --- prepare and the health checks against real processes ------------------------------------


def site_env(**extra: str) -> dict[str, str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CLOUDATHOME_", "DJANGO_", "DATABASE_URL", "REDIS_URL", "CLOUDLINK"))
    }
    return {**clean, **extra}


def cloudathome(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers.common.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def prepared_cloud() -> Iterator[tuple[Path, dict[str, str]]]:
    with state_root() as root:
        state = root / "state"
        env = site_env(
            CLOUDATHOME_STATE_DIR=str(state),
            CLOUDATHOME_EDGE_BIND="127.0.0.1",
            CLOUDATHOME_HTTPS_PORT=str(free_port()),
            CLOUDATHOME_HTTP_PORT=str(free_port()),
            CLOUDATHOME_SSH_BIND="127.0.0.1",
            CLOUDATHOME_SSH_PORT=str(free_port()),
            CLOUDATHOME_SSH_MODE="single-account",
            CLOUDATHOME_SSH_ACCOUNT=getpass.getuser(),
            CLOUDATHOME_ADMIN_PASSWORD="prepare-Secret9",
        )
        done = cloudathome("cloud", "prepare", env=env)
        assert done.returncode == 0, done.stderr
        assert "created administrator 'admin'" in done.stdout
        yield state, env


def test_cloud_prepare_writes_what_haproxy_and_sshd_start_from(
    prepared_cloud: tuple[Path, dict[str, str]],
) -> None:
    state, env = prepared_cloud
    checks = healthcheck_module()
    edge = haproxy.EdgeConfig(state)  # the paths the argv and the socket derive from
    ssh = sshd.SshdConfig(state, "single-account", account=getpass.getuser())
    assert (state / "db.sqlite3").exists()
    assert os.stat(ssh.host_keys[0]).st_mode & 0o777 == 0o600
    with (
        running(
            haproxy.config_command(edge),
            log=state / "haproxy.log",
            ready=lambda: checks.haproxy(str(edge.socket_path)) is None,
        ),
        running(
            sshd.command(ssh),
            log=state / "sshd.log",
            ready=lambda: (
                checks.banner("127.0.0.1", env["CLOUDATHOME_SSH_PORT"], "SSH-2.0-") is None
            ),
        ),
    ):
        assert checks.unix(str(edge.socket_path), "show info", "Name: nginx") is not None


def test_cloud_prepare_again_keeps_the_host_keys(
    prepared_cloud: tuple[Path, dict[str, str]],
) -> None:
    state, env = prepared_cloud
    host_key = (state / "ssh" / "ssh_host_ed25519_key.pub").read_text()
    done = cloudathome("cloud", "prepare", env=env)
    assert done.returncode == 0, done.stderr
    assert "created administrator" not in done.stdout
    assert (state / "ssh" / "ssh_host_ed25519_key.pub").read_text() == host_key


def test_home_prepare_refuses_without_cloudlink_and_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "cloudlink.yaml"
    env = site_env(CLOUDATHOME_STATE_DIR=str(tmp_path / "state"), CLOUDLINK_CONFIG=str(missing))
    done = cloudathome("home", "prepare", env=env)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"cloudathome home: {missing}: file not found (run `cloudathome register` or set CLOUDLINK_CONFIG)"
    ]
    assert not (tmp_path / "state" / "db.sqlite3").exists()


def test_home_prepare_migrates_and_creates_the_administrator(tmp_path: Path) -> None:
    link = tmp_path / "cloudlink.yaml"
    link.write_text((ROOT / "home" / "config" / "cloudlink.yaml.example").read_text())
    env = site_env(
        CLOUDATHOME_STATE_DIR=str(tmp_path / "state"),
        CLOUDLINK_CONFIG=str(link),
        CLOUDATHOME_ADMIN_PASSWORD="prepare-Secret9",
    )
    done = cloudathome("home", "prepare", env=env)
    assert done.returncode == 0, done.stderr
    assert "created administrator 'admin'" in done.stdout
    assert "linked to https://cloud.example.com as xK3mAbcDef9pQr" in done.stdout
    assert (tmp_path / "state" / "db.sqlite3").exists()


class _Status(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(int(self.path.strip("/")))
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_http_health_check_counts_client_errors_as_up_and_server_errors_as_down() -> None:
    checks = healthcheck_module()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Status)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert checks.http(f"{base}/200") is None
        assert checks.http(f"{base}/400") is None
        assert checks.http(f"{base}/502") == f"{base}/502: HTTP 502"
        assert checks.http(f"http://127.0.0.1:{free_port()}/") is not None
        assert checks.http("file:///etc/passwd") is not None
    finally:
        server.shutdown()
        server.server_close()


def test_banner_health_check_wants_the_expected_greeting() -> None:
    checks = healthcheck_module()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = str(listener.getsockname()[1])

        def greet() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.sendall(b"HTTP/1.0 400 Bad Request\r\n")

        thread = threading.Thread(target=greet, daemon=True)
        thread.start()
        assert checks.banner("127.0.0.1", port, "SSH-2.0-") is not None
        thread.join(5)


def test_fresh_health_check_fails_once_beat_stops_writing(tmp_path: Path) -> None:
    checks = healthcheck_module()
    schedule = tmp_path / "beat-schedule"
    assert checks.fresh(str(schedule), "600") == f"{schedule}: missing"
    suffixed = tmp_path / "beat-schedule.dat"  # dbm.dumb's name for it
    suffixed.write_text("x")
    written = suffixed.stat().st_mtime
    assert checks.fresh(str(schedule), "600", now=written + 60) is None
    assert checks.fresh(str(schedule), "600", now=written + 601) is not None


def test_health_check_script_exits_nonzero_when_unhealthy_and_on_misuse(tmp_path: Path) -> None:
    script = [sys.executable, str(COMPOSE / "healthcheck.py")]
    missing = subprocess.run(
        [*script, "fresh", str(tmp_path / "x"), "60"], capture_output=True, text=True, check=False
    )
    assert missing.returncode == 1 and "unhealthy" in missing.stderr
    misuse = subprocess.run([*script, "fresh"], capture_output=True, text=True, check=False)
    assert misuse.returncode == 2
    (tmp_path / "x").write_text("x")
    fine = subprocess.run(
        [*script, "fresh", str(tmp_path / "x"), "60"], capture_output=True, check=False
    )
    assert fine.returncode == 0
