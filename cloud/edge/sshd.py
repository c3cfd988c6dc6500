"""Our own OpenSSH sshd, the cloud end of every home's `ssh -R` tunnel: its config, host keys,
and the home accounts and key lines that confine each home to remote-forwarding its own ports.

Adding, changing or removing a home only rewrites key files; sshd is never reloaded for it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import grp
import hashlib
import ipaddress
import os
import pwd
import re
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from workers.common.files import fsync_dir, symlink_atomic, write_atomic
from workers.common.processes import stop_user_processes

# Names the home a session belongs to in its forced command; the only variable sshd takes from
# a key line (PermitUserEnvironment), and no client can send it (no AcceptEnv).
HOME_VARIABLE = "CLOUDATHOME_HOME"
CIPHERS = ("aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com")
SSHD_BINARY = "/usr/sbin/sshd"
# sshd names its PAM service after argv[0]; running it through a link of this name keeps
# Debian's /etc/pam.d/sshd (pam_motd, pam_systemd, ...) away from tunnel logins.
SSHD_LINK_NAME = "cloudathome-sshd"
PRIVSEP_DIR = Path("/run/sshd")  # Debian's sshd refuses to start as root without it
HOME_SHELL = "/bin/sh"  # ForceCommand runs through the account's shell
HOME_DIR = "/"  # exists everywhere, root-owned: a home has nothing to write or read there
# The UIDs of homes' system users: a range of their own, since `useradd --system` ran out of
# UIDs after 882 homes (docs/architecture.md, the data path).
HOME_UID_RANGE = (62000, 62999)
TAG_PREFIX = "cloudathome:"

MAX_KEY_TEXT = 16 * 1024
MIN_RSA_BITS = 3072
MAX_RSA_BITS = 16384
MAX_PORTS = 1000
KEY_TYPES = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
_NAME_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
# Anything else could end a token or start an sshd_config / AuthorizedKeysFile expansion.
_PATH_RE = re.compile(r"/[A-Za-z0-9_./+-]*")

# useradd exit codes (shadow-utils)
_USERADD_UID_IN_USE = 4
_USERADD_NAME_IN_USE = 9
_GROUPADD_NAME_IN_USE = 9
_USERDEL_NO_USER = 6
_USERDEL_BUSY = 8

Mode = Literal["system-users", "single-account"]

_HOST_KEY_GENERATORS: tuple[Callable[[], ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey], ...] = (
    ed25519.Ed25519PrivateKey.generate,
    lambda: rsa.generate_private_key(public_exponent=65537, key_size=3072),
)


# --- keys ---------------------------------------------------------------------------------


def _read_string(blob: bytes, offset: int) -> tuple[bytes, int]:
    if offset + 4 > len(blob):
        raise ValueError("key data is truncated")
    size = int.from_bytes(blob[offset : offset + 4], "big")
    end = offset + 4 + size
    if end > len(blob):
        raise ValueError("key data is truncated")
    return blob[offset + 4 : end], end


def validate_public_key(text: str) -> str:
    """Check one OpenSSH public key line and return it as "type base64" (comment dropped)."""
    if not isinstance(text, str):
        raise ValueError("public_key: must be text")
    if len(text) > MAX_KEY_TEXT:
        raise ValueError(f"public_key: longer than {MAX_KEY_TEXT} characters")
    line = text.strip()
    if not line:
        raise ValueError("public_key: is empty")
    if "\n" in line or "\r" in line:
        raise ValueError("public_key: must be a single line holding one key")
    if any(not ch.isprintable() and ch != "\t" for ch in line):
        raise ValueError("public_key: contains control characters")
    fields = line.split()
    key_type = fields[0]
    if key_type not in KEY_TYPES:
        if key_type == "ssh-dss":
            raise ValueError("public_key: DSA keys are not accepted")
        raise ValueError(
            "public_key: must start with a key type ("
            + ", ".join(KEY_TYPES)
            + "); options or other text before it are not accepted"
        )
    if len(fields) < 2:
        raise ValueError("public_key: the base64 key data is missing")
    if any(field in KEY_TYPES for field in fields[2:]):
        raise ValueError("public_key: holds more than one key")
    try:
        blob = binascii.a2b_base64(fields[1], strict_mode=True)
    except binascii.Error:
        raise ValueError("public_key: key data is not valid base64") from None
    try:
        inner_type, _ = _read_string(blob, 0)
    except ValueError as exc:
        raise ValueError(f"public_key: {exc}") from None
    if inner_type != key_type.encode():
        raise ValueError(
            f"public_key: key data is of type {inner_type[:64]!r}, the line says {key_type}"
        )
    canonical = base64.b64encode(blob).decode()
    key: object = None
    try:
        if key_type == "sk-ecdsa-sha2-nistp256@openssh.com":
            _check_sk_ecdsa(blob)
        else:
            # Parses every field and rejects trailing bytes and points off the curve.
            key = serialization.load_ssh_public_key(f"{key_type} {canonical}".encode())
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"public_key: key data is malformed ({exc})") from None
    if isinstance(key, rsa.RSAPublicKey) and not MIN_RSA_BITS <= key.key_size <= MAX_RSA_BITS:
        raise ValueError(
            f"public_key: RSA keys must have {MIN_RSA_BITS} to {MAX_RSA_BITS} bits,"
            f" this one has {key.key_size}"
        )
    return f"{key_type} {canonical}"


def _check_sk_ecdsa(blob: bytes) -> None:
    # The one accepted type cryptography does not parse.
    _, offset = _read_string(blob, 0)
    curve, offset = _read_string(blob, offset)
    point, offset = _read_string(blob, offset)
    _application, offset = _read_string(blob, offset)
    if curve != b"nistp256" or offset != len(blob):
        raise ValueError("unexpected curve or trailing data")
    ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)


def _validate_ports(ports: Sequence[int]) -> list[int]:
    if isinstance(ports, str | bytes) or not isinstance(ports, Sequence):
        raise ValueError("ports: must be a sequence of port numbers")
    result: set[int] = set()
    for port in ports:
        # bool is an int; True would become port 1.
        if type(port) is not int or not 1024 <= port <= 65535:
            raise ValueError(f"ports: {port!r} is not a port number in 1024..65535")
        result.add(port)
    if not result:
        raise ValueError("ports: at least one port is required")
    if len(result) > MAX_PORTS:
        raise ValueError(f"ports: more than {MAX_PORTS} ports")
    return sorted(result)


TAKEOVER = "takeover"  # what a home's master asks for: the newest connection of a home wins
READY_LINE = "cloudathome: session ready"  # printed once the session holds its slot


def forced_command(sessions_dir: Path) -> str:
    """The only command a home's session runs: take one of the home's session slots and block.

    The data path (docs/architecture.md): a PTY session whose command only blocks makes sshd set TCP_NODELAY on
    the connection. The `[ -t 0 ]` guard stops a PTY-less session from leaking its sleep to
    init, and `exec` keeps dash from lingering as an extra process. OpenSSH has no limit on a
    user's sessions, so each home has a fixed set of slot files: the sleep inherits the flock
    on the first free one, which the kernel releases when the session ends however it ends;
    with none free the session ends at once and so does the client. No double quote, so the
    same text fits a key line's command="...".

    A session that asks for `takeover` (the home's master connection) first ends the home's
    older sessions: exactly the processes holding one of THIS home's slot files on fd 9 (the
    sleeps of its sessions; the folder is named by the key line, never by the client), and
    their parent, that session's sshd, whose end frees the session's listeners at once
    (docs/decisions.md, the newest connection of a home wins). The slots those free are
    taken on the next rounds (ten, 0.2 s apart). Holding its slot, the session says so
    (READY_LINE): the home knows its older sessions are gone and its ports free.
    """
    home = "$" + HOME_VARIABLE
    slots = f"{sessions_dir}/{home}"
    # `[ a -ef b ]` (same file) is a builtin of dash: no process per candidate, where a
    # readlink per process of the account was ~5 ms each (a second per takeover in
    # single-account mode at 1,000 homes).
    evict = (
        f"case $SSH_ORIGINAL_COMMAND in {TAKEOVER}) take=1; "
        "for fd in /proc/[0-9]*/fd/9; do "
        f"for slot in {slots}/*; do [ $fd -ef $slot ] || continue; "
        "pid=${fd#/proc/}; pid=${pid%%/*}; read -r _ _ _ ppid _ < /proc/$pid/stat; "
        "[ $pid != $$ ] && kill -KILL $pid 2>/dev/null; "
        "[ $ppid != $PPID ] && [ $ppid -gt 1 ] && kill -KILL $ppid 2>/dev/null; "
        "break; done; done;; esac; "
    )
    return (
        f"[ -t 0 ] && [ x{home} != x ] || exit 1; take=; {evict}"
        "for round in 1 2 3 4 5 6 7 8 9 10; do "
        f"for slot in {slots}/*; do exec 9<$slot; "
        f"flock -n 9 && {{ echo {READY_LINE}; exec /bin/sleep infinity; }}; done; "
        "[ x$take = x1 ] || break; sleep 0.2; done; "
        f"echo cloudathome: {home} already holds every session it may >&2; exit 1"
    )


def key_options(ports: Sequence[int], home: str, command: str) -> str:
    """authorized_keys options letting a key do one thing: remote-forward 127.0.0.1:<ports>,
    inside a session of `command` that knows it belongs to `home`."""
    # permitlisten compares the host as a string: clients must request exactly 127.0.0.1.
    listens = ",".join(f'permitlisten="127.0.0.1:{port}"' for port in _validate_ports(ports))
    name = validate_username(home, "home")
    if '"' in command:
        raise ValueError("command: must not contain a double quote")
    return (
        f"restrict,pty,port-forwarding,{listens},"
        f'environment="{HOME_VARIABLE}={name}",command="{command}"'
    )


def key_line(public_key: str, ports: Sequence[int], home: str, command: str) -> str:
    """One authorized_keys line: options, the validated key, then the home's tag."""
    parts = [key_options(ports, home, command), validate_public_key(public_key)]
    return " ".join([*parts, TAG_PREFIX + home])


