"""The NinjaAPI both sites build on: docs under /api/schema/ (OpenAPI, Swagger UI, ReDoc)
and one error shape, {"detail": ..., "field": ...}, for every error a client can meet."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI, Schema
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.openapi.docs import Redoc, Swagger

from workers.celery import TransientError
from workers.common.errors import DomainError


class Error(Schema):
    """Every error either site answers: one sentence, and the input field at fault if any."""

    detail: str
    field: str | None = None


def errors(*statuses: int) -> dict[int, type[Error]]:
    """The error statuses an operation can answer, for its OpenAPI schema (`response=`):
    the ones given, plus 401 (no or bad token) and 503 (a dependency is down), which every
    authenticated operation can meet."""
    return {status: Error for status in sorted({401, 503, *statuses})}


def site_api(title: str, description: str, auth: Sequence[Any]) -> NinjaAPI:
    api = NinjaAPI(
        title=title,
        version="1.0",
        description=description,
        auth=list(auth),
        urls_namespace="api",
        openapi_url="/schema/",
        docs_url="/schema/swagger/",
        docs=Swagger(),
    )

    @api.exception_handler(DomainError)
    def on_domain_error(request: HttpRequest, exc: DomainError) -> HttpResponse:
        return error_response(api, request, exc.status, str(exc), exc.field)

    @api.exception_handler(TransientError)
    def on_transient_error(request: HttpRequest, exc: TransientError) -> HttpResponse:
        """A lock held by another run, a component restarting: worth a retry, never a 500."""
        return error_response(api, request, 503, str(exc))

    @api.exception_handler(ValidationError)
    def on_validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
        """Name the first offending field: `body.host` -> `host: <reason>`."""
        first = exc.errors[0] if exc.errors else {}
        loc = [
            str(p) for p in first.get("loc", []) if p not in ("body", "payload", "query", "path")
        ]
        field = ".".join(loc) or None
        message = str(first.get("msg", "invalid input"))
        return error_response(api, request, 422, f"{field}: {message}" if field else message, field)

    @api.exception_handler(AuthenticationError)
    def on_auth_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
        detail = "authentication required: send 'Authorization: Bearer <token>'"
        return error_response(api, request, 401, detail)

    @api.exception_handler(HttpError)
    def on_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
        return error_response(api, request, exc.status_code, str(exc))

    return api


def error_response(
    api: NinjaAPI, request: HttpRequest, status: int, detail: str, field: str | None = None
) -> HttpResponse:
    body: dict[str, object] = {"detail": detail}
    if field:
        body["field"] = field
    return api.create_response(request, body, status=status)


class _Redoc(Redoc):
    """ninja's ReDoc page without its inline script (the sites' CSP allows none)."""

    template = "ui/redoc.html"


def redoc_view(api: NinjaAPI) -> Callable[[HttpRequest], HttpResponse]:
    def redoc(request: HttpRequest) -> HttpResponse:
        return _Redoc().render_page(request, api)

    return redoc
