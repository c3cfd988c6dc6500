"""The home's SSH identity: generating the ed25519 key pair its tunnels authenticate with,
and the `keygen` command line (also reached through home/scripts/generate_keys.py)."""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from workers.common.files import write_atomic

DEFAULT_KEY_PATH = Path("~/.ssh/cloudathome_ed25519").expanduser()
PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644


def public_key_path(private_key: Path) -> Path:
    # Appended, as ssh-keygen does: with_suffix() would turn "id.key" into "id.pub".
    return private_key.with_name(private_key.name + ".pub")


def generate_keypair(output: Path, force: bool = False) -> str:
    """Write a new ed25519 key pair to `output` (OpenSSH format, no passphrase, 0600) and
    `output.pub` (0644); returns the public key line. Refuses to replace either file unless
    `force`."""
    private_path = Path(output).expanduser()
    public_path = public_key_path(private_path)
    if not force:
        for path in (private_path, public_path):
            if os.path.lexists(path):
                raise FileExistsError(f"{path} already exists; use --force to overwrite it")
    _ensure_private_dir(private_path.parent)

    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public_blob = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    public_line = f"{public_blob.decode()} cloudathome@{socket.gethostname()}"

    write_atomic(private_path, private_pem, PRIVATE_MODE, replace=force)
    try:
        write_atomic(public_path, f"{public_line}\n".encode(), PUBLIC_MODE, replace=force)
    except FileExistsError:
        # Someone created the .pub meanwhile: do not leave a private key without its pair.
        private_path.unlink(missing_ok=True)
        raise
    return public_line


def _ensure_private_dir(directory: Path) -> None:
    if directory.is_dir():
        return  # an existing ~/.ssh keeps the mode its owner gave it
    directory.mkdir(parents=True, mode=0o700)
    directory.chmod(0o700)  # mkdir's mode is filtered by the umask


def main(argv: Sequence[str] | None = None) -> int:
    """`keygen`: write the key pair, print the public key alone on stdout (so it can be piped
    to register_home.py --public-key /dev/stdin, as with the original script) and where the
    files went on stderr."""
    parser = argparse.ArgumentParser(
        prog="generate_keys.py",
        description="Generate the SSH key pair this home uses for its cloudathome tunnels.",
    )
    parser.add_argument(
        "--output",
        "-o",
        type=Path,
        default=DEFAULT_KEY_PATH,
        help=f"path of the private key; the public key goes to PATH.pub "
        f"(default: {DEFAULT_KEY_PATH})",
    )
    parser.add_argument("--force", "-f", action="store_true", help="overwrite an existing key pair")
    args = parser.parse_args(argv)
    output: Path = args.output.expanduser()
    try:
        public_line = generate_keypair(output, force=args.force)
    except (OSError, ValueError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    print(f"Private key written to {output}", file=sys.stderr)
    print(f"Public key written to {public_key_path(output)}", file=sys.stderr)
    print(public_line)
    return 0
