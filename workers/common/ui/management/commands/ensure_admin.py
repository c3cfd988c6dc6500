"""Create the first administrator on first run: password from CLOUDATHOME_ADMIN_PASSWORD
(or _FILE), else a generated one printed once. Does nothing when an administrator exists."""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from workers.common.conf import env


class Command(BaseCommand):
    help = "Create the first administrator if there is none."

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            return
        username = env("CLOUDATHOME_ADMIN_USER", "admin")
        password = env("CLOUDATHOME_ADMIN_PASSWORD")
        generated = not password
        if generated:
            password = secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        if generated:
            self.stdout.write(
                f"created administrator {username!r} with password {password} "
                "(shown once; change it in the admin)"
            )
        else:
            self.stdout.write(f"created administrator {username!r}")