def validate_username(name: str, field: str = "username") -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError(f"{field}: must match ^[a-z_][a-z0-9_-]{{0,31}}$, got {name!r}")
    return name


# --- the sshd instance --------------------------------------------------------------------


@dataclass(frozen=True)
class SshdConfig:
    """Where our sshd keeps its files and how homes map onto system accounts."""

    state_dir: Path
    mode: Mode = "system-users"
    port: int = 8022
    # Homes reach it from the internet; HAProxy and the forwards stay on loopback.
    listen: str = "0.0.0.0"  # noqa: S104
    # single-account: the service account every home logs in as.
    account: str | None = None
    # system-users: UIDs and primary group reserved for homes; nothing else is ever touched.
    # Each site its own group (homes_group), so sites sharing a machine never let each
    # other's homes into their sshd (AllowGroups).
    uid_range: tuple[int, int] = HOME_UID_RANGE
    group: str = "cloudathome-homes"
    # None: PAM only when sshd does not run as root (see pam_enabled).
    use_pam: bool | None = None
    # Unauthenticated connections: at most this many at once from one source (an IPv4 address
    # or IPv6 /64), each for at most login_grace_s; max_startups from all sources together,
    # sshd dropping 30% of new ones from half of it on (a reconnect storm of every home).
    source_startups: int = 20
    login_grace_s: int = 20
    max_startups: int = 400
    # Concurrent sessions (so connections: one each) of one home: enough for one tunnel per
    # port, twice over while the stale sessions of a dead network are being dropped.
    home_sessions: int = 20

    def __post_init__(self) -> None:
        for name in ("source_startups", "login_grace_s", "max_startups", "home_sessions"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"{name}: must be a positive integer, got {value!r}")
        if self.max_startups < 2:
            raise ValueError("max_startups: must be at least 2")
        state = Path(self.state_dir)
        object.__setattr__(self, "state_dir", state)
        if not state.is_absolute() or not _PATH_RE.fullmatch(str(state)):
            raise ValueError(
                "state_dir: must be an absolute path of letters, digits and _./+- only"
                f" (it goes into sshd_config), got {str(state)!r}"
            )
        if self.mode not in ("system-users", "single-account"):
            raise ValueError(f"mode: must be system-users or single-account, got {self.mode!r}")
        if type(self.port) is not int or not 1 <= self.port <= 65535:
            raise ValueError(f"port: must be a port number, got {self.port!r}")
        try:
            ipaddress.ip_address(self.listen)
        except ValueError:
            raise ValueError(f"listen: must be an IP address, got {self.listen!r}") from None
        if self.mode == "single-account":
            if self.account is None:
                raise ValueError("account: required in single-account mode")
            validate_username(self.account, "account")
        validate_username(self.group, "group")
        low, high = self.uid_range
        if not (type(low) is int and type(high) is int and 1000 <= low <= high < 2**31):
            raise ValueError(f"uid_range: must be two UIDs 1000 <= low <= high, got {low}, {high}")
        if low <= 65534 <= high or low <= 65535 <= high:
            raise ValueError("uid_range: must not include 65534/65535 (nobody, invalid)")

    @property
    def ssh_dir(self) -> Path:
        return self.state_dir / "ssh"

    @property
    def keys_dir(self) -> Path:
        return self.ssh_dir / "keys"

    @property
    def config_path(self) -> Path:
        return self.ssh_dir / "sshd_config"

    @property
    def pid_file(self) -> Path:
        return self.ssh_dir / "sshd.pid"

    @property
    def host_keys(self) -> tuple[Path, Path]:
        return (self.ssh_dir / "ssh_host_ed25519_key", self.ssh_dir / "ssh_host_rsa_key")

    @property
    def sshd_link(self) -> Path:
        return self.ssh_dir / SSHD_LINK_NAME

    @property
    def sessions_dir(self) -> Path:
        """One folder of session slot files per home (forced_command)."""
        return self.ssh_dir / "sessions"

    @property
    def forced_command(self) -> str:
        return forced_command(self.sessions_dir)

    def key_file(self, username: str) -> Path:
        return self.keys_dir / validate_username(username)

    def pam_enabled(self) -> bool:
        # As root, sshd checks the shadow entry itself (a "!" password means locked, hence
        # useradd --password "*"), and PAM would only add per-login work: session modules,
        # pam_systemd starting a user manager per home. Non-root sshd cannot read shadow
        # and calls every account locked without PAM.
        return self.use_pam if self.use_pam is not None else os.geteuid() != 0


