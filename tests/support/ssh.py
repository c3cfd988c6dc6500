"""OpenSSH client helpers for tests: key pairs, pinned known_hosts, and the argv options
every client of ours uses (no agent, no config file, pinned host key)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.unprivileged import system_user
from workers.local.procs import free_port, port_open, running


def keygen(path: Path, kind: str = "ed25519") -> str:
    """Generate a key pair with ssh-keygen; returns the public key line."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", f"test@{path.name}", "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return (
        path.with_suffix(".pub").read_text().strip()
        if path.suffix
        else Path(f"{path}.pub").read_text().strip()
    )


def known_hosts(path: Path, port: int, host_key_line: str, host: str = "127.0.0.1") -> Path:
    path.write_text(f"[{host}]:{port} {host_key_line}\n")
    return path


def client_options(key: Path, known: Path, port: int) -> list[str]:
    options = {
        "BatchMode": "yes",
        "IdentitiesOnly": "yes",
        "IdentityAgent": "none",
        "StrictHostKeyChecking": "yes",
        "UserKnownHostsFile": str(known),
        "ConnectTimeout": "10",
    }
    return [
        *("-F", "/dev/null", "-p", str(port), "-i", str(key)),
        *(arg for name, value in options.items() for arg in ("-o", f"{name}={value}")),
    ]


def reverse_tunnel(
    key: Path, known: Path, ssh_port: int, user: str, remote: int, local: int
) -> subprocess.Popen:
    """DESIGN's tunnel command by hand: 127.0.0.1:`remote` at the cloud to 127.0.0.1:`local`
    here. The caller stops it (by PID)."""
    argv = ["ssh", "-tt", *client_options(key, known, ssh_port), "-o", "ExitOnForwardFailure=yes"]
    argv += ["-c", "aes128-gcm@openssh.com", "-R", f"127.0.0.1:{remote}:127.0.0.1:{local}"]
    return subprocess.Popen(
        [*argv, f"{user}@127.0.0.1"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


@dataclass(frozen=True)
class HomeSshd:
    """A plain OpenSSH server standing at home (a service a home publishes over tcp): one
    throwaway user with a shell, logged in with `key`; its host key in `host_key`."""

    port: int
    user: str
    key: Path
    host_key: str


@contextlib.contextmanager
def home_sshd(base: Path) -> Iterator[HomeSshd]:
    """Run one on 127.0.0.1 until the block ends (stopped by PID, its user removed)."""
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # Debian's privsep dir, shared
    host_key = base / "host_ed25519"
    host_pub = keygen(host_key)
    client = base / "client_ed25519"
    client_pub = keygen(client)
    port = free_port()
    with system_user("cahs", login_shell="/bin/sh") as user:
        # "*": no password, but not "locked" ("!"), which sshd without PAM refuses.
        subprocess.run(["usermod", "--password", "*", user.name], check=True, capture_output=True)
        keys = user.home / "authorized_keys"
        keys.write_text(client_pub + "\n")
        user.own(keys)
        config = base / "sshd_config"
        config.write_text(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile none\n"
            f"AuthorizedKeysFile {keys}\nAllowUsers {user.name}\nUsePAM no\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nStrictModes no\n"
            "AllowTcpForwarding no\nX11Forwarding no\nPrintMotd no\nLogLevel VERBOSE\n"
        )
        with running(
            ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
            log=base / "sshd.log",
            ready=lambda: port_open(port),
        ):
            yield HomeSshd(port, user.name, client, " ".join(host_pub.split()[:2]))


def ssh_run(
    server: HomeSshd, port: int, known: Path, *command: str, source: str = "127.0.0.1"
) -> str:
    """Run `command` on `server`, reached on 127.0.0.1:`port` (the edge's public port) from
    the loopback address `source`."""
    known_hosts(known, port, server.host_key)
    argv = ["ssh", *client_options(server.key, known, port), "-b", source]
    done = subprocess.run(
        [*argv, f"{server.user}@127.0.0.1", *command],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout
