"""Account workflows of the Home Console: API tokens for the console's local users."""

from __future__ import annotations

from django.contrib.auth import authenticate
from django.http import HttpRequest

from home.accounts.models import ApiToken
from workers.common import throttle
from workers.common.errors import DomainError


class BadCredentials(DomainError):
    status = 403


def token_issue(request: HttpRequest, username: str, password: str, name: str) -> str:
    """A new API token for valid, active credentials; the plain token is returned once."""
    throttle.check_allowed(request, username)
    # One hash whatever the account's state (ModelBackend hashes for unknown users too).
    user = authenticate(request, username=username, password=password)
    if getattr(request, "axes_locked_out", False):
        raise throttle.lockout_error()
    if user is None:
        # One answer for an unknown user, a wrong password and an inactive account, so the
        # endpoint does not tell which usernames exist.
        raise BadCredentials("invalid username or password, or the account is disabled")
    throttle.record_success(request, user)
    _, token = ApiToken.issue(user, name)
    return token
