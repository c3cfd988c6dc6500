"""What the console says when something it depends on fails: the cloud link's file, the task
queue, the cloud itself, a lock held by another run. One reason per kind, which the API
answers as 503 in the one error shape and the pages as a 503 page, never as a 500."""

from __future__ import annotations

from collections.abc import Callable

from django.forms import Form
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from kombu.exceptions import OperationalError as QueueUnreachable

from home.cloudlink.client import CloudError
from home.cloudlink.config import ConfigError
from workers.common.api import queue_unreachable_reason
from workers.common.errors import DomainError

# TransientError needs no entry: it is a DomainError answering 503 (workers.common.errors).
UNAVAILABLE = (ConfigError, QueueUnreachable, CloudError)


def unavailable_reason(exc: Exception) -> str:
    if isinstance(exc, ConfigError):  # cloudlink.yaml went missing or bad after start-up
        return f"the cloud link is not configured: {exc}"
    if isinstance(exc, QueueUnreachable):
        return queue_unreachable_reason(exc)
    if isinstance(exc, CloudError):
        return f"the cloud could not do it: {exc}"
    return str(exc)


def show_on_form(form: Form, exc: DomainError | ConfigError) -> None:
    """Next to the field the error names, or above the form when it names none of them."""
    field = getattr(exc, "field", None)
    form.add_error(field if field in form.fields else None, getattr(exc, "message", str(exc)))


class ErrorPageMiddleware:
    """An error that a view did not show next to a field or as a message becomes a page that
    says why, with the status the API would answer."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        if isinstance(exc, DomainError):
            status, reason = exc.status, str(exc)
        elif isinstance(exc, UNAVAILABLE):
            status, reason = 503, unavailable_reason(exc)
        else:
            return None
        return render(request, "error.html", {"status": status, "reason": reason}, status=status)
