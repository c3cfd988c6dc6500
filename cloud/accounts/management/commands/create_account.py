"""Create an account from the command line (scripts, first users of a private cloud), active
by default, with the password read from standard input so it never shows in `ps` or a log."""

from __future__ import annotations

import getpass
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cloud.accounts.services import user_create
from workers.common.errors import DomainError


class Command(BaseCommand):
    help = (
        "Create an account. The password comes from standard input with --password-stdin, "
        "else it is asked for twice."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--email", default="")
        parser.add_argument(
            "--password-stdin", action="store_true", help="read the password from stdin"
        )
        parser.add_argument("--staff", action="store_true", help="may use the admin endpoints")
        parser.add_argument(
            "--inactive", action="store_true", help="must be approved before it can log in"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        password = _password(options["password_stdin"])
        try:
            user_create(
                options["username"],
                password,
                options["email"],
                active=not options["inactive"],
                staff=options["staff"],
            )
        except DomainError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"created account {options['username']!r}")


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    if not sys.stdin.isatty():
        raise CommandError("password: give it on stdin with --password-stdin")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Password (again): ") != first:
        raise CommandError("password: the two entries differ")
    return first
