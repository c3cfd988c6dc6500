"""The pages' answer to an error that a view did not show next to a field or as a message:
a page of the site's look that says why, with the status the API would answer, never a 500."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from kombu.exceptions import OperationalError as QueueUnreachable

from workers.common.api import queue_unreachable_reason
from workers.common.errors import DomainError


class ErrorPageMiddleware:
    """A domain error gets its own status; the task queue down after the commit is a 503 that
    says the change was saved and when it takes effect. A site adds its own dependencies'
    failures by overriding `unavailable`."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def unavailable(self, exc: Exception) -> str | None:
        """Why a dependency of the site failed (answered 503), or None if `exc` is no such failure."""
        return queue_unreachable_reason(exc) if isinstance(exc, QueueUnreachable) else None

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        if isinstance(exc, DomainError):
            status, reason = exc.status, str(exc)
        elif (why := self.unavailable(exc)) is not None:
            status, reason = 503, why
        else:
            return None
        context = {"status": status, "reason": reason, "saved": isinstance(exc, QueueUnreachable)}
        return render(request, "ui/error.html", context, status=status)