def homes_group(user_prefix: str) -> str:
    """The system group of a site's homes, from its user prefix: `home` (the default) keeps
    the `cloudathome-homes` of earlier releases, `demo` gets `cloudathome-demos`."""
    return validate_username(f"cloudathome-{user_prefix}s", "group")


def render_config(cfg: SshdConfig) -> str:
    """Our sshd_config: everything forbidden, then one Match block opening the tunnel path."""
    address = ipaddress.ip_address(cfg.listen)
    listen = f"[{address}]:{cfg.port}" if address.version == 6 else f"{address}:{cfg.port}"
    if cfg.mode == "system-users":
        allow, match = f"AllowGroups {cfg.group}", f"Match Group {cfg.group}"
    else:
        allow, match = f"AllowUsers {cfg.account}", f"Match User {cfg.account}"
    ed25519, rsa_key = cfg.host_keys
    lines = [
        "# Written by cloudathome (cloud/edge/sshd.py) at every start; edits are lost.",
        f"ListenAddress {listen}",
        f"HostKey {ed25519}",
        f"HostKey {rsa_key}",
        f"PidFile {cfg.pid_file}",
        "LogLevel VERBOSE",
        f"UsePAM {'yes' if cfg.pam_enabled() else 'no'}",
        f"AuthorizedKeysFile {cfg.keys_dir}/%u",
        "AuthorizedKeysCommand none",
        "AuthorizedPrincipalsFile none",
        "AuthenticationMethods publickey",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "HostbasedAuthentication no",
        "GSSAPIAuthentication no",
        "PermitEmptyPasswords no",
        "PermitRootLogin no",
        "StrictModes yes",
        "IgnoreRhosts yes",
        "PermitUserRC no",
        "UseDNS no",
        "PrintMotd no",
        "PrintLastLog no",
        "Banner none",
        f"Ciphers {','.join(CIPHERS)}",
        # The default 10:30:100 dropped ~60% of 200 simultaneous reconnects (docs/architecture.md), and
        # silent connections from one source could take all of it: a cap per source, and a
        # short grace time, bound what any one address holds before authenticating.
        f"MaxStartups {cfg.max_startups // 2}:30:{cfg.max_startups}",
        f"PerSourceMaxStartups {cfg.source_startups}",
        "PerSourceNetBlockSize 32:64",
        f"LoginGraceTime {cfg.login_grace_s}",
        # One session per connection, counted per home by the forced command; a connection
        # that holds no channel at all (`ssh -N` without a forward in use) escapes that count,
        # so it is closed.
        "MaxSessions 1",
        "UnusedConnectionTimeout 10",
        f"PermitUserEnvironment {HOME_VARIABLE}",
        "MaxAuthTries 3",
        # A vanished client is dropped so its ports free up for the reconnect: in ~16 s, as
        # 9.2 probes only every 2 x 2 s (whole-second comparison) and gives up at probe 4.
        "ClientAliveInterval 2",
        "ClientAliveCountMax 3",
        "TCPKeepAlive yes",
        # No Subsystem line: no sftp server.
        allow,
        "PermitTTY no",
        "AllowTcpForwarding no",
        "PermitOpen none",
        "PermitListen none",
        "GatewayPorts no",
        "X11Forwarding no",
        "AllowAgentForwarding no",
        "AllowStreamLocalForwarding no",
        "PermitTunnel no",
        f"ForceCommand {cfg.forced_command}",
        # Each key line narrows this to its own ports (key_options).
        match,
        "    PermitTTY yes",
        "    AllowTcpForwarding remote",
        "    PermitListen 127.0.0.1:*",
        f"    ForceCommand {cfg.forced_command}",
        "",
    ]
    return "\n".join(lines)


