"""OpenSSH client helpers for tests: key pairs, pinned known_hosts, and the argv options
every client of ours uses (no agent, no config file, pinned host key)."""

from __future__ import annotations

import subprocess
from pathlib import Path


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
