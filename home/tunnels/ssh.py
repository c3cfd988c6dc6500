"""The one door to the home's `ssh -R` tunnel processes: building their command line from
validated fields, spawning them detached, recognising them again by PID and start time,
stopping them, and reading why they failed from their log.

Requires OpenSSH >= 8.5 on the home (LogVerbose) and Linux >= 5.3 (pidfd)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import select
import stat
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from random import SystemRandom

from workers.common.processes import stop_process

SSH = "ssh"
REMOTE_BIND = "127.0.0.1"  # the cloud's permitlisten matches exactly "127.0.0.1:<port>"
MARKER = "==> cloudathome:"  # starts the section of the log that one spawn owns
LOG_TAIL_BYTES = 64 * 1024

# LogVerbose forces just the debug line saying the server accepted (or refused) the forward,
# which is how wait_ready knows; `ssh -v` would also log ~550 bytes per forwarded
# connection, in the data path, for the tunnel's whole life.
READY_LOG_FUNCTION = "ssh.c:ssh_confirm_remote_forward():*"
ALIVE_INTERVAL = 4  # seconds between keepalive probes inside the SSH connection
ALIVE_COUNT = 3  # unanswered probes before ssh gives the connection up
TAKEOVER = "takeover"  # the cloud's forced command: the newest connection of a home wins
SESSION_READY = "cloudathome: session ready"  # the forced command's line once it holds its slot
CONTROL_PATH_MAX = 107 - 17  # sun_path minus the NUL and ssh's ".<16 chars>" bind suffix

_USERNAME_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
# Paths go into -o values, which ssh splits on whitespace and expands (%x, ${VAR}, ~).
_PATH_RE = re.compile(r"^/[A-Za-z0-9._/+@-]*$")
# The prefix LogVerbose puts before a forced line: "ssh.c:func():123 (pid=45): ".
_TAG_RE = re.compile(r"^(?:debug\d: )?[\w.-]+\.c:\w+\(\):\d+(?: \([^)]*\))?: ")
_NOISE = (
    MARKER,
    SESSION_READY,
    "muxclient: master forward request failed",  # after the master's reason: that one counts
    "debug",
    "Authenticated to ",
    "remote forward success for:",
    "Could not chdir to home directory",  # printed by the server through the PTY
    "Warning: Permanently added",
    "Pseudo-terminal will not be allocated",
    "Transferred: ",
    "Bytes per second",
)

_random = SystemRandom()


@dataclass(frozen=True)
class TunnelSpec:
    host: str
    port: int
    username: str
    private_key: Path
    known_hosts: Path
    remote_port: int
    local_port: int
    local_host: str = "127.0.0.1"


@dataclass(frozen=True)
class ProcessHandle:
    """What the caller stores: a PID alone could be recycled; PID + start time cannot."""

    pid: int
    start_time: int  # field 22 of /proc/<pid>/stat: clock ticks since boot

    def __post_init__(self) -> None:
        # pid <= 0 means "a process group" or "everyone" to kill(2): never let one exist.
        if not _is_int(self.pid) or self.pid <= 0:
            raise ValueError(f"pid: {self.pid!r} is not a positive integer")
        if not _is_int(self.start_time) or self.start_time < 0:
            raise ValueError(f"start_time: {self.start_time!r} is not a non-negative integer")


# --- command line ---------------------------------------------------------------------------


def argv(spec: TunnelSpec) -> list[str]:
    """The ssh command line of a tunnel; every field is validated first (ValueError)."""
    forward = Forward(spec.remote_port, spec.local_port, spec.local_host)
    options = [
        *_connection_options(spec.host, spec.port, spec.private_key, spec.known_hosts),
        ("-o", "ExitOnForwardFailure=yes"),
        ("-o", f"LogVerbose={READY_LOG_FUNCTION}"),
        ("-R", _forward_text(forward)),
    ]
    return [SSH, "-tt", *_flat(options), _destination(spec.username, spec.host)]


@dataclass(frozen=True)
class MasterSpec:
    """The home's one SSH connection to the cloud: every forward of the home rides on it,
    added and cancelled at run time through its control socket (`control_path`)."""

    host: str
    port: int
    username: str
    private_key: Path
    known_hosts: Path
    control_path: Path
    # The local address to connect from (a multi-homed home; the benchmark's many homes);
    # None: the kernel's choice.
    bind_address: str | None = None


@dataclass(frozen=True)
class Forward:
    """One remote forward: the cloud's 127.0.0.1:<remote_port> to local_host:local_port."""

    remote_port: int
    local_port: int
    local_host: str = "127.0.0.1"


