"""`seed_scale`: a cloud site at load-test size in seconds (thousands of ready homes and their
mappings, accounts to claim homes with), inserted in bulk rather than through the API, so a
benchmark measures what it means to and not the set-up. See homes_seed for what it seeds."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from django.core.management.base import BaseCommand, CommandError, CommandParser

from cloud.homes.services import SEED_OWNER, Seeded, homes_seed
from workers.common.errors import DomainError
from workers.common.files import write_atomic

_OPTIONS = {"public_key": "--public-key-file"}


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is below 0")
    return value


class Command(BaseCommand):
    help = (
        "Make the database hold exactly --homes ready homes with --mappings https mappings "
        "spread over them and --accounts accounts without a home (grows or shrinks an earlier "
        "run; 0 0 removes everything seeded). Prints what it seeded as JSON. Routes follow at "
        "the next edge sync (beat, or POST /api/admin/proxy-mappings/sync)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--homes", type=_count, required=True)
        parser.add_argument("--mappings", type=_count, required=True, help="in all, not per home")
        parser.add_argument("--accounts", type=_count, default=0)
        parser.add_argument("--domain", default="scale.test", help="mappings are h<n>-<j>.DOMAIN")
        parser.add_argument("--first-host", help="hostname of the first mapping (first home)")
        parser.add_argument(
            "--public-key-file",
            type=Path,
            help="OpenSSH public keys, one per line: new home n gets line n, wrapping around, "
            "so one line gives them all the same key (default: a fresh key nobody holds)",
        )
        parser.add_argument(
            "--token-file",
            type=Path,
            help="write a fresh API token of the first home's owner and of every account "
            "here (JSON username -> token, mode 0600); tokens are never printed",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        token_file: Path | None = options["token_file"]
        if token_file is not None and not token_file.parent.is_dir():
            raise CommandError(f"--token-file: no such directory {token_file.parent}")
        try:
            seeded = homes_seed(
                options["homes"],
                options["mappings"],
                options["accounts"],
                public_keys=_public_keys(options["public_key_file"]),
                domain=options["domain"],
                first_host=options["first_host"],
                tokens=token_file is not None,
            )
        except DomainError as exc:
            option = _OPTIONS.get(exc.field or "", f"--{exc.field}".replace("_", "-"))
            raise CommandError(f"{option}: {exc.message}" if exc.field else exc.message) from None
        if token_file is not None:
            write_atomic(token_file, json.dumps(seeded.tokens) + "\n", 0o600)
        self.stdout.write(json.dumps(_summary(seeded)))


def _summary(seeded: Seeded) -> dict[str, Any]:
    """What a script needs to drive the seeded site; no secret."""
    home = seeded.homes[0] if seeded.homes else None
    mapping = seeded.first_mapping
    return {
        "homes": len(seeded.homes),
        "mappings": seeded.mappings,
        "accounts": seeded.accounts,
        "first_home": None
        if home is None
        else {
            "slug": home.slug,
            "owner": SEED_OWNER.format(0),
            "port_base": home.port_base,
            "port_count": home.port_count,
        },
        "first_mapping": None
        if mapping is None
        else {"host": mapping.host, "tunnel_port": mapping.tunnel_port},
    }


def _public_keys(path: Path | None) -> list[str]:
    if path is None:
        key = ed25519.Ed25519PrivateKey.generate().public_key()
        raw = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        return [raw.decode()]
    try:
        return [line for line in path.read_text().splitlines() if line.strip()]
    except OSError as exc:
        raise CommandError(f"--public-key-file: cannot read {path}: {exc.strerror}") from None
