"""The tunnel processes against a real sshd of the test's own (a dedicated system user, the
forced blocking command of docs/architecture.md, the data path) and a real HTTP service standing for the home's."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import yaml

from home.keys import generate_keypair
from home.tunnels import ssh
from tests.support.net import Service, http_get, serve
from workers.common.processes import processes_of_user, stop_user_processes
from workers.local.procs import free_port, port_open, running, wait_for
from workers.local.sites import cli, home_environ, run_tunnel

SSHD = "/usr/sbin/sshd"
PRIVSEP_DIR = Path("/run/sshd")


@dataclass(frozen=True)
class Sshd:
    port: int
    user: str
    client_key: Path
    known_hosts: Path
    log: Path


@contextlib.contextmanager
def system_user() -> Iterator[str]:
    """A throwaway login for the tunnel: shell /bin/sh (ForceCommand runs through it), no
    home, password field "*" (no password, but not "locked" as sshd without PAM reads "!")."""
    name = f"cahtun_{secrets.token_hex(4)}"
    options = {
        "--home-dir": "/nonexistent",
        "--shell": "/bin/sh",
        "--gid": "nogroup",
        "--password": "*",
    }
    flags = ["--system", "--no-create-home", "--no-user-group"]
    argv = ["useradd", *flags, *(arg for pair in options.items() for arg in pair), name]
    subprocess.run(argv, check=True, capture_output=True)
    try:
        yield name
    finally:
        uid = int(subprocess.run(["id", "-u", name], capture_output=True, text=True).stdout)
        # Its sessions end once the clients are gone; anything left under this fresh uid was
        # started by this test's sshd, so stopping it by PID is stopping our own.
        with contextlib.suppress(TimeoutError):
            wait_for(lambda: not processes_of_user(uid), timeout=10, what=f"{name}'s processes")
        stop_user_processes(uid)
        subprocess.run(["userdel", name], check=True, capture_output=True)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    base = tmp_path_factory.mktemp("sshd")
    # Debian's sshd will not start without its privilege separation directory. It is the
    # package's own runtime directory (cloud/edge/sshd.py creates it too), shared by every
    # sshd on the machine, so it is left in place.
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    host_key = base / "host_ed25519"
    host_pub = generate_keypair(host_key)
    client_key = base / "client" / "id_ed25519"
    client_pub = generate_keypair(client_key)
    # sshd reads AuthorizedKeysFile as the user, who cannot enter pytest's 0700 tmp tree.
    keys_root = Path(tempfile.mkdtemp(prefix="cahtun-keys-"))
    port = free_port()
    try:
        keys_root.chmod(0o711)
        with system_user() as user:
            (keys_root / user).write_text(f"{client_pub}\n")
            (keys_root / user).chmod(0o644)
            config = base / "sshd_config"
            config.write_text(
                f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
                f"PidFile {base}/sshd.pid\nAuthorizedKeysFile {keys_root}/%u\nAllowUsers {user}\n"
                "StrictModes no\nUsePAM no\nPasswordAuthentication no\n"
                "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
                "AllowTcpForwarding remote\nPermitOpen none\nGatewayPorts no\nPermitTTY yes\n"
                "X11Forwarding no\nAllowAgentForwarding no\nAllowStreamLocalForwarding no\n"
                "PermitTunnel no\nPermitUserRC no\nPrintMotd no\nPrintLastLog no\n"
                "ClientAliveInterval 2\nClientAliveCountMax 3\nLogLevel VERBOSE\n"
                "ForceCommand [ -t 0 ] && echo cloudathome: session ready && exec /bin/sleep infinity\n"
            )
            known_hosts = base / "known_hosts"
            known_hosts.write_text(f"[127.0.0.1]:{port} {' '.join(host_pub.split()[:2])}\n")
            log = base / "sshd.log"
            with running(
                [SSHD, "-D", "-e", "-f", str(config)], log=log, ready=lambda: port_open(port)
            ):
                yield Sshd(port, user, client_key, known_hosts, log)
    finally:
        shutil.rmtree(keys_root, ignore_errors=True)


@pytest.fixture(scope="module")
def service() -> Iterator[Service]:
    with serve("home-service") as svc:
        yield svc


@pytest.fixture
def spec(sshd: Sshd, service: Service) -> ssh.TunnelSpec:
    return ssh.TunnelSpec(
        host="127.0.0.1",
        port=sshd.port,
        username=sshd.user,
        private_key=sshd.client_key,
        known_hosts=sshd.known_hosts,
        remote_port=free_port(),
        local_port=service.port,
    )


@contextlib.contextmanager
def tunnel(spec: ssh.TunnelSpec, log: Path) -> Iterator[ssh.ProcessHandle]:
    handle = ssh.spawn(spec, log)
    try:
        yield handle
    finally:
        ssh.stop(handle)


def offline_spec(**changes: object) -> ssh.TunnelSpec:
    spec = ssh.TunnelSpec(
        host="cloud.example.com",
        port=8022,
        username="home02_alice",
        private_key=Path("/home/alice/.ssh/cloudathome_ed25519"),
        known_hosts=Path("/etc/cloudathome/known_hosts"),
        remote_port=2200,
        local_port=8443,
    )
    return replace(spec, **changes)  # type: ignore[arg-type]


# --- command line ---------------------------------------------------------------------------


def test_argv_asks_for_exactly_the_loopback_listener_the_cloud_permits() -> None:
    command = ssh.argv(offline_spec())
    assert command[:2] == ["ssh", "-tt"]
    assert command[command.index("-R") + 1] == "127.0.0.1:2200:127.0.0.1:8443"
    assert command[-1] == "home02_alice@cloud.example.com"
    assert "StrictHostKeyChecking=yes" in command
    assert "UserKnownHostsFile=/etc/cloudathome/known_hosts" in command


def test_argv_brackets_an_ipv6_local_host() -> None:
    command = ssh.argv(offline_spec(local_host="::1"))
    assert command[command.index("-R") + 1] == "127.0.0.1:2200:[::1]:8443"


def test_argv_rejects_a_username_with_a_semicolon() -> None:
    with pytest.raises(ValueError, match="username"):
        ssh.argv(offline_spec(username="alice;reboot"))


def test_argv_rejects_a_host_starting_with_a_dash() -> None:
    with pytest.raises(ValueError, match="host"):
        ssh.argv(offline_spec(host="-oProxyCommand=sh"))


@pytest.mark.parametrize("field", ["port", "remote_port", "local_port"])
@pytest.mark.parametrize("value", [0, 65536, True])
def test_argv_rejects_ports_outside_1_to_65535(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        ssh.argv(offline_spec(**{field: value}))


def test_argv_rejects_a_key_path_that_ssh_would_split_or_expand() -> None:
    with pytest.raises(ValueError, match="private_key"):
        ssh.argv(offline_spec(private_key=Path("/home/al ice/%d/key")))
    with pytest.raises(ValueError, match="known_hosts"):
        ssh.argv(offline_spec(known_hosts=Path("relative/known_hosts")))


# --- a real tunnel ----------------------------------------------------------------------------


def test_tunnel_carries_http_from_the_remote_port_to_the_home_service(
    spec: ssh.TunnelSpec, tmp_path: Path
) -> None:
    with tunnel(spec, tmp_path / "t.log") as handle:
        assert ssh.wait_ready(spec, handle, tmp_path / "t.log", 15) is None
        assert http_get(spec.remote_port, "example.test") == (200, b"home-service")
        assert ssh.is_running(handle)


def test_spawned_ssh_leads_its_own_session(spec: ssh.TunnelSpec, tmp_path: Path) -> None:
    with tunnel(spec, tmp_path / "t.log") as handle:
        assert os.getsid(handle.pid) == handle.pid
        assert os.getsid(handle.pid) != os.getsid(0)


def test_an_unrecorded_tunnel_is_found_by_its_exact_command_line(
    spec: ssh.TunnelSpec, tmp_path: Path
) -> None:
    other = dataclasses.replace(spec, remote_port=spec.remote_port + 1)
    log = tmp_path / "t.log"
    with tunnel(spec, log) as handle:
        assert ssh.wait_ready(spec, handle, log, 15) is None
        assert ssh.running_as(spec) == [handle]
        assert ssh.running_as(other) == []
    assert ssh.running_as(spec) == []


def test_a_healthy_tunnel_has_no_last_error_and_a_private_log(
    spec: ssh.TunnelSpec, tmp_path: Path
) -> None:
    log = tmp_path / "t.log"
    log.write_text("")
    log.chmod(0o644)
    with tunnel(spec, log) as handle:
        assert ssh.wait_ready(spec, handle, log, 15) is None
        assert ssh.last_error(log) is None
        assert "Authenticated to" in log.read_text()  # the log did get ssh's output
    assert log.stat().st_mode & 0o777 == 0o600


def test_stop_ends_the_tunnel_and_the_remote_port_closes(
    spec: ssh.TunnelSpec, tmp_path: Path
) -> None:
    with tunnel(spec, tmp_path / "t.log") as handle:
        assert ssh.wait_ready(spec, handle, tmp_path / "t.log", 15) is None
        assert port_open(spec.remote_port)
        assert ssh.stop(handle) is True
        assert not ssh.is_running(handle)
        wait_for(lambda: not port_open(spec.remote_port), timeout=10, what="remote port to close")
        assert ssh.stop(handle) is False  # nothing left to stop


def test_a_stopped_tunnel_is_reaped_not_left_a_zombie(spec: ssh.TunnelSpec, tmp_path: Path) -> None:
    with tunnel(spec, tmp_path / "t.log") as handle:
        ssh.stop(handle)
        # Gone from /proc entirely (a zombie keeps its entry and its start time).
        wait_for(
            lambda: ssh.start_time_of(handle.pid) != handle.start_time,
            timeout=5,
            what="the ssh process to be reaped",
        )


def test_a_respawn_reports_only_its_own_outcome(
    sshd: Sshd, spec: ssh.TunnelSpec, tmp_path: Path
) -> None:
    log = tmp_path / "t.log"
    bad = replace(spec, known_hosts=tmp_path / "empty_known_hosts")
    bad.known_hosts.write_text("")
    with tunnel(bad, log) as handle:
        assert ssh.wait_ready(bad, handle, log, 15) is not None
    with tunnel(spec, log) as handle:
        assert ssh.wait_ready(spec, handle, log, 15) is None
        assert ssh.last_error(log) is None
    assert "Host key verification failed." in log.read_text()  # the old run is still there


# --- failures, as the user will read them -----------------------------------------------------


def test_a_host_key_other_than_the_pinned_one_is_refused(
    sshd: Sshd, spec: ssh.TunnelSpec, tmp_path: Path
) -> None:
    impostor = generate_keypair(tmp_path / "impostor")
    tampered = tmp_path / "known_hosts"
    tampered.write_text(f"[127.0.0.1]:{sshd.port} {' '.join(impostor.split()[:2])}\n")
    bad = replace(spec, known_hosts=tampered)
    log = tmp_path / "t.log"
    with tunnel(bad, log) as handle:
        reason = ssh.wait_ready(bad, handle, log, 15)
        assert reason is not None and "Host key verification failed" in reason
        assert not ssh.is_running(handle)
        assert ssh.last_error(log) == reason
    assert not port_open(spec.remote_port)


def test_a_remote_port_already_taken_reports_the_forwarding_failure(
    spec: ssh.TunnelSpec, tmp_path: Path
) -> None:
    log = tmp_path / "t.log"
    with socket.create_server(("127.0.0.1", spec.remote_port)), tunnel(spec, log) as handle:
        reason = ssh.wait_ready(spec, handle, log, 15)
    assert reason == f"Error: remote port forwarding failed for listen port {spec.remote_port}"


def test_a_key_the_cloud_does_not_know_is_denied(spec: ssh.TunnelSpec, tmp_path: Path) -> None:
    generate_keypair(tmp_path / "stranger")
    bad = replace(spec, private_key=tmp_path / "stranger")
    with tunnel(bad, tmp_path / "t.log") as handle:
        reason = ssh.wait_ready(bad, handle, tmp_path / "t.log", 15)
    assert reason is not None and "Permission denied (publickey)" in reason


def test_an_unreachable_cloud_reports_connection_refused(
    spec: ssh.TunnelSpec, tmp_path: Path
) -> None:
    bad = replace(spec, port=free_port())  # nothing listens there
    with tunnel(bad, tmp_path / "t.log") as handle:
        reason = ssh.wait_ready(bad, handle, tmp_path / "t.log", 15)
    assert reason is not None and "Connection refused" in reason


# --- recognising our process ------------------------------------------------------------------

# Blocks SIGTERM, so a TERM sent to it stays pending where /proc shows it: no race to win.
TERM_BLOCKER = (
    "import signal, time\n"
    "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})\n"
    "time.sleep(60)\n"
)


def _signal_mask(pid: int, field: str) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(x for x in status.splitlines() if x.startswith(field)).split()[1], 16)


def _term_bit() -> int:
    return 1 << (signal.SIGTERM - 1)


def test_is_running_rejects_a_handle_with_another_start_time(tmp_path: Path) -> None:
    with running(["sleep", "60"], log=tmp_path / "sleep.log") as proc:
        start = wait_for(lambda: ssh.start_time_of(proc.pid), what="a start time")
        assert ssh.is_running(ssh.ProcessHandle(proc.pid, start))
        assert not ssh.is_running(ssh.ProcessHandle(proc.pid, start + 1))


def test_stop_leaves_alone_a_process_whose_start_time_differs(tmp_path: Path) -> None:
    with running([sys.executable, "-c", TERM_BLOCKER], log=tmp_path / "blocker.log") as proc:
        wait_for(lambda: _signal_mask(proc.pid, "SigBlk") & _term_bit(), what="TERM blocked")
        start = ssh.start_time_of(proc.pid)
        assert start is not None
        assert ssh.stop(ssh.ProcessHandle(proc.pid, start - 1), timeout=0.2) is False
        assert _signal_mask(proc.pid, "ShdPnd") & _term_bit() == 0  # no TERM was sent
        assert proc.poll() is None
        # The right handle does reach it: TERM stays blocked, so stop() falls back to KILL.
        assert ssh.stop(ssh.ProcessHandle(proc.pid, start), timeout=0.2) is True
        assert proc.wait(5) == -signal.SIGKILL


def test_start_time_is_read_past_a_process_name_with_spaces_and_parens(tmp_path: Path) -> None:
    strange = tmp_path / "a) b (c"
    strange.symlink_to(shutil.which("sleep") or "/bin/sleep")
    with running([str(strange), "60"], log=tmp_path / "sleep.log") as proc:
        wait_for(lambda: ") b" in Path(f"/proc/{proc.pid}/comm").read_text(), what="exec")
        start = ssh.start_time_of(proc.pid)
        assert start is not None
        boot = next(
            int(x.split()[1])
            for x in Path("/proc/stat").read_text().splitlines()
            if x.startswith("btime")
        )
        started_at = boot + start / os.sysconf("SC_CLK_TCK")
        assert abs(started_at - time.time()) < 10
        assert ssh.is_running(ssh.ProcessHandle(proc.pid, start))


def test_start_time_of_a_missing_process_is_none() -> None:
    # PIDs never exceed pid_max; one above it cannot exist.
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    assert ssh.start_time_of(pid_max + 1) is None


# --- in the foreground: `home manage tunnel_run` -------------------------------------------


def link_file(directory: Path, sshd: Sshd, remote_port: int, count: int = 1) -> Path:
    """A cloudlink.yaml for the test's sshd, whose range is `count` ports from `remote_port`."""
    config = directory / "cloudlink.yaml"
    ssh_link = {
        "host": "127.0.0.1",
        "port": sshd.port,
        "username": sshd.user,
        "private_key_path": str(sshd.client_key),
        "known_hosts": str(sshd.known_hosts),
    }
    link = {
        "cloudserver_url": "http://127.0.0.1:9",
        "auth_token": "cah_unused_unused",
        "home_slug": "test",
        "ssh": ssh_link,
        "ports": {"base": remote_port, "count": count},
    }
    config.write_text(yaml.safe_dump(link))
    return config