def command(cfg: SshdConfig) -> list[str]:
    """argv running our sshd in the foreground, logging to stderr (run prepare() first)."""
    return [str(cfg.sshd_link), "-D", "-e", "-f", str(cfg.config_path)]


def prepare(cfg: SshdConfig) -> None:
    """Create the directories, host keys, config and sshd link; then check the config."""
    for directory in (cfg.state_dir, cfg.ssh_dir, cfg.keys_dir, cfg.sessions_dir):
        directory.mkdir(mode=0o711, parents=True, exist_ok=True)
    # sshd reads a home's key file with the home's UID (system-users) and refuses it under
    # any directory that is not root/owner-only writable (StrictModes), up to /: others may
    # traverse these folders (0711), never list them.
    for directory in (cfg.ssh_dir, cfg.keys_dir, cfg.sessions_dir):
        directory.chmod(0o711)
    _check_secure_dirs(cfg)
    ensure_host_keys(cfg)
    write_atomic(cfg.config_path, render_config(cfg), 0o600)
    link = cfg.sshd_link
    if not (link.is_symlink() and os.readlink(link) == SSHD_BINARY):
        symlink_atomic(SSHD_BINARY, link)
    if os.geteuid() == 0:
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    else:
        _check_pty_group()
    check_config(cfg)


