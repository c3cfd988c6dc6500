"""Our sshd as the tunnel endpoint, run for real in both account modes: a home may
remote-forward its own ports on 127.0.0.1 inside a blocking PTY session, and nothing else."""

from __future__ import annotations

import base64
import contextlib
import grp
import os
import pwd
import secrets
import shutil
import signal
import socket
import socketserver
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cloud.edge import sshd
from tests.support.sites import port_base
from workers.common.processes import processes_of_user
from workers.local.procs import free_port, running, stop_pid, wait_for

MODES = ["system-users", "single-account"]


# --- helpers --------------------------------------------------------------------------------


def listening(port: int, host: str = "127.0.0.1") -> bool:
    """A TCP listener on <host>:<port> (IPv4), read from the kernel, without connecting to it
    (a connection would open a forwarded channel and reach the home's service)."""
    wanted = f"{socket.inet_aton(host)[::-1].hex().upper()}:{port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == wanted and fields[3] == "0A":
            return True
    return False


def sleeps_of(uid: int) -> set[int]:
    """PIDs of `sleep` processes of `uid`: the forced command, once a session reached exec."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if (entry / "comm").read_text().strip() == "sleep" and entry.stat().st_uid == uid:
                pids.add(int(entry.name))
    return pids


def secure_state_dir() -> Path:
    # sshd (StrictModes) refuses key files below a world-writable directory such as /tmp,
    # so the state dir lives in a root-only tree.
    for base in ("/run", "/var/lib"):
        if os.stat(base).st_uid == 0 and not os.stat(base).st_mode & 0o022:
            path = Path(tempfile.mkdtemp(prefix="cahtest-sshd-", dir=base))
            path.chmod(0o755)
            return path
    raise RuntimeError("no root-only directory for the sshd state")


def keygen(path: Path, *spec: str) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", *spec, "-N", "", "-C", path.name, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


_PORT_BLOCK = port_base()


def free_ports(count: int, taken: set[int]) -> list[int]:
    """Free ports of this module's own block, below the ephemeral range: a port picked there
    could be taken by any client socket of the other suite, and "nothing listens" would lie."""
    ports: list[int] = []
    for port in range(_PORT_BLOCK, _PORT_BLOCK + 1000):
        if len(ports) == count:
            break
        if port not in taken and not listening_anywhere(port):
            ports.append(port)
    taken.update(ports)
    return ports


def listening_anywhere(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


class EchoService:
    """The home's service: answers b"echo:" + what it got, and counts connections."""

    def __init__(self) -> None:
        outer = self
        self.connections = 0
        self._lock = threading.Lock()

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                with outer._lock:
                    outer.connections += 1
                with contextlib.suppress(OSError):
                    self.request.sendall(b"echo:" + self.request.recv(1024))

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> EchoService:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def exchange(port: int, payload: bytes = b"ping") -> bytes:
    """Send `payload` to 127.0.0.1:<port>, return everything read until the peer closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(payload)
        chunks = []
        # A refused channel closes the socket with our bytes unread, which resets it.
        with contextlib.suppress(ConnectionResetError):
            while chunk := conn.recv(1024):
                chunks.append(chunk)
        return b"".join(chunks)


@dataclass
class Home:
    username: str  # the home's name: its system user, or its tag in the shared key file
    login: str  # the account it logs in as
    key: Path
    ports: list[int]

    @property
    def uid(self) -> int:
        return pwd.getpwnam(self.login).pw_uid


@dataclass
class Edge:
    mode: str
    cfg: sshd.SshdConfig
    accounts: sshd.Accounts
    proc: subprocess.Popen[bytes]
    known_hosts: Path
    tmp: Path
    service: EchoService
    taken_ports: set[int]
    prefix: str
    alice: Home = field(init=False)  # two ports
    bob: Home = field(init=False)

    def home(self, suffix: str, ports: int = 1) -> Home:
        """A home of its own for a test that changes or removes it."""
        username = f"{self.prefix}_{suffix}"
        key = keygen(self.tmp / f"id_{suffix}", "-t", "ed25519")
        home = Home(
            username,
            username if self.mode == "system-users" else str(self.cfg.account),
            key,
            free_ports(ports, self.taken_ports),
        )
        self.accounts.install(username, key.with_name(key.name + ".pub").read_text(), home.ports)
        return home

    def ssh(self, home: Home, *options: str, program: str = "ssh") -> list[str]:
        """argv of `program` as `home` against our sshd, up to the destination."""
        port_flag = "-p" if program == "ssh" else "-P"
        argv = [
            program,
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "IdentitiesOnly=yes",
            "-i",
            str(home.key),
            "-F",
            "/dev/null",
            port_flag,
            str(self.cfg.port),
            *options,
        ]
        return argv if program != "ssh" else [*argv, f"{home.login}@127.0.0.1"]

    def tunnel(self, home: Home, listen: str, *options: str) -> list[str]:
        """The home side's tunnel command (docs/architecture.md, the data path)."""
        return self.ssh(
            home,
            "-tt",
            "-o",
            "ExitOnForwardFailure=yes",
            "-c",
            "aes128-gcm@openssh.com",
            "-R",
            f"{listen}:127.0.0.1:{self.service.port}",
            *options,
        )


