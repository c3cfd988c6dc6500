"""What the console says when something it depends on fails: the cloud link's file, the task
queue, the cloud itself, a lock held by another run. One reason per kind, which the API
answers as 503 in the one error shape and the pages as a 503 page (workers.common.ui.errors),
never as a 500."""

from __future__ import annotations

from django.forms import Form
from kombu.exceptions import OperationalError as QueueUnreachable

from home.cloudlink.client import CloudError
from home.cloudlink.config import ConfigError
from workers.common.api import queue_unreachable_reason
from workers.common.errors import DomainError
from workers.common.ui.errors import ErrorPageMiddleware as SharedErrorPages

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


class ErrorPageMiddleware(SharedErrorPages):
    """The shared error pages, with the console's own dependencies: the cloud link, the cloud."""

    def unavailable(self, exc: Exception) -> str | None:
        return unavailable_reason(exc) if isinstance(exc, UNAVAILABLE) else None
