"""Domain errors raised by services; the API maps each to its status with one handler and
one shape ({"detail": ..., "field": ...}), the UI shows them next to the field."""

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


def invalid_from(exc: ValueError, default_field: str) -> Invalid:
    """Edge validators raise ValueError('field: reason'); keep the field they named."""
    text = str(exc)
    field, sep, reason = text.partition(": ")
    if sep and field.replace("_", "").isalnum():
        return Invalid(reason, field=field)
    return Invalid(text, field=default_field)