def _check_pty_group() -> None:
    # A non-root sshd must find each new PTY already in group tty: it cannot chown it, and
    # treats that as fatal, so every tunnel session would die at login. Linux gives new PTYs
    # group tty only when devpts is mounted with gid=<tty> (systemd and Docker do so).
    try:
        tty_gid = grp.getgrnam("tty").gr_gid
    except KeyError:
        return  # sshd then leaves the PTY in the account's own group
    if tty_gid in os.getgroups() or os.getegid() == tty_gid:
        return
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[4] == "/dev/pts" and " - devpts " in line:
            options = line.split(" - ", 1)[1].split()[-1].split(",")
            if f"gid={tty_gid}" not in options:
                raise RuntimeError(
                    "/dev/pts is mounted without gid=" + str(tty_gid) + " (group tty):"
                    " a non-root sshd cannot hand out PTYs, so no tunnel could start."
                    f" Remount it with gid={tty_gid},mode=620 or run sshd as root."
                )


def _check_secure_dirs(cfg: SshdConfig) -> None:
    owners = {0}
    if cfg.mode == "single-account" and (entry := _getpwnam(str(cfg.account))):
        owners.add(entry.pw_uid)
    for directory in reversed((cfg.keys_dir, *cfg.keys_dir.parents)):  # outermost first
        st = directory.stat()
        if st.st_uid not in owners or st.st_mode & 0o022:
            raise ValueError(
                f"state_dir: {directory} is writable by others or owned by neither root nor"
                " the account; sshd (StrictModes) would refuse every key file below it"
            )
        if cfg.mode == "system-users" and not st.st_mode & 0o001:
            raise ValueError(
                f"state_dir: {directory} is not searchable by others;"
                " sshd reads a home's key file with the home's own UID"
            )


