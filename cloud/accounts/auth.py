"""API authentication of the cloud: its tokens, then the session (workers.common.tokens)."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.http import HttpRequest

from cloud.accounts.models import ApiToken
from workers.common.tokens import api_auth as token_or_session

api_auth = token_or_session(ApiToken)


def current_user(request: HttpRequest) -> User:
    """The authenticated caller; only reached behind login_required or API auth."""
    user = request.user
    if not isinstance(user, User) or not user.is_active:
        raise PermissionError("an authenticated, active user is required")
    return user