def test_tunnel_run_carries_traffic_until_it_is_told_to_stop(
    sshd: Sshd, service: Service, tmp_path: Path
) -> None:
    remote = free_port()
    config = link_file(tmp_path, sshd, remote)
    forwards = [(remote, service.port)]
    with run_tunnel(tmp_path / "state", config, forwards, tmp_path / "run.log") as run:
        assert Path(f"/proc/{run.pid}/comm").read_text().strip() == "ssh"
        assert 0 < run.ready_s < 15
        assert http_get(remote, "example.test") == (200, b"home-service")
    assert run.proc.returncode == 0
    wait_for(lambda: ssh.start_time_of(run.pid) is None, timeout=10, what="ssh stopped")
    assert not port_open(remote)


def free_ports(count: int) -> int:
    """The first of `count` consecutive ports nobody listens on (a home's range)."""
    for _ in range(50):
        base = free_port()
        if base + count <= 65536 and not any(port_open(base + i) for i in range(count)):
            return base
    raise RuntimeError(f"no {count} consecutive free ports")


def test_tunnel_run_carries_several_forwards_on_one_master(
    sshd: Sshd, service: Service, tmp_path: Path
) -> None:
    base = free_ports(3)
    config = link_file(tmp_path, sshd, base, count=3)
    with (
        serve("second-service") as second,
        run_tunnel(
            tmp_path / "state",
            config,
            [(base, service.port), (base + 1, second.port), (base + 2, service.port)],
            tmp_path / "run.log",
        ) as run,
    ):
        # One ssh process, the master: every forward rides on its connection.
        assert Path(f"/proc/{run.pid}/comm").read_text().strip() == "ssh"
        assert "ControlMaster=yes" in Path(f"/proc/{run.pid}/cmdline").read_text()
        assert http_get(base, "example.test") == (200, b"home-service")
        assert http_get(base + 1, "example.test") == (200, b"second-service")
        assert http_get(base + 2, "example.test") == (200, b"home-service")
        line = json.loads(
            next(ln for ln in (tmp_path / "run.log").read_text().splitlines() if ln[:1] == "{")
        )
        assert [f["remote_port"] for f in line["forwards"]] == [base, base + 1, base + 2]
        assert (line["remote_port"], line["local_port"]) == (base, service.port)
    assert run.proc.returncode == 0
    wait_for(lambda: ssh.start_time_of(run.pid) is None, timeout=10, what="ssh stopped")
    assert not any(port_open(base + i) for i in range(3))