def master_argv(spec: MasterSpec, takeover: bool = False) -> list[str]:
    """The command line of the home's master connection: no forward of its own, a control
    socket at `spec.control_path` (created 0600 by ssh). With `takeover`, the cloud ends this
    home's older sessions first: asked for once a forward was refused because an older
    session still holds its port (docs/decisions.md). Every field is validated first
    (ValueError naming it)."""
    control = _check_control_path(spec.control_path)
    options = [
        *_connection_options(spec.host, spec.port, spec.private_key, spec.known_hosts),
        # Forwards come later through the socket; one the cloud refuses must fail that
        # `-O forward` only, never end the connection every other forward rides on.
        ("-o", "ExitOnForwardFailure=no"),
        ("-o", "ControlMaster=yes"),
        ("-o", "ControlPersist=no"),  # the master lives exactly as long as the connection
        ("-S", control),
        *_bind_options(spec.bind_address),
    ]
    # The remote command is all the forced command reads of it: "takeover" asks the cloud to
    # end this home's older sessions, so the ports a dead connection still holds come free.
    destination = _destination(spec.username, spec.host)
    return [SSH, "-tt", *_flat(options), destination, *([TAKEOVER] if takeover else [])]


def _bind_options(address: str | None) -> list[tuple[str, str]]:
    if address is None:
        return []
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise ValueError(f"bind_address: {address!r} is not an IP address") from None
    return [("-o", f"BindAddress={address}")]


def forward_argv(spec: MasterSpec, *forwards: Forward) -> list[str]:
    """`ssh -O forward`: ask the running master to open more remote forwards, all in one
    control command (one process however many: a home coming back after a drop asks for all
    of its forwards at once). Exits 0 once the cloud accepted every one (or the master
    already holds exactly that forward), 255 with the cloud's refusal on stderr otherwise
    (the others asked may be open then); the master and its other forwards are untouched."""
    if not forwards:
        raise ValueError("forwards: at least one is required")
    return _control_argv(spec, "forward", *forwards)


def cancel_argv(spec: MasterSpec, forward: Forward) -> list[str]:
    """`ssh -O cancel`: close one remote forward of the running master (its cloud port is
    freed), the others untouched. The forward must be given exactly as it was added."""
    return _control_argv(spec, "cancel", forward)


def check_argv(spec: MasterSpec) -> list[str]:
    """`ssh -O check`: exits 0 while the master answers on its control socket."""
    return _control_argv(spec, "check")


def exit_argv(spec: MasterSpec) -> list[str]:
    """`ssh -O exit`: ask the master to close the connection (every forward with it)."""
    return _control_argv(spec, "exit")


def _control_argv(spec: MasterSpec, command: str, *forwards: Forward) -> list[str]:
    control = _check_control_path(spec.control_path)
    _check_host("host", spec.host)
    extra = [arg for forward in forwards for arg in ("-R", _forward_text(forward))]
    # -F /dev/null: no ~/.ssh/config may redirect the socket or add options; the destination
    # is only syntax for a control command (the master's connection is already made).
    return [
        SSH,
        "-F",
        "/dev/null",
        "-o",
        "BatchMode=yes",
        "-S",
        control,
        "-O",
        command,
        *extra,
        _destination(spec.username, spec.host),
    ]


def _connection_options(
    host: str, port: int, private_key: Path, known_hosts: Path
) -> list[tuple[str, str]]:
    """(flag, value) pairs in the order ssh gets them; running_as() matches the exact argv."""
    _check_host("host", host)
    _check_port("port", port)
    key = _check_path("private_key", private_key)
    pinned = _check_path("known_hosts", known_hosts)
    return [
        ("-F", "/dev/null"),
        ("-o", "BatchMode=yes"),
        ("-o", "StrictHostKeyChecking=yes"),
        ("-o", f"UserKnownHostsFile={pinned}"),
        # Only the pinned key counts: a key for this host in /etc/ssh/ssh_known_hosts would
        # be accepted too, and ssh must not rewrite the pin.
        ("-o", "GlobalKnownHostsFile=/dev/null"),
        ("-o", "UpdateHostKeys=no"),
        ("-o", "IdentitiesOnly=yes"),
        ("-o", "IdentityAgent=none"),
        ("-i", key),
        # A dead network (no FIN, no RST) is noticed after 3 unanswered probes 4 s apart:
        # ssh exits within ~12-16 s and the supervisor connects again.
        ("-o", f"ServerAliveInterval={ALIVE_INTERVAL}"),
        ("-o", f"ServerAliveCountMax={ALIVE_COUNT}"),
        ("-o", "TCPKeepAlive=no"),  # the kernel's 2 h keepalive only adds noise
        ("-o", "ConnectTimeout=10"),
        ("-o", "Ciphers=aes128-gcm@openssh.com,chacha20-poly1305@openssh.com"),
        ("-o", "KexAlgorithms=curve25519-sha256,curve25519-sha256@libssh.org"),
        ("-o", "LogLevel=VERBOSE"),
        ("-p", str(port)),
    ]


