"""The Home Console's one NinjaAPI: the routers of each app, token or session auth, docs
under /api/schema/, and one error shape ({"detail": ..., "field": ...}) for every error."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from kombu.exceptions import OperationalError as QueueUnreachable

from home.accounts.api import router as auth_router
from home.accounts.auth import api_auth
from home.cloudlink.config import ConfigError
from home.cloudlink.services import link_status
from home.domains.api import entries_router
from home.domains.api import router as domains_router
from home.domains.schemas import CheckOut
from home.tunnels import services as tunnels
from workers.common.api import error_response, redoc_view, site_api

api = site_api(
    "cloudathome Home Console API",
    "Domains, their ACME certificates, and the proxy entries whose ssh tunnels "
    "publish home services through the cloud edge. Authenticate with "
    "`Authorization: Bearer <token>` (from `POST /api/auth/token`).",
    api_auth,
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


@api.exception_handler(ConfigError)
def on_config_error(request: HttpRequest, exc: ConfigError) -> HttpResponse:
    """cloudlink.yaml went missing or bad after start-up: say which file and field."""
    return error_response(api, request, 503, f"the cloud link is not configured: {exc}")


@api.exception_handler(QueueUnreachable)
def on_queue_unreachable(request: HttpRequest, exc: QueueUnreachable) -> HttpResponse:
    """Tasks are sent after the commit, so the change itself is saved; say the rest."""
    return error_response(
        api,
        request,
        503,
        f"the change was saved, but the task queue cannot be reached ({exc}): "
        "its background work is not queued",
    )


redoc = redoc_view(api)