def run(argv: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a client expected to end by itself (a refused one); stdin is empty."""
    options: dict = {"stdin": subprocess.DEVNULL, "capture_output": True, "text": True}
    options.update(kwargs)
    return subprocess.run(list(argv), timeout=20, check=False, **options)


def delete_test_user(name: str) -> None:
    try:
        uid = pwd.getpwnam(name).pw_uid
    except KeyError:
        return
    # Its sessions end once our clients are gone; userdel refuses while any runs.
    wait_for(lambda: not processes_of_user(uid), timeout=15, what=f"the sessions of {name} to end")
    result = run(["userdel", name])
    assert result.returncode == 0, result.stderr


def remove_homes(edge_cfg: sshd.SshdConfig, accounts: sshd.Accounts, prefix: str) -> None:
    """Remove every home the fixture or a test created, even after a failure; then report."""
    errors: list[Exception] = []
    for name in accounts.installed():
        try:
            accounts.remove(name)
        except Exception as exc:  # keep cleaning
            errors.append(exc)
    for entry in pwd.getpwall():
        if entry.pw_name.startswith(prefix + "_") and entry.pw_name != edge_cfg.account:
            errors.append(RuntimeError(f"remove() left user {entry.pw_name} behind"))
            try:
                delete_test_user(entry.pw_name)
            except Exception as exc:
                errors.append(exc)
    with contextlib.suppress(KeyError):
        grp.getgrnam(edge_cfg.group)
        result = run(["groupdel", edge_cfg.group])
        if result.returncode != 0:
            errors.append(RuntimeError(f"groupdel {edge_cfg.group}: {result.stderr}"))
    if errors:
        raise errors[0]


@contextlib.contextmanager
def edge_site(mode: sshd.Mode, tmp: Path, **limits: int | str) -> Iterator[Edge]:
    """Our sshd in `mode` with `limits` (SshdConfig fields; `listen` 127.0.0.1 unless given),
    homes alice (two ports) and bob;
    every home, user and process removed afterwards."""
    prefix = f"cahtest_{secrets.token_hex(3)}"
    with contextlib.ExitStack() as stack:
        state = secure_state_dir()
        stack.callback(shutil.rmtree, state, True)
        account = None
        if mode == "single-account":
            account = f"{prefix}_svc"
            stack.callback(delete_test_user, account)
            result = run(
                [
                    "useradd",
                    "--system",
                    "--no-create-home",
                    "--no-log-init",
                    "--home-dir",
                    "/",
                    "--shell",
                    "/bin/sh",
                    "--password",
                    "*",
                    account,
                ]
            )
            assert result.returncode == 0, result.stderr
        cfg = sshd.SshdConfig(
            state,
            mode=mode,
            port=free_port(),
            account=account,
            group=prefix,
            **{"listen": "127.0.0.1", **limits},  # type: ignore[arg-type]
        )
        accounts = sshd.accounts_for(cfg)
        stack.callback(remove_homes, cfg, accounts, prefix)
        sshd.prepare(cfg)
        known_hosts = tmp / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{cfg.port} {sshd.host_key_line(cfg)}\n")
        service = stack.enter_context(EchoService())
        taken: set[int] = {cfg.port, service.port}
        proc = stack.enter_context(
            running(
                sshd.command(cfg),
                log=tmp / "sshd.log",
                ready=lambda: listening(cfg.port, cfg.listen),
            )
        )
        edge = Edge(mode, cfg, accounts, proc, known_hosts, tmp, service, taken, prefix)
        edge.alice = edge.home("alice", ports=2)
        edge.bob = edge.home("bob")
        yield edge


@pytest.fixture(scope="module", params=MODES)
def edge(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Edge]:
    mode: sshd.Mode = request.param
    with edge_site(mode, tmp_path_factory.mktemp(f"sshd-{mode}")) as site:
        yield site


@contextlib.contextmanager
def tunnel_up(edge: Edge, home: Home, port: int, *options: str) -> Iterator[subprocess.Popen]:
    log = edge.tmp / f"tunnel-{secrets.token_hex(3)}.log"
    with running(
        edge.tunnel(home, f"127.0.0.1:{port}", *options), log=log, ready=lambda: listening(port)
    ) as proc:
        yield proc


# --- the tunnel -----------------------------------------------------------------------------


def test_tunnel_reaches_the_home_service(edge: Edge) -> None:
    port = edge.alice.ports[1]
    with tunnel_up(edge, edge.alice, port):
        assert exchange(port) == b"echo:ping"


@pytest.mark.parametrize("listen", ["bob", "outside"])
def test_home_cannot_listen_outside_its_range(edge: Edge, listen: str) -> None:
    port = edge.bob.ports[0] if listen == "bob" else free_ports(1, edge.taken_ports)[0]
    result = run(edge.tunnel(edge.alice, f"127.0.0.1:{port}"))
    assert result.returncode != 0
    assert "remote port forwarding failed" in result.stderr
    assert not listening(port)


@pytest.mark.parametrize("address", ["0.0.0.0", "localhost", ""])  # noqa: S104 (refused)
def test_home_must_ask_for_exactly_127_0_0_1(edge: Edge, address: str) -> None:
    port = edge.alice.ports[0]
    listen = f"{address}:{port}" if address else str(port)
    result = run(edge.tunnel(edge.alice, listen))
    assert result.returncode != 0
    assert "remote port forwarding failed" in result.stderr
    assert not listening(port)


def test_home_cannot_forward_a_unix_socket(edge: Edge) -> None:
    # A directory the home could write to, or the test would pass for the wrong reason.
    directory = Path(tempfile.mkdtemp(prefix="cahtest-sock-", dir="/tmp"))
    try:
        directory.chmod(0o1777)
        path = directory / "forwarded.sock"
        result = run(edge.tunnel(edge.alice, str(path)))
        assert result.returncode != 0
        assert "remote port forwarding failed" in result.stderr
        assert not path.exists()
    finally:
        shutil.rmtree(directory)


def test_local_forwarding_is_refused(edge: Edge) -> None:
    local = free_ports(1, edge.taken_ports)[0]
    before = edge.service.connections
    argv = edge.ssh(edge.alice, "-tt", "-L", f"127.0.0.1:{local}:127.0.0.1:{edge.service.port}")
    with running(argv, log=edge.tmp / "local.log", ready=lambda: listening(local)):
        assert exchange(local) == b""
    assert edge.service.connections == before
    assert "administratively prohibited" in (edge.tmp / "local.log").read_text()


def test_dynamic_forwarding_is_refused(edge: Edge) -> None:
    local = free_ports(1, edge.taken_ports)[0]
    before = edge.service.connections
    argv = edge.ssh(edge.alice, "-tt", "-D", f"127.0.0.1:{local}")
    with running(argv, log=edge.tmp / "dynamic.log", ready=lambda: listening(local)):
        with socket.create_connection(("127.0.0.1", local), timeout=10) as conn:
            conn.sendall(b"\x05\x01\x00")
            assert conn.recv(2) == b"\x05\x00"
            conn.sendall(b"\x05\x01\x00\x01\x7f\x00\x00\x01" + edge.service.port.to_bytes(2, "big"))
            conn.sendall(b"ping")
            received = b""
            with contextlib.suppress(ConnectionResetError):
                while chunk := conn.recv(1024):
                    received += chunk
        assert b"echo:" not in received
    assert edge.service.connections == before
    assert "administratively prohibited" in (edge.tmp / "dynamic.log").read_text()


# --- nothing but the tunnel -----------------------------------------------------------------


def test_a_command_is_never_run(edge: Edge) -> None:
    result = run([*edge.ssh(edge.alice), "id"])
    assert result.returncode == 1  # the forced command's `[ -t 0 ]`, not an ssh error
    assert "uid=" not in result.stdout + result.stderr


def test_a_command_with_a_pty_only_blocks(edge: Edge) -> None:
    uid = edge.alice.uid
    before = sleeps_of(uid)
    log = edge.tmp / "pty-command.log"
    with running([*edge.ssh(edge.alice, "-tt"), "id"], log=log) as proc:
        wait_for(lambda: sleeps_of(uid) - before, what="the forced command to run")
        assert proc.poll() is None
    assert "uid=" not in log.read_text()


def test_a_session_without_pty_gets_no_shell(edge: Edge) -> None:
    result = run(edge.ssh(edge.alice, "-T"), stdin=None, input="echo shell-$((6*7))\nid\n")
    assert result.returncode == 1
    assert "shell-42" not in result.stdout
    assert "uid=" not in result.stdout


def test_sftp_is_refused(edge: Edge) -> None:
    target = edge.tmp / "sftp-copy"
    batch = edge.tmp / "sftp-batch"
    batch.write_text(f"get /etc/passwd {target}\n")
    result = run(
        [*edge.ssh(edge.alice, "-b", str(batch), program="sftp"), f"{edge.alice.login}@127.0.0.1"]
    )
    assert result.returncode != 0
    assert not target.exists()


@pytest.mark.parametrize("protocol", ["sftp", "legacy"])
def test_scp_is_refused(edge: Edge, protocol: str) -> None:
    target = edge.tmp / f"scp-copy-{protocol}"
    flags = ["-O"] if protocol == "legacy" else []
    result = run(
        [
            *edge.ssh(edge.alice, *flags, program="scp"),
            f"{edge.alice.login}@127.0.0.1:/etc/passwd",
            str(target),
        ]
    )
    assert result.returncode != 0
    assert not target.exists()


def test_agent_forwarding_is_refused(edge: Edge) -> None:
    sock = edge.tmp / "agent.sock"
    uid = edge.alice.uid
    before = sleeps_of(uid)
    with running(
        ["ssh-agent", "-D", "-a", str(sock)], log=edge.tmp / "agent.log", ready=sock.exists
    ):
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        argv = edge.ssh(edge.alice, "-tt", "-A")
        with running(argv, log=edge.tmp / "agent-client.log", env=env):
            # The agent request precedes exec on the session channel: once the forced command
            # runs, sshd has answered it, and a granted one leaves a socket of the home's.
            wait_for(lambda: sleeps_of(uid) - before, what="the forced command to run")
            sockets = [p for p in Path("/tmp").glob("ssh-*") if p.stat().st_uid == uid]
            assert sockets == []


def test_x11_forwarding_is_refused(edge: Edge) -> None:
    env = {**os.environ, "DISPLAY": "127.0.0.1:63"}
    result = run(edge.ssh(edge.alice, "-T", "-Y"), env=env)
    assert "X11 forwarding request failed" in result.stderr


def test_password_login_is_refused(edge: Edge) -> None:
    result = run(
        edge.ssh(
            edge.alice, "-T", "-o", "PasswordAuthentication=yes", "-o", "PubkeyAuthentication=no"
        )
    )
    assert result.returncode == 255
    assert "Permission denied (publickey)" in result.stderr


def test_unknown_key_is_refused(edge: Edge) -> None:
    stranger = Home(
        "stranger", edge.alice.login, keygen(edge.tmp / "id_stranger", "-t", "ed25519"), []
    )
    result = run(edge.ssh(stranger, "-T"))
    assert result.returncode == 255
    assert "Permission denied (publickey)" in result.stderr


# --- changing homes without touching sshd ---------------------------------------------------


def test_removed_home_can_no_longer_log_in_and_sshd_was_not_reloaded(edge: Edge) -> None:
    carol = edge.home("carol")
    assert run(edge.ssh(carol, "-T")).returncode == 1  # in: the forced command ran
    edge.accounts.remove(carol.username)
    result = run(edge.ssh(carol, "-T"))
    assert result.returncode == 255
    assert "Permission denied" in result.stderr
    assert carol.username not in edge.accounts.installed()
    assert edge.proc.poll() is None
    assert "SIGHUP" not in (edge.tmp / "sshd.log").read_text()


def test_reinstalling_a_home_moves_it_to_its_new_ports(edge: Edge) -> None:
    dave = edge.home("dave")
    old, new = dave.ports[0], free_ports(1, edge.taken_ports)[0]
    edge.accounts.install(
        dave.username, dave.key.with_name(dave.key.name + ".pub").read_text(), [new]
    )
    assert run(edge.tunnel(dave, f"127.0.0.1:{old}")).returncode != 0
    with tunnel_up(edge, dave, new):
        assert exchange(new) == b"echo:ping"


def test_installed_lists_every_home(edge: Edge) -> None:
    assert {edge.alice.username, edge.bob.username} <= edge.accounts.installed()


@pytest.mark.parametrize("edge", ["system-users"], indirect=True)
def test_removing_a_home_ends_its_live_tunnel(edge: Edge) -> None:
    erin = edge.home("erin")
    port = erin.ports[0]
    with tunnel_up(edge, erin, port) as client:
        edge.accounts.remove(erin.username)
        wait_for(lambda: not listening(port), timeout=5, what="the tunnel port to close")
        wait_for(lambda: client.poll() is not None, timeout=5, what="the client to be dropped")
    with pytest.raises(KeyError):
        pwd.getpwnam(erin.username)


@pytest.mark.parametrize("edge", ["system-users"], indirect=True)
def test_a_vanished_home_frees_its_port_in_about_16_seconds(edge: Edge) -> None:
    # Keep-alives are global settings, so one mode shows it. SIGSTOP stands in for a home
    # whose network went away: no FIN, no answers to keep-alives. sshd 9.2 probes only when
    # a whole second more than ClientAliveInterval has passed, so every 2 * 2 s, and drops
    # the connection at the (ClientAliveCountMax + 1)th probe: 16 s.
    port = edge.bob.ports[0]
    with tunnel_up(edge, edge.bob, port) as client:
        os.kill(client.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            wait_for(lambda: not listening(port), timeout=20, interval=0.2, what="the port to free")
            assert time.monotonic() - started < 18
        finally:
            os.kill(client.pid, signal.SIGCONT)
            stop_pid(client)


@pytest.mark.parametrize("edge", ["system-users"], indirect=True)
def test_system_users_never_touch_a_user_outside_their_group(edge: Edge) -> None:
    public = edge.alice.key.with_name(edge.alice.key.name + ".pub").read_text()
    with pytest.raises(ValueError, match=r"^username: nobody already exists"):
        edge.accounts.install("nobody", public, edge.alice.ports)
    with pytest.raises(ValueError, match=r"^username: nobody already exists"):
        edge.accounts.remove("nobody")
    assert not (edge.cfg.keys_dir / "nobody").exists()
    assert pwd.getpwnam("nobody").pw_uid == 65534


@pytest.mark.parametrize("edge", ["single-account"], indirect=True)
def test_single_account_keeps_one_tagged_line_per_home(edge: Edge) -> None:
    lines = (edge.cfg.keys_dir / str(edge.cfg.account)).read_text().splitlines()
    tags = [line.rsplit(" ", 1)[1] for line in lines]
    assert tags.count(f"cloudathome:{edge.alice.username}") == 1
    assert tags.count(f"cloudathome:{edge.bob.username}") == 1


def test_key_files_are_root_owned_and_not_writable_by_homes(edge: Edge) -> None:
    name = edge.alice.username if edge.mode == "system-users" else str(edge.cfg.account)
    st = (edge.cfg.keys_dir / name).stat()
    assert st.st_uid == 0
    # sshd reads it as the login's user (a home's, or the single account), not as root.
    assert st.st_mode & 0o777 == 0o644
    assert (edge.cfg.keys_dir.stat().st_mode & 0o777) == 0o711  # traverse, never list


# --- host key -------------------------------------------------------------------------------


def test_host_key_fingerprint_matches_ssh_keygen(edge: Edge) -> None:
    pub = edge.cfg.host_keys[0].with_name(edge.cfg.host_keys[0].name + ".pub")
    listed = run(["ssh-keygen", "-l", "-f", str(pub)]).stdout.split()
    assert sshd.host_key_fingerprint(edge.cfg) == listed[1]
    assert sshd.host_key_line(edge.cfg).startswith("ssh-ed25519 ")
    assert edge.cfg.host_keys[0].stat().st_mode & 0o777 == 0o600


def test_prepare_again_keeps_the_host_keys(edge: Edge) -> None:
    before = sshd.host_key_fingerprint(edge.cfg)
    sshd.prepare(edge.cfg)
    assert sshd.host_key_fingerprint(edge.cfg) == before


# --- validation, without sshd ---------------------------------------------------------------


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Public key lines made by ssh-keygen, by name."""
    tmp = tmp_path_factory.mktemp("keys")
    specs = {
        "ed25519": ["-t", "ed25519"],
        "ecdsa256": ["-t", "ecdsa", "-b", "256"],
        "ecdsa384": ["-t", "ecdsa", "-b", "384"],
        "ecdsa521": ["-t", "ecdsa", "-b", "521"],
        "rsa3072": ["-t", "rsa", "-b", "3072"],
        "rsa1024": ["-t", "rsa", "-b", "1024"],
        "dsa": ["-t", "dsa"],
    }
    lines = {}
    for name, spec in specs.items():
        path = keygen(tmp / name, *spec)
        lines[name] = path.with_name(path.name + ".pub").read_text()
    return lines


def _blob(*fields: bytes) -> str:
    return base64.b64encode(b"".join(len(f).to_bytes(4, "big") + f for f in fields)).decode()


@pytest.mark.parametrize("name", ["ed25519", "ecdsa256", "ecdsa384", "ecdsa521", "rsa3072"])
def test_a_public_key_comes_back_as_type_and_data_without_its_comment(
    keys: dict[str, str], name: str
) -> None:
    key_type, data, comment = keys[name].split()
    assert comment == name
    assert sshd.validate_public_key(keys[name]) == f"{key_type} {data}"


def test_a_security_key_is_accepted() -> None:
    line = "sk-ssh-ed25519@openssh.com " + _blob(
        b"sk-ssh-ed25519@openssh.com", bytes(range(32)), b"ssh:"
    )
    assert sshd.validate_public_key(line + " yubikey\n") == line


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda k: "hello world", "must start with a key type"),
        (lambda k: 'restrict,command="/bin/sh" ' + k["ed25519"], "must start with a key type"),
        (lambda k: 'command="/bin/sh" ' + k["ed25519"], "must start with a key type"),
        (lambda k: k["ed25519"].strip() + " " + k["rsa3072"], "more than one key"),
        (lambda k: k["ed25519"] + k["rsa3072"], "single line"),
        (lambda k: k["ed25519"].strip() + "\nrestrict,pty ssh-ed25519 AAAA", "single line"),
        (lambda k: k["ed25519"].strip() + "\rx", "single line"),
        (lambda k: k["ed25519"].strip() + " \x1b[31mred", "control characters"),
        (lambda k: k["rsa1024"], "RSA keys must have 3072 to 16384 bits, this one has 1024"),
        (lambda k: k["dsa"], "DSA keys are not accepted"),
        (lambda k: "ssh-rsa " + "A" * 20 * 1024, "longer than 16384"),
        (lambda k: "ssh-rsa " + k["ed25519"].split()[1], "the line says ssh-rsa"),
        (lambda k: "ssh-ed25519 AAAA!!!!", "not valid base64"),
        (lambda k: "ssh-ed25519", "key data is missing"),
        (lambda k: "ssh-ed25519 " + _blob(b"ssh-ed25519", b"short"), "malformed"),
        (lambda k: "ssh-ed25519 " + _blob(b"ssh-ed25519", bytes(32), b"extra"), "malformed"),
        (lambda k: "ssh-ed25519 " + k["ed25519"].split()[1][:20], "truncated|malformed"),
        (lambda k: "  ", "is empty"),
    ],
)
def test_a_bad_public_key_is_rejected_with_the_reason(
    keys: dict[str, str], make: object, reason: str
) -> None:
    assert callable(make)
    with pytest.raises(ValueError, match=f"^public_key: .*({reason})"):
        sshd.validate_public_key(make(keys))


