"""API tokens for scripts, the same in both sites: shown once, stored as a SHA-256 digest,
found by a short public prefix. Each site's accounts app makes it concrete with its own
`token_prefix`, so a token pasted into the wrong site is refused at a glance and secret
scanners can tell the two apart."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any, ClassVar

from django.conf import settings
from django.db import models
from django.http import HttpRequest
from django.utils import timezone
from ninja.security import HttpBearer, SessionAuth


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenQuerySet(models.QuerySet[Any]):
    def authenticate(self, token: str) -> Any:
        """The active owner's token matching `token`, or None (constant-time comparison)."""
        marker = self.model.token_prefix
        if not token.startswith(marker):
            return None
        # The secret part is base64url and may itself contain "_": split once only.
        prefix, sep, _ = token[len(marker) :].partition("_")
        if not sep or not prefix:
            return None
        candidate = self.select_related("user").filter(prefix=prefix, user__is_active=True).first()
        if candidate is None or not hmac.compare_digest(candidate.digest, _digest(token)):
            return None
        self.filter(pk=candidate.pk).update(last_used=timezone.now())
        return candidate


class AbstractApiToken(models.Model):
    token_prefix: ClassVar[str] = "cah_"  # noqa: S105 - a public marker, not a secret

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, default="script")
    prefix = models.CharField(max_length=16, unique=True)
    digest = models.CharField(max_length=64)
    created = models.DateTimeField(auto_now_add=True)
    last_used = models.DateTimeField(null=True, blank=True)

    objects = TokenQuerySet.as_manager()

    class Meta:
        abstract = True
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.token_prefix}{self.prefix}_… ({self.name})"

    @classmethod
    def issue(cls, user: models.Model, name: str = "script") -> tuple[Any, str]:
        """Create a token; the plain value is returned once and never stored."""
        prefix = secrets.token_hex(6)
        token = f"{cls.token_prefix}{prefix}_{secrets.token_urlsafe(32)}"
        return cls.objects.create(user=user, name=name, prefix=prefix, digest=_digest(token)), token


class TokenAuth(HttpBearer):
    """`Authorization: Bearer <token>` against one site's token model."""

    def __init__(self, model: type[AbstractApiToken]) -> None:
        super().__init__()
        self.model = model

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        found = self.model.objects.authenticate(token)
        if found is None:
            return None
        request.user = found.user
        return found.user


class ActiveSession(SessionAuth):
    """The UI's own calls: the session of an active user, with CSRF (ninja's cookie auth)."""

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        user = super().authenticate(request, key)
        return user if user is not None and user.is_active else None


def api_auth(model: type[AbstractApiToken]) -> list[Any]:
    """Bearer tokens for scripts first, then the session."""
    return [TokenAuth(model), ActiveSession()]