def _forward_text(forward: Forward) -> str:
    _check_host("local_host", forward.local_host)
    _check_port("remote_port", forward.remote_port)
    _check_port("local_port", forward.local_port)
    local_host = f"[{forward.local_host}]" if ":" in forward.local_host else forward.local_host
    return f"{REMOTE_BIND}:{forward.remote_port}:{local_host}:{forward.local_port}"


def _destination(username: object, host: str) -> str:
    if not isinstance(username, str) or not _USERNAME_RE.match(username):
        raise ValueError(
            f"username: {username!r} must match {_USERNAME_RE.pattern} (a system user name)"
        )
    return f"{username}@{host}"


def _flat(options: list[tuple[str, str]]) -> list[str]:
    # -tt (given by the callers): the PTY session is what makes sshd set TCP_NODELAY
    # (docs/architecture.md, the data path).
    return [arg for pair in options for arg in pair]


def _check_control_path(value: object) -> str:
    text = _check_path("control_path", value)
    # ssh binds "<path>.<16 random chars>" first, then renames it: sun_path holds 108 bytes.
    if len(text.encode()) > CONTROL_PATH_MAX:
        raise ValueError(
            f"control_path: {value!r} is longer than {CONTROL_PATH_MAX} bytes "
            "(a unix socket path, with the suffix ssh adds while binding it)"
        )
    return text


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_port(field: str, value: object) -> None:
    if not (isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535):
        raise ValueError(f"{field}: {value!r} is not a TCP port (1-65535)")