def test_key_options_allow_each_port_on_loopback_and_the_home_s_command_only() -> None:
    assert sshd.key_options([2201, 2200, 2201], "home02_alice", "exec /bin/sleep 1") == (
        'restrict,pty,port-forwarding,permitlisten="127.0.0.1:2200",'
        'permitlisten="127.0.0.1:2201",environment="CLOUDATHOME_HOME=home02_alice",'
        'command="exec /bin/sleep 1"'
    )


@pytest.mark.parametrize("ports", [[], [True], ["2200"], [80], [70000], "2200", [2200.0]])
def test_key_options_reject_anything_but_unprivileged_port_numbers(ports: object) -> None:
    with pytest.raises(ValueError, match=r"^ports: "):
        sshd.key_options(ports, "home02_alice", "true")  # type: ignore[arg-type]


def test_the_forced_command_fits_a_key_line_and_sshd_config(tmp_path: Path) -> None:
    command = sshd.forced_command(Path("/srv/cah/ssh/sessions"))
    assert '"' not in command and "\n" not in command
    assert "/srv/cah/ssh/sessions/$CLOUDATHOME_HOME/*" in command
    with pytest.raises(ValueError, match=r"^command: "):
        sshd.key_options([2200], "home02_alice", 'echo "x"')


def test_key_line_puts_options_key_and_the_home_s_tag_in_that_order(
    keys: dict[str, str],
) -> None:
    key_type, data, _ = keys["ed25519"].split()
    line = sshd.key_line(keys["ed25519"], [2200], "home02_alice", "true")
    options = sshd.key_options([2200], "home02_alice", "true")
    assert line == f"{options} {key_type} {data} cloudathome:home02_alice"


