"""API authentication: Bearer tokens for scripts, the session (with CSRF) for the UI."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.http import HttpRequest
from ninja.security import HttpBearer, SessionAuth

from cloud.accounts.models import ApiToken


class TokenAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> Any:
        found = ApiToken.objects.authenticate(token)
        if found is None:
            return None
        request.user = found.user
        return found.user


class ActiveSession(SessionAuth):
    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        user = super().authenticate(request, key)
        return user if user is not None and user.is_active else None


api_auth = [TokenAuth(), ActiveSession()]


def current_user(request: HttpRequest) -> User:
    """The authenticated caller; only reached behind login_required or API auth."""
    user = request.user
    if not isinstance(user, User) or not user.is_active:
        raise PermissionError("an authenticated, active user is required")
    return user