def _check_host(field: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{field}: {value!r} is not a hostname or IP address")
    if "%" not in value:  # a zone id would reach ssh's %-expansion
        try:
            ipaddress.ip_address(value)
            return
        except ValueError:
            pass
    name = value.removesuffix(".")
    if len(name) > 253 or not all(_LABEL_RE.match(label) for label in name.split(".")):
        raise ValueError(f"{field}: {value!r} is not a hostname or IP address")


def _check_path(field: str, value: object) -> str:
    text = str(value) if isinstance(value, (str, os.PathLike)) else ""
    if not _PATH_RE.match(text):
        raise ValueError(
            f"{field}: {value!r} must be an absolute path of letters, digits and ._/+@- "
            "(ssh splits and expands other characters)"
        )
    return text


# --- processes ------------------------------------------------------------------------------


def spawn(spec: TunnelSpec, log_path: Path) -> ProcessHandle:
    """Start the tunnel's ssh in a session of its own (so it outlives the worker that
    started it), output appended to `log_path` (0600). Returns at once: follow with
    wait_ready(). The caller stores the handle; no Popen object is the source of truth."""
    route = f"{REMOTE_BIND}:{spec.remote_port} -> {spec.local_host}:{spec.local_port}"
    return _spawn(argv(spec), log_path, f"ssh {spec.username}@{spec.host}:{spec.port} -R {route}")


def spawn_master(spec: MasterSpec, log_path: Path, takeover: bool = False) -> ProcessHandle:
    """Start the home's master connection like spawn() a tunnel; follow with master_ready().
    The control socket's folder is made 0700 first (ssh creates the socket 0600 in it)."""
    command = master_argv(spec, takeover)
    private_folder(spec.control_path.parent)
    spec.control_path.unlink(missing_ok=True)  # a dead master's socket; ssh will not replace it
    return _spawn(command, log_path, f"ssh {spec.username}@{spec.host}:{spec.port} master")


def private_folder(folder: Path) -> None:
    """Make `folder` ours alone (0700), refusing one that is a symlink or another user's: the
    control socket's folder may sit in a shared temporary directory, where another local user
    could have made it first to read or replace the socket."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise ValueError(f"control_path: {folder} is not a folder of this user (uid {os.getuid()})")
    folder.chmod(0o700)


def _spawn(command: list[str], log_path: Path, what: str) -> ProcessHandle:
    log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        when = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        os.write(fd, f"{MARKER} {when} {what}\n".encode())
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=fd,
            start_new_session=True,
            close_fds=True,
            cwd="/",  # never pin the worker's directory for the tunnel's lifetime
            env=_child_env(),
        )
    finally:
        os.close(fd)
    # Nobody waits for the child yet, so /proc/<pid> exists even if ssh already died.
    start_time = start_time_of(proc.pid)
    # Reaping: while the worker that spawned it lives, ssh is its child and would stay a
    # zombie after exiting. A daemon thread blocked in wait() reaps it the moment it exits,
    # in whichever process spawned it; checking with waitpid(WNOHANG) instead would only
    # work in that same process, and the supervisor may run in another worker. If the
    # worker goes away first, ssh is re-parented and reaped by init.
    threading.Thread(target=proc.wait, name=f"ssh-reaper-{proc.pid}", daemon=True).start()
    if start_time is None:  # cannot happen for an unreaped child; keeps the type honest
        raise RuntimeError(f"ssh (pid {proc.pid}) vanished before it could be recorded")
    return ProcessHandle(pid=proc.pid, start_time=start_time)


def forward_add(spec: MasterSpec, *forwards: Forward, timeout: float = 15.0) -> str | None:
    """Open remote forwards on the running master, all in one control command: None once the
    cloud accepted every one (or the master already held it), else the reason ("remote port
    forwarding failed for listen port N", "Control socket connect(...): No such file or
    directory", a timeout)."""
    return _control(forward_argv(spec, *forwards), timeout)


def forward_cancel(spec: MasterSpec, forward: Forward, timeout: float = 15.0) -> str | None:
    """Close one remote forward of the running master: None when done, else the reason."""
    return _control(cancel_argv(spec, forward), timeout)


def master_alive(spec: MasterSpec, timeout: float = 5.0) -> bool:
    """Whether the master answers on its control socket."""
    return _control(check_argv(spec), timeout) is None


def _control(command: list[str], timeout: float) -> str | None:
    try:
        result = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd="/",
            env=_child_env(),
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout:g}s waiting for the master connection"
    if result.returncode == 0:
        return None
    reason = _last_meaningful(result.stderr.replace("\r", "").split("\n"))
    return reason or f"ssh -O exited with status {result.returncode}"


def master_ready(handle: ProcessHandle, log_path: Path, timeout: float = 15.0) -> str | None:
    """Wait until the cloud's forced command says the session holds its slot (after ending
    the home's older sessions, so their ports are free) or ssh has died. None when ready,
    else the reason from the log. On timeout the process is left running: the caller stops it."""
    return _wait_for_line(handle, log_path, SESSION_READY, timeout, "the master connection")


def running_as(spec: TunnelSpec) -> list[ProcessHandle]:
    """Processes running exactly this tunnel's command line. A worker killed between spawn()
    and recording the handle leaves such an ssh behind with no PID anywhere; the command
    line (this home's pinned known_hosts, this remote port) identifies it exactly."""
    wanted = ("\0".join(argv(spec)) + "\0").encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "cmdline").read_bytes() != wanted:
                continue
        except OSError:
            continue  # gone meanwhile, or not ours to read
        start_time = start_time_of(int(entry.name))
        if start_time is not None:
            found.append(ProcessHandle(pid=int(entry.name), start_time=start_time))
    return found


def _child_env() -> dict[str, str]:
    # The tunnel lives for weeks: it gets no copy of the worker's secrets (database URL,
    # tokens) and no agent socket.
    env = {"PATH": os.environ.get("PATH", os.defpath), "LC_ALL": "C"}
    if "HOME" in os.environ:
        env["HOME"] = os.environ["HOME"]
    return env


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, start time) from /proc/<pid>/stat, or None when there is no such process."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm (field 2) is in parentheses and may itself contain spaces and ')': the fields
    # after it start behind the LAST ')'.
    rest = data[data.rfind(b")") + 2 :].split()
    return rest[0].decode(), int(rest[19])  # field 3 (state) and field 22 (starttime)


def start_time_of(pid: int) -> int | None:
    """The start time of process `pid` in clock ticks since boot, None if there is none."""
    if not _is_int(pid) or pid <= 0:
        return None
    stat = _stat(pid)
    return None if stat is None else stat[1]


