"""Approve (activate) self-signed-up accounts from the command line, as the admin's
*Approve* action does."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = "Activate the given accounts so they can log in and get API tokens."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("usernames", nargs="+")

    def handle(self, *args: Any, usernames: list[str], **options: Any) -> None:
        users = get_user_model().objects.filter(username__in=usernames)
        missing = sorted(set(usernames) - set(users.values_list("username", flat=True)))
        if missing:
            raise CommandError(f"no such account: {', '.join(missing)}")
        users.update(is_active=True)
        self.stdout.write(f"approved: {', '.join(sorted(usernames))}")
