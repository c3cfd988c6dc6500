"""Requests that reached a site over HTTPS (the cloud's public host, where its HAProxy ends TLS
and says so in X-Forwarded-Proto): every cookie of their answer is Secure, so a session or CSRF
cookie set there never travels in clear, while the plain-HTTP port of a local run keeps working
with the same cookies."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse


class SecureCookiesOverHttps:
    """Middleware: mark each cookie a secure request's response sets `Secure`."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.is_secure():
            for morsel in response.cookies.values():
                morsel["secure"] = True
        return response