def is_running(handle: ProcessHandle) -> bool:
    """True only for the very process the handle was made for, alive (not a zombie): a
    recycled PID has another start time."""
    stat = _stat(handle.pid)
    return stat is not None and stat[1] == handle.start_time and stat[0] not in ("Z", "X", "x")


def stop(handle: ProcessHandle, timeout: float = 5) -> bool:
    """SIGTERM the handle's process, SIGKILL it after `timeout` seconds; returns whether it
    stopped something. A PID now used by another process is never signalled."""
    return stop_process(handle.pid, timeout=timeout, is_ours=lambda: is_running(handle))


def _pidfd_of(handle: ProcessHandle) -> int | None:
    """A pidfd for the handle's process, or None. The pidfd is taken BEFORE the start time
    is checked: if the check then passes, the fd refers to our process (it held the PID
    before and after), and signals through it cannot reach a later owner of the PID."""
    try:
        pidfd = os.pidfd_open(handle.pid)
    except ProcessLookupError:
        return None
    if not is_running(handle):
        os.close(pidfd)
        return None
    return pidfd


def _wait_exit(pidfd: int, timeout: float) -> bool:
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)  # readable once the process has terminated
    return bool(poller.poll(max(0.0, timeout) * 1000))


# --- readiness and errors -------------------------------------------------------------------


def wait_ready(
    spec: TunnelSpec, handle: ProcessHandle, log_path: Path, timeout: float = 15.0
) -> str | None:
    """Wait until the server has accepted the remote forward (ssh logs it, and is still
    running) or ssh has died. Returns None when established, else the reason, taken from
    the log ("Host key verification failed.", "Error: remote port forwarding failed for
    listen port N", ...). On timeout the process is left running: the caller stops it."""
    success = f"remote forward success for: listen {REMOTE_BIND}:{spec.remote_port},"
    return _wait_for_line(handle, log_path, success, timeout, "the tunnel")


def _wait_for_line(
    handle: ProcessHandle, log_path: Path, wanted: str, timeout: float, what: str
) -> str | None:
    deadline = time.monotonic() + timeout
    pidfd = _pidfd_of(handle)
    try:
        while True:
            lines = _section(log_path)
            if pidfd is None or not is_running(handle):
                # Dead: everything it wrote is in the log now; read it again to be sure.
                reason = _last_meaningful(_section(log_path))
                return reason or f"ssh exited before {what} was established (empty log)"
            if any(wanted in line for line in lines):
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                last = _last_meaningful(lines)
                return f"timed out after {timeout:g}s waiting for {what}" + (
                    f" (last message: {last})" if last else ""
                )
            # Wakes up at once when ssh exits; polls the log every 50 ms meanwhile.
            _wait_exit(pidfd, min(0.05, remaining))
    finally:
        if pidfd is not None:
            os.close(pidfd)


def last_error(log_path: Path) -> str | None:
    """The last meaningful line that the latest ssh wrote to `log_path`, if any."""
    return _last_meaningful(_section(log_path))


def _section(log_path: Path) -> list[str]:
    """The lines written since the latest spawn into this log (read from its tail)."""
    try:
        with open(log_path, "rb") as log:
            size = log.seek(0, os.SEEK_END)
            log.seek(max(0, size - LOG_TAIL_BYTES))
            data = log.read()
    except FileNotFoundError:
        return []
    lines = data.decode("utf-8", "replace").replace("\r", "").split("\n")
    for index in range(len(lines) - 1, -1, -1):
        if lines[index].startswith(MARKER):
            return lines[index + 1 :]
    return lines


def _last_meaningful(lines: list[str]) -> str | None:
    for raw in reversed(lines):
        line = _TAG_RE.sub("", raw.strip())
        if line and not line.startswith(_NOISE) and not line.startswith("@"):
            return line
    return None


# --- backoff --------------------------------------------------------------------------------


def next_delay(failures: int, base: float = 1.0, cap: float = 60.0) -> float:
    """Seconds to wait before retry number `failures` (0 = first): "full jitter", uniform in
    [0, min(cap, base * 2**failures)], so homes that lost the cloud together do not come
    back together (sshd's MaxStartups drops bursts)."""
    if not _is_int(failures) or failures < 0:
        raise ValueError(f"failures: {failures!r} is not a non-negative integer")
    if base <= 0 or cap < 0:
        raise ValueError(f"base and cap must be positive (got base={base}, cap={cap})")
    ceiling = cap if failures >= 64 else min(cap, base * 2.0**failures)
    return _random.uniform(0.0, ceiling)