def check_config(cfg: SshdConfig) -> None:
    """Run `sshd -t` on our config; raise RuntimeError with sshd's complaint."""
    result = subprocess.run(
        [SSHD_BINARY, "-t", "-f", str(cfg.config_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"sshd -t rejected {cfg.config_path}: {result.stderr.strip()}")


def ensure_host_keys(cfg: SshdConfig) -> None:
    """Generate the ed25519 and RSA host keys once (private 0600); never replace them."""
    cfg.ssh_dir.mkdir(mode=0o711, parents=True, exist_ok=True)
    for path, generate in zip(cfg.host_keys, _HOST_KEY_GENERATORS, strict=True):
        if not path.exists():
            private = generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.OpenSSH,
                serialization.NoEncryption(),
            )
            # link() never replaces: when two runs race, both keep the first key.
            with contextlib.suppress(FileExistsError):
                write_atomic(path, private, 0o600, replace=False)
        os.chmod(path, 0o600)
        pub = path.with_name(path.name + ".pub")
        if not pub.exists():
            key = serialization.load_ssh_private_key(path.read_bytes(), password=None)
            line = key.public_key().public_bytes(
                serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
            )
            # Homes get the public key through the API; nobody reads the file but us.
            write_atomic(pub, line + b" cloudathome-edge\n", 0o600)


def host_key_line(cfg: SshdConfig) -> str:
    """The public ed25519 host key as "ssh-ed25519 <base64>", for homes to pin."""
    pub = cfg.host_keys[0].with_name(cfg.host_keys[0].name + ".pub")
    return validate_public_key(pub.read_text())


def host_key_fingerprint(cfg: SshdConfig) -> str:
    """The ed25519 host key's fingerprint as ssh-keygen -l and ssh print it: "SHA256:..."."""
    blob = base64.b64decode(host_key_line(cfg).split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


# --- files --------------------------------------------------------------------------------


@contextlib.contextmanager
def _keys_lock(cfg: SshdConfig) -> Iterator[None]:
    # Two workers changing homes at once must not lose each other's key lines or UIDs.
    # The name starts with a dot, so sshd can never take it for a user's key file.
    cfg.keys_dir.mkdir(mode=0o711, parents=True, exist_ok=True)
    fd = os.open(cfg.keys_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write_slots(cfg: SshdConfig, name: str) -> None:
    """Exactly cfg.home_sessions empty slot files for the home, root-owned and read-only to it:
    a session only needs a descriptor to flock, never to write."""
    folder = cfg.sessions_dir / validate_username(name)
    folder.mkdir(parents=True, exist_ok=True)
    # The home's user lists the folder and opens a slot to flock it (the forced command),
    # whatever the site's umask: 0755 and 0644 (the modes table).
    folder.chmod(0o755)
    wanted = {str(i) for i in range(1, cfg.home_sessions + 1)}
    for path in folder.iterdir():
        if path.name not in wanted:
            path.unlink()
    for slot in sorted(wanted - {p.name for p in folder.iterdir()}):
        (folder / slot).touch(mode=0o644)
        (folder / slot).chmod(0o644)


def _remove_slots(cfg: SshdConfig, name: str) -> None:
    # A live session keeps its descriptor (and lock) until it ends; nothing else needs the files.
    folder = cfg.sessions_dir / validate_username(name)
    if folder.is_dir():
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


# --- home accounts ------------------------------------------------------------------------


class Accounts(Protocol):
    """The homes our sshd lets in; every change only rewrites key files."""

    def install(self, username: str, public_key: str, ports: Sequence[int]) -> None:
        """Let `username`'s key in, limited to remote-forwarding 127.0.0.1:<ports>."""
        ...

    def remove(self, username: str) -> None:
        """Lock the home out (idempotent)."""
        ...

    def installed(self) -> set[str]:
        """Usernames of the homes currently known to sshd."""
        ...


class SystemUsers:
    """One system user per home (UID from cfg.uid_range, group cfg.group), key file of its own."""

    def __init__(self, cfg: SshdConfig) -> None:
        self.cfg = cfg

    def install(self, username: str, public_key: str, ports: Sequence[int]) -> None:
        name = validate_username(username)
        line = key_line(public_key, ports, name, self.cfg.forced_command)
        with _keys_lock(self.cfg):
            gid = self._ensure_group()
            existing = _getpwnam(name)
            if existing is None:
                self._create_user(name, gid)
            else:
                self._check_ours(existing, gid)
            # 0644: sshd reads key files as the login's user, not as their owner (the one
            # exception of the modes table; the single account's file likewise).
            _write_slots(self.cfg, name)
            write_atomic(self.cfg.key_file(name), line + "\n", 0o644)

    def remove(self, username: str) -> None:
        """Delete the key file, end the home's live sessions (its ports free up at once),
        then delete the user. Refuses a user that is not one of our homes."""
        name = validate_username(username)
        with _keys_lock(self.cfg):
            existing = _getpwnam(name)
            if existing is not None:
                self._check_ours(existing, _getgid(self.cfg.group))
            self.cfg.key_file(name).unlink(missing_ok=True)
            fsync_dir(self.cfg.keys_dir)
            _remove_slots(self.cfg, name)
            if existing is None:
                return
            for _attempt in range(3):
                # A live tunnel keeps the home's ports bound and makes userdel refuse. The
                # UID was checked to be a home of ours: all it runs are that home's sessions.
                stop_user_processes(existing.pw_uid)
                result = _run(["userdel", name])
                if result.returncode in (0, _USERDEL_NO_USER):
                    return
                if result.returncode != _USERDEL_BUSY:
                    break
            raise RuntimeError(f"userdel {name} failed: {result.stderr.strip()}")

    def installed(self) -> set[str]:
        names: set[str] = set()
        gid = _getgid(self.cfg.group)
        low, high = self.cfg.uid_range
        if gid is not None:
            names.update(
                entry.pw_name
                for entry in pwd.getpwall()
                if entry.pw_gid == gid and low <= entry.pw_uid <= high
            )
        if self.cfg.keys_dir.is_dir():
            names.update(p.name for p in self.cfg.keys_dir.iterdir() if _NAME_RE.fullmatch(p.name))
        return names

    def _check_ours(self, entry: pwd.struct_passwd, gid: int | None) -> None:
        low, high = self.cfg.uid_range
        if entry.pw_gid != gid or not low <= entry.pw_uid <= high:
            raise ValueError(
                f"username: {entry.pw_name} already exists and is not a home of ours"
                f" (UID {entry.pw_uid}; homes have group {self.cfg.group} and UIDs {low}-{high})"
            )

    def _ensure_group(self) -> int:
        gid = _getgid(self.cfg.group)
        if gid is None:
            result = _run(["groupadd", "--system", self.cfg.group])
            if result.returncode not in (0, _GROUPADD_NAME_IN_USE):
                raise RuntimeError(f"groupadd {self.cfg.group} failed: {result.stderr.strip()}")
            gid = _getgid(self.cfg.group)
            if gid is None:
                raise RuntimeError(f"group {self.cfg.group} is missing after groupadd")
        return gid

    def _create_user(self, name: str, gid: int) -> None:
        low, high = self.cfg.uid_range
        taken = {entry.pw_uid for entry in pwd.getpwall()}
        for uid in range(low, high + 1):
            if uid in taken:
                continue
            result = _run(
                [
                    "useradd",
                    "--system",
                    "--uid",
                    str(uid),
                    "--gid",
                    str(gid),
                    "--shell",
                    HOME_SHELL,
                    "--home-dir",
                    HOME_DIR,
                    "--no-create-home",
                    "--no-log-init",
                    # "*": no password can match, yet not "!" which sshd without PAM reads
                    # as a locked account.
                    "--password",
                    "*",
                    "--comment",
                    "cloudathome home",
                    name,
                ]
            )
            if result.returncode == 0:
                return
            if result.returncode == _USERADD_UID_IN_USE:  # another writer took it meanwhile
                continue
            if result.returncode == _USERADD_NAME_IN_USE and (entry := _getpwnam(name)):
                self._check_ours(entry, gid)
                return
            raise RuntimeError(f"useradd {name} failed: {result.stderr.strip()}")
        raise RuntimeError(f"uid_range: no free UID left in {low}-{high}")


class SingleAccount:
    """Every home is one line of the service account's key file, tagged with its username."""

    def __init__(self, cfg: SshdConfig) -> None:
        if cfg.account is None:
            raise ValueError("account: required in single-account mode")
        self.cfg = cfg
        self.account = cfg.account
        self.path = cfg.keys_dir / cfg.account

    def install(self, username: str, public_key: str, ports: Sequence[int]) -> None:
        name = validate_username(username)
        new = key_line(public_key, ports, name, self.cfg.forced_command)
        self._check_writer()
        with _keys_lock(self.cfg):
            _write_slots(self.cfg, name)
            lines, replaced = [], False
            for line in self._lines():
                if _tag(line) == name:
                    if not replaced:
                        lines.append(new)
                    replaced = True
                else:
                    lines.append(line)
            if not replaced:
                lines.append(new)
            write_atomic(self.path, "".join(f"{line}\n" for line in lines), 0o644)

    def remove(self, username: str) -> None:
        """Drop the home's line. A live tunnel of it runs on until it disconnects: all homes
        share one UID here, so its sessions cannot be told apart from the others'."""
        name = validate_username(username)
        with _keys_lock(self.cfg):
            lines = self._lines()
            kept = [line for line in lines if _tag(line) != name]
            if kept != lines:
                write_atomic(self.path, "".join(f"{line}\n" for line in kept), 0o644)
            _remove_slots(self.cfg, name)

    def installed(self) -> set[str]:
        return {tag for line in self._lines() if (tag := _tag(line))}

    def _lines(self) -> list[str]:
        try:
            text = self.path.read_text(encoding="ascii")
        except FileNotFoundError:
            return []
        return [line for line in text.splitlines() if line.strip()]

    def _check_writer(self) -> None:
        entry = _getpwnam(self.account)
        if entry is None:
            raise ValueError(f"account: no such user {self.account}")
        if os.geteuid() not in (0, entry.pw_uid):
            # sshd ignores a key file owned by anyone but root or the account itself.
            raise PermissionError(
                f"account: key file {self.path} must be written by root or {self.account}"
            )


def accounts_for(cfg: SshdConfig) -> Accounts:
    """The Accounts implementation for cfg.mode."""
    if cfg.mode == "system-users":
        return SystemUsers(cfg)
    return SingleAccount(cfg)


def _tag(line: str) -> str | None:
    last = line.rsplit(None, 1)[-1] if line.strip() else ""
    if last.startswith(TAG_PREFIX) and _NAME_RE.fullmatch(last[len(TAG_PREFIX) :]):
        return last[len(TAG_PREFIX) :]
    return None


def _getpwnam(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def _getgid(group: str) -> int | None:
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        return None
