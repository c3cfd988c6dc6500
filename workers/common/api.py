"""The NinjaAPI both sites build on: docs under /api/schema/ (OpenAPI, Swagger UI, ReDoc)
and one error shape, {"detail": ..., "field": ...}, for every error a client can meet."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from kombu.exceptions import OperationalError as QueueUnreachable
from ninja import NinjaAPI, Schema
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.openapi.docs import Redoc, Swagger

from workers.common.errors import DomainError


class Error(Schema):
    """Every error either site answers: one sentence, and the input field at fault if any."""

    detail: str
    field: str | None = None


def errors(*statuses: int) -> dict[int, type[Error]]:
    """The error statuses an operation can answer, for its OpenAPI schema (`response=`):
    the ones given, plus those any request can meet: 400 (a body that is not JSON, a NUL
    character), 401 (no or bad token) and 503 (a dependency is down)."""
    return {status: Error for status in sorted({400, 401, 503, *statuses})}


def _nul_in(value: object, where: str = "") -> str | None:
    """The field (dotted) of the first string holding a NUL, or None."""
    if isinstance(value, str):
        return (where or "body") if "\0" in value else None
    if isinstance(value, dict):
        items: list[tuple[object, object]] = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    else:
        return None
    for key, item in items:
        here = f"{where}.{key}" if where else str(key)
        if "\0" in str(key):
            return here
        if found := _nul_in(item, here):
            return found
    return None


class RejectNul:
    """Middleware: an API request with a NUL character anywhere (path, query, JSON body) is a
    400 naming where, before it reaches a view: no field of either site may hold one, and
    PostgreSQL cannot even compare one (it answered 500)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/api/"):
            field = "path" if "\0" in request.path else None
            field = field or next(
                (k for k, v in request.GET.lists() if "\0" in k + "".join(v)), None
            )
            if field is None and request.content_type == "application/json":
                with contextlib.suppress(ValueError):
                    field = _nul_in(json.loads(request.body or b"null"))
            if field is not None:
                return JsonResponse(
                    {"detail": f"{field}: must not contain NUL characters", "field": field},
                    status=400,
                )
        return self.get_response(request)


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
        """Each at its status; a component of ours that cannot answer (ServiceUnavailable:
        TransientError, EdgeError) is a 503 with the reason, never a 500."""
        response = error_response(api, request, exc.status, str(exc), exc.field)
        if retry_after := getattr(exc, "retry_after", 0):
            response["Retry-After"] = str(retry_after)
        return response

    @api.exception_handler(QueueUnreachable)
    def on_queue_unreachable(request: HttpRequest, exc: QueueUnreachable) -> HttpResponse:
        response = error_response(api, request, 503, queue_unreachable_reason(exc))
        response["Retry-After"] = "60"
        return response

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


def queue_unreachable_reason(exc: Exception) -> str:
    """Tasks are sent after the commit (kombu gives up after ~0.6 s of retries): the row is
    saved, it is the desired state, and the periodic reconcilers apply it once Redis is back."""
    return (
        f"the change was saved, but the task queue cannot be reached ({exc}): it takes effect"
        " once the queue is back and the periodic reconcilers run"
    )


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
