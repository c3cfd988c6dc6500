"""API tokens of the Home Console's local users: shown once, stored as a SHA-256 digest,
found by a short public prefix."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone

# Not the cloud's "cah_": a token pasted into the wrong site is refused at a glance, and
# secret scanners can tell the two apart.
TOKEN_PREFIX = "cahh_"  # noqa: S105 (a public marker, not a secret)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ApiTokenQuerySet(models.QuerySet["ApiToken"]):
    def authenticate(self, token: str) -> ApiToken | None:
        """The active owner's token matching `token`, or None (constant-time comparison)."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        # The secret part is base64url and may itself contain "_": split once only.
        prefix, sep, _ = token[len(TOKEN_PREFIX) :].partition("_")
        if not sep or not prefix:
            return None
        candidate = self.select_related("user").filter(prefix=prefix, user__is_active=True).first()
        if candidate is None or not hmac.compare_digest(candidate.digest, _digest(token)):
            return None
        self.filter(pk=candidate.pk).update(last_used=timezone.now())
        return candidate


class ApiToken(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, default="script")
    prefix = models.CharField(max_length=16, unique=True)
    digest = models.CharField(max_length=64)
    created = models.DateTimeField(auto_now_add=True)
    last_used = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{TOKEN_PREFIX}{self.prefix}_… ({self.name})"

    @classmethod
    def issue(cls, user: models.Model, name: str = "script") -> tuple[ApiToken, str]:
        """Create a token; the plain value is returned once and never stored."""
        prefix = secrets.token_hex(6)
        token = f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
        return cls.objects.create(user=user, name=name, prefix=prefix, digest=_digest(token)), token