@pytest.mark.parametrize("home", ['a"b', "a b", "x\ny", "a,command=sh", "Home02"])
def test_key_line_rejects_a_home_name_that_could_break_the_line(
    keys: dict[str, str], home: str
) -> None:
    with pytest.raises(ValueError, match=r"^home: "):
        sshd.key_line(keys["ed25519"], [2200], home, "true")


@pytest.mark.parametrize(
    ("changes", "field_name"),
    [
        ({"state_dir": Path("relative/state")}, "state_dir"),
        ({"state_dir": Path("/srv/my state")}, "state_dir"),
        ({"state_dir": Path("/srv/%u")}, "state_dir"),
        ({"state_dir": Path('/srv/"x')}, "state_dir"),
        ({"listen": "example.com"}, "listen"),
        ({"port": 0}, "port"),
        ({"mode": "single-account"}, "account"),
        ({"mode": "single-account", "account": "Bad Name"}, "account"),
        ({"group": "root;x"}, "group"),
        ({"uid_range": (60000, 70000)}, "uid_range"),
        ({"uid_range": (0, 10)}, "uid_range"),
        ({"mode": "other"}, "mode"),
    ],
)
def test_sshd_config_names_the_field_it_rejects(changes: dict, field_name: str) -> None:
    settings = {"state_dir": Path("/srv/cloudathome"), **changes}
    with pytest.raises(ValueError, match=f"^{field_name}: "):
        sshd.SshdConfig(**settings)


