"""Domain errors raised by both sites' services; each site's API maps them to their status
with one handler and one shape ({"detail": ..., "field": ...}), the UIs show them next to
the field they name."""

from __future__ import annotations


class DomainError(Exception):
    status = 400

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class Invalid(DomainError):
    status = 400


class Forbidden(DomainError):
    status = 403


class NotFound(DomainError):
    status = 404


class Conflict(DomainError):
    status = 409


class Unavailable(DomainError):
    """An outside system (the cloud, a CA) said no or could not be reached."""

    status = 502


class ServiceUnavailable(DomainError):
    """A component of the site itself (HAProxy, Redis, a lock another run holds) cannot do it
    right now; the same request may well succeed in a moment."""

    status = 503


def invalid_from(exc: ValueError, default_field: str) -> Invalid:
    """Validators raise ValueError('field: reason'); keep the field they named."""
    field, sep, reason = str(exc).partition(": ")
    if sep and field.replace("_", "").isalnum():
        return Invalid(reason, field=field)
    return Invalid(str(exc), field=default_field)