def test_tunnel_run_exits_with_the_reason_when_its_master_ends(
    sshd: Sshd, service: Service, tmp_path: Path
) -> None:
    remote = free_port()
    config = link_file(tmp_path, sshd, remote)
    log = tmp_path / "run.log"
    with run_tunnel(tmp_path / "state", config, [(remote, service.port)], log) as run:
        os.kill(run.pid, signal.SIGKILL)
        assert run.proc.wait(timeout=10) != 0
    assert "the master connection ended" in log.read_text()


def tunnel_run(
    tmp_path: Path, config: Path, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`home manage tunnel_run ARGS` for the home of `config`, run to its end."""
    return subprocess.run(
        cli("home", "manage", "tunnel_run", *args),
        env=home_environ(tmp_path / "state", config),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_tunnel_run_says_which_forward_the_cloud_refused(sshd: Sshd, tmp_path: Path) -> None:
    base = free_ports(2)
    config = link_file(tmp_path, sshd, base, count=2)
    with socket.create_server(("127.0.0.1", base + 1)):  # the cloud's port, held by another
        forwards = ("--forward", f"{base}:80", "--forward", f"{base + 1}:80")
        done = tunnel_run(tmp_path, config, *forwards, timeout=90)
    assert done.returncode != 0
    assert "the cloud did not accept the forwards" in done.stderr
    assert f"remote port forwarding failed for listen port {base + 1}" in done.stderr
    # The master, and the forward it had, stopped.
    wait_for(lambda: not port_open(base), timeout=10, what="the accepted forward closed")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--forward", "80"], "--forward: '80' is not REMOTE:LOCAL"),
        (["--forward", "{base}:0"], "--forward: local_port: 0 is not a TCP port"),
        (["--forward", "{base}:80", "--forward", "{base}:81"], "given twice"),
        (["--remote-port", "{base}"], "--remote-port and --local-port go together"),
        (["--remote-port", "{base}", "--local-port", "70000"], "--local-port: 70000 is not"),
        (["--remote-port", "{base}", "--local-port", "80", "--local-host", "-x"], "--local-host"),
        ([], "give --remote-port and --local-port, or --forward"),
    ],
)
def test_tunnel_run_names_the_option_it_refuses(
    sshd: Sshd, tmp_path: Path, args: list[str], message: str
) -> None:
    base = free_port()
    config = link_file(tmp_path, sshd, base)
    done = tunnel_run(tmp_path, config, *(a.format(base=base) for a in args))
    assert done.returncode != 0
    assert message in done.stderr


def test_tunnel_run_refuses_a_port_outside_the_home_range(sshd: Sshd, tmp_path: Path) -> None:
    remote = free_port()
    config = link_file(tmp_path, sshd, remote)
    done = tunnel_run(tmp_path, config, "--remote-port", str(remote + 1), "--local-port", "80")
    assert done.returncode != 0
    assert f"--remote-port: {remote + 1} is outside this home's range {remote}-{remote}" in (
        done.stderr
    )


# --- backoff ----------------------------------------------------------------------------------


def test_backoff_stays_within_the_doubling_ceiling_and_the_cap() -> None:
    for failures, ceiling in [(0, 1.0), (1, 2.0), (3, 8.0), (6, 60.0), (500, 60.0)]:
        delays = [ssh.next_delay(failures) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling / 2  # it does use the range


def test_backoff_is_jittered() -> None:
    assert len({ssh.next_delay(5) for _ in range(20)}) > 1


def test_backoff_rejects_a_negative_failure_count() -> None:
    with pytest.raises(ValueError, match="failures"):
        ssh.next_delay(-1)


# --- the home's one master connection -------------------------------------------------------


def offline_master(**changes: object) -> ssh.MasterSpec:
    spec = ssh.MasterSpec(
        host="cloud.example.com",
        port=8022,
        username="home02_alice",
        private_key=Path("/home/alice/.ssh/cloudathome_ed25519"),
        known_hosts=Path("/etc/cloudathome/known_hosts"),
        control_path=Path("/var/lib/cloudathome/ssh/master.sock"),
    )
    return replace(spec, **changes)  # type: ignore[arg-type]


def test_master_argv_has_a_control_socket_and_no_forward_of_its_own() -> None:
    command = ssh.master_argv(offline_master())
    assert command[:2] == ["ssh", "-tt"]
    assert command[command.index("-S") + 1] == "/var/lib/cloudathome/ssh/master.sock"
    assert "ControlMaster=yes" in command and "ExitOnForwardFailure=no" in command
    assert "-R" not in command and "BindAddress" not in " ".join(command)
    # A plain connect asks for nothing; the takeover is asked for when a port is held.
    assert command[-1] == "home02_alice@cloud.example.com"
    taking = ssh.master_argv(offline_master(bind_address="192.0.2.7"), takeover=True)
    assert taking[-2:] == ["home02_alice@cloud.example.com", "takeover"]
    assert taking[taking.index("-S") + 2 : taking.index("-S") + 4] == [
        "-o",
        "BindAddress=192.0.2.7",
    ]
    with pytest.raises(ValueError, match="bind_address: 'eth0' is not an IP address"):
        ssh.master_argv(offline_master(bind_address="eth0"))


def test_one_control_command_asks_for_every_forward_given() -> None:
    forwards = [ssh.Forward(2200, 8443), ssh.Forward(2201, 22)]
    command = ssh.forward_argv(offline_master(), *forwards)
    asked = [command[i + 1] for i, arg in enumerate(command) if arg == "-R"]
    assert asked == ["127.0.0.1:2200:127.0.0.1:8443", "127.0.0.1:2201:127.0.0.1:22"]
    with pytest.raises(ValueError, match="forwards: at least one"):
        ssh.forward_argv(offline_master())


def test_forward_and_cancel_argv_name_one_forward_on_the_control_socket() -> None:
    forward = ssh.Forward(remote_port=2200, local_port=8443)
    for command, verb in (
        (ssh.forward_argv(offline_master(), forward), "forward"),
        (ssh.cancel_argv(offline_master(), forward), "cancel"),
    ):
        assert command[command.index("-O") + 1] == verb
        assert command[command.index("-R") + 1] == "127.0.0.1:2200:127.0.0.1:8443"
        assert command[command.index("-S") + 1] == "/var/lib/cloudathome/ssh/master.sock"


def test_master_argv_rejects_a_control_path_ssh_would_expand_or_cannot_bind() -> None:
    with pytest.raises(ValueError, match="control_path"):
        ssh.master_argv(offline_master(control_path=Path("/tmp/%h/master.sock")))
    with pytest.raises(ValueError, match="control_path"):
        ssh.master_argv(offline_master(control_path=Path("/" + "a" * 100)))
    with pytest.raises(ValueError, match="remote_port"):
        ssh.forward_argv(offline_master(), ssh.Forward(remote_port=0, local_port=80))


@pytest.fixture
def master_spec(sshd: Sshd) -> Iterator[ssh.MasterSpec]:
    folder = Path(tempfile.mkdtemp(prefix="cahm-"))  # short: a unix socket path
    try:
        yield ssh.MasterSpec(
            host="127.0.0.1",
            port=sshd.port,
            username=sshd.user,
            private_key=sshd.client_key,
            known_hosts=sshd.known_hosts,
            control_path=folder / "link" / "master.sock",
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_one_master_carries_forwards_added_and_cancelled_one_by_one(
    master_spec: ssh.MasterSpec, service: Service, tmp_path: Path
) -> None:
    spec = master_spec
    first = ssh.Forward(remote_port=free_port(), local_port=service.port)
    second = ssh.Forward(remote_port=free_port(), local_port=service.port)
    master = ssh.spawn_master(spec, tmp_path / "master.log")
    try:
        assert ssh.master_ready(master, tmp_path / "master.log") is None
        assert ssh.master_alive(spec)
        assert (spec.control_path.stat().st_mode & 0o777) == 0o600
        assert (spec.control_path.parent.stat().st_mode & 0o777) == 0o700
        for forward in (first, second):
            assert ssh.forward_add(spec, forward) is None
        assert ssh.forward_add(spec, first) is None  # already held: nothing to do
        assert http_get(first.remote_port, "a.test") == (200, b"home-service")
        assert http_get(second.remote_port, "b.test") == (200, b"home-service")
        assert ssh.forward_cancel(spec, first) is None
        wait_for(lambda: not port_open(first.remote_port), timeout=5, what="the cancelled port")
        assert http_get(second.remote_port, "b.test") == (200, b"home-service")
        assert ssh.is_running(master)
    finally:
        ssh.stop(master)
    assert not ssh.master_alive(spec)


def test_a_refused_forward_fails_alone_and_the_master_stays(
    master_spec: ssh.MasterSpec, service: Service, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = ssh.Forward(remote_port=taken.getsockname()[1], local_port=service.port)
        good = ssh.Forward(remote_port=free_port(), local_port=service.port)
        master = ssh.spawn_master(master_spec, tmp_path / "master.log")
        try:
            assert ssh.master_ready(master, tmp_path / "master.log") is None
            reason = ssh.forward_add(master_spec, busy)
            assert reason is not None and str(busy.remote_port) in reason
            assert ssh.is_running(master)
            assert ssh.forward_add(master_spec, good) is None
            assert http_get(good.remote_port, "a.test") == (200, b"home-service")
        finally:
            ssh.stop(master)
