"""Password guessing on both sites, throttled by django-axes: failures are counted per username
and per client address, and a locked-out caller gets 429 with Retry-After in the one error
shape (an HTML page of the site's look on the UI)."""

from __future__ import annotations

from typing import Any

from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string

from workers.common.errors import DomainError


def cooloff_seconds() -> int:
    return int(settings.AXES_COOLOFF_TIME.total_seconds())


def _detail() -> str:
    minutes = max(1, cooloff_seconds() // 60)
    return (
        "too many failed logins for this username or from this address;"
        f" retry in {minutes} minute{'s' if minutes > 1 else ''}"
    )


class TooManyRequests(DomainError):
    status = 429

    def __init__(self, message: str, field: str | None = None, retry_after: int = 0) -> None:
        super().__init__(message, field)
        self.retry_after = retry_after


def lockout_error() -> TooManyRequests:
    return TooManyRequests(_detail(), "username", retry_after=cooloff_seconds())


def check_allowed(request: HttpRequest, username: str) -> None:
    """Raise TooManyRequests when `username` or the caller's address is locked out, before any
    password is hashed."""
    if not AxesProxyHandler.is_allowed(request, {"username": username}):
        raise lockout_error()


def record_failure(request: HttpRequest, username: str) -> None:
    """Count a failed login that did not go through authenticate()."""
    user_login_failed.send(sender=__name__, credentials={"username": username}, request=request)


def record_success(request: HttpRequest, user: AbstractBaseUser) -> None:
    """A token issued is a login: it clears the failures counted against it (and sets
    last_login), as the login page does. Only when there are failures to clear: each of those
    writes waits for SQLite's one write lock, which the worker holds now and then."""
    if AxesProxyHandler.get_failures(request, {"username": user.get_username()}):
        user_logged_in.send(sender=type(user), request=request, user=user)


def lockout_response(
    request: HttpRequest, original_response: Any, credentials: Any
) -> HttpResponse:
    """AXES_LOCKOUT_CALLABLE of both sites."""
    response: HttpResponse
    if request.path.startswith("/api/"):
        response = JsonResponse({"detail": _detail(), "field": "username"}, status=429)
    else:
        page = render_to_string("ui/locked_out.html", {"detail": _detail()}, request=request)
        response = HttpResponse(page, status=429)
    response["Retry-After"] = str(cooloff_seconds())
    return response


def client_behind_haproxy(request: HttpRequest) -> str | None:
    """The cloud's client address: gunicorn listens only on a socket HAProxy reaches, and
    HAProxy replaces X-Forwarded-For with the address it saw."""
    return request.META.get("HTTP_X_FORWARDED_FOR") or request.META.get("REMOTE_ADDR")


def client_address(request: HttpRequest) -> str | None:
    """A site that faces its clients itself (the Home Console): the socket's peer."""
    return request.META.get("REMOTE_ADDR")