def test_config_listens_on_ipv6_in_brackets_and_lets_in_only_the_service_account() -> None:
    cfg = sshd.SshdConfig(
        Path("/srv/cah"), mode="single-account", account="cloudathome", listen="::1", port=2022
    )
    lines = sshd.render_config(cfg).splitlines()
    assert "ListenAddress [::1]:2022" in lines
    assert "AllowUsers cloudathome" in lines
    assert "Match User cloudathome" in lines
    assert "AuthorizedKeysFile /srv/cah/ssh/keys/%u" in lines
    assert not any(line.startswith("Subsystem") for line in lines)


def test_accounts_validate_the_username_before_touching_anything(tmp_path: Path) -> None:
    cfg = sshd.SshdConfig(tmp_path / "state", mode="single-account", account="cloudathome")
    with pytest.raises(ValueError, match=r"^username: "):
        sshd.accounts_for(cfg).install("Home 02", "ssh-ed25519 AAAA", [2200])
    assert not (tmp_path / "state").exists()


def test_prepare_refuses_a_state_dir_below_world_writable_tmp(tmp_path: Path) -> None:
    cfg = sshd.SshdConfig(tmp_path / "state")
    with pytest.raises(ValueError, match=r"^state_dir: /tmp is writable by others"):
        sshd.prepare(cfg)


