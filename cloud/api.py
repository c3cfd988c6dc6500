"""The cloud's one NinjaAPI: routers of each app, token or session auth, docs under
/api/schema/, and one error shape ({"detail": ..., "field": ...}) for every error."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.openapi.docs import Redoc, Swagger

from cloud.accounts.api import router as auth_router
from cloud.accounts.auth import api_auth
from cloud.errors import DomainError
from cloud.homes.api import admin_router
from cloud.homes.api import router as homes_router

api = NinjaAPI(
    title="cloudathome cloud API",
    version="1.0",
    description="Homes, their SSH identities and the proxy mappings of the cloud edge.",
    auth=api_auth,
    urls_namespace="api",
    openapi_url="/schema/",
    docs_url="/schema/swagger/",
    docs=Swagger(),
)
api.add_router("/auth", auth_router)
api.add_router("/homes", homes_router)
api.add_router("/admin", admin_router)


def _error(
    request: HttpRequest, status: int, detail: str, field: str | None = None
) -> HttpResponse:
    body: dict[str, object] = {"detail": detail}
    if field:
        body["field"] = field
    return api.create_response(request, body, status=status)


@api.exception_handler(DomainError)
def on_domain_error(request: HttpRequest, exc: DomainError) -> HttpResponse:
    return _error(request, exc.status, str(exc), exc.field)


@api.exception_handler(ValidationError)
def on_validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    """Name the first offending field: `body.host` -> `host: <reason>`."""
    first = exc.errors[0] if exc.errors else {}
    loc = [str(p) for p in first.get("loc", []) if p not in ("body", "payload", "query", "path")]
    field = ".".join(loc) or None
    message = str(first.get("msg", "invalid input"))
    return _error(request, 422, f"{field}: {message}" if field else message, field)


@api.exception_handler(AuthenticationError)
def on_auth_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return _error(request, 401, "authentication required: send 'Authorization: Bearer <token>'")


@api.exception_handler(HttpError)
def on_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    return _error(request, exc.status_code, str(exc))


def redoc(request: HttpRequest) -> HttpResponse:
    return Redoc().render_page(request, api)
