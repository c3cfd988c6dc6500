"""API tokens for scripts: shown once, stored as a SHA-256 digest, found by a short prefix."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone

TOKEN_PREFIX = "cah_"  # noqa: S105 - a public marker, not a secret


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ApiTokenQuerySet(models.QuerySet["ApiToken"]):
    def authenticate(self, token: str) -> ApiToken | None:
        """The active owner's token matching `token`, or None (constant-time comparison)."""
        parts = token.split("_", 2)  # the secret part may itself contain "_"
        if len(parts) != 3 or f"{parts[0]}_" != TOKEN_PREFIX:
            return None
        candidate = (
            self.select_related("user").filter(prefix=parts[1], user__is_active=True).first()
        )
        if candidate is None or not hmac.compare_digest(candidate.digest, _digest(token)):
            return None
        self.filter(pk=candidate.pk).update(last_used=timezone.now())
        return candidate


class ApiToken(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tokens"
    )
    name = models.CharField(max_length=100, default="script")
    prefix = models.CharField(max_length=16, unique=True)
    digest = models.CharField(max_length=64)
    created = models.DateTimeField(auto_now_add=True)
    last_used = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{TOKEN_PREFIX}{self.prefix}_… ({self.name})"

    @classmethod
    def issue(cls, user: models.Model, name: str = "script") -> tuple[ApiToken, str]:
        """Create a token; the plain value is returned once and never stored."""
        prefix = secrets.token_hex(6)
        token = f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
        return cls.objects.create(user=user, name=name, prefix=prefix, digest=_digest(token)), token