def test_check_config_reports_what_sshd_rejects(tmp_path: Path) -> None:
    cfg = sshd.SshdConfig(tmp_path / "state", listen="127.0.0.1")
    cfg.ssh_dir.mkdir(parents=True)
    cfg.config_path.write_text(sshd.render_config(cfg))  # no host keys generated
    with pytest.raises(RuntimeError, match="no hostkeys available"):
        sshd.check_config(cfg)


# --- the newest connection of a home wins -----------------------------------------------------


@contextlib.contextmanager
def takeover(edge: Edge, home: Home) -> Iterator[subprocess.Popen]:
    """The home's master connection: a PTY session asking for the takeover, no forward yet."""
    log = edge.tmp / f"takeover-{secrets.token_hex(3)}.log"
    before = sleeps_of(home.uid)
    with running([*edge.ssh(home, "-tt"), sshd.TAKEOVER], log=log) as proc:
        wait_for(lambda: sleeps_of(home.uid) - before, timeout=20, what="the takeover's sleep")
        yield proc


def test_a_takeover_ends_the_older_sessions_of_its_home_and_no_other(edge: Edge) -> None:
    port, other = edge.alice.ports[0], edge.bob.ports[0]
    with (
        tunnel_up(edge, edge.alice, port) as old,
        tunnel_up(edge, edge.bob, other) as bobs,
        takeover(edge, edge.alice) as new,
    ):
        # The older session's sshd is gone: its listener is freed, its client told.
        wait_for(lambda: old.poll() is not None, timeout=10, what="the older session's end")
        wait_for(lambda: not listening(port), timeout=5, what="the freed port")
        # Another home's session (the same account in single-account mode) lives on.
        assert bobs.poll() is None and listening(other)
        # And the home's own port is free for its newest connection at once.
        with tunnel_up(edge, edge.alice, port):
            assert new.poll() is None
        # Another home's takeover ends only that home's sessions.
        with takeover(edge, edge.bob):
            wait_for(lambda: bobs.poll() is not None, timeout=10, what="bob's older session")
            time.sleep(1)  # room for a wrong kill to land
            assert new.poll() is None
