"""The Home Console's one NinjaAPI: the routers of each app, token or session auth, docs
under /api/schema/, and one error shape ({"detail": ..., "field": ...}) for every error."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from kombu.exceptions import OperationalError as QueueUnreachable
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.openapi.docs import Redoc, Swagger

from home.accounts.api import router as auth_router
from home.accounts.auth import api_auth
from home.cloudlink.config import ConfigError
from home.cloudlink.services import link_status
from home.domains.api import entries_router
from home.domains.api import router as domains_router
from home.domains.schemas import CheckOut
from home.errors import DomainError
from home.tunnels import services as tunnels

api = NinjaAPI(
    title="cloudathome Home Console API",
    version="1.0",
    description="Domains, their ACME certificates, and the proxy entries whose ssh tunnels "
    "publish home services through the cloud edge. Authenticate with "
    "`Authorization: Bearer <token>` (from `POST /api/auth/token`).",
    auth=api_auth,
    urls_namespace="api",
    openapi_url="/schema/",
    docs_url="/schema/swagger/",
    docs=Swagger(),
)
api.add_router("/auth", auth_router)
api.add_router("/domains", domains_router)
api.add_router("/proxy-entries", entries_router)


@api.get("/status", response=list[CheckOut], tags=["status"])
def status(request: HttpRequest) -> list[CheckOut]:
    """The link to the cloud: API reachable, token valid, and an SSH preflight (the home's
    key may log in and listen on a free tunnel port)."""
    try:
        port: int | None = tunnels.allocate_port()
    except tunnels.NoFreePort:
        port = None
    return [CheckOut(name=c.name, ok=c.ok, detail=c.detail) for c in link_status(port)]


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


@api.exception_handler(ConfigError)
def on_config_error(request: HttpRequest, exc: ConfigError) -> HttpResponse:
    """cloudlink.yaml went missing or bad after start-up: say which file and field."""
    return _error(request, 503, f"the cloud link is not configured: {exc}")


@api.exception_handler(QueueUnreachable)
def on_queue_unreachable(request: HttpRequest, exc: QueueUnreachable) -> HttpResponse:
    """Tasks are sent after the commit, so the change itself is saved; say the rest."""
    return _error(
        request,
        503,
        f"the change was saved, but the task queue cannot be reached ({exc}): "
        "its background work is not queued",
    )


@api.exception_handler(ValidationError)
def on_validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    """Name the first offending field: `body.name` -> `name: <reason>`."""
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
