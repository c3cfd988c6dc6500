"""The Home Console's one NinjaAPI: the routers of each app, token or session auth, docs
under /api/schema/, and one error shape ({"detail": ..., "field": ...}) for every error."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from home.accounts.api import router as auth_router
from home.accounts.auth import api_auth
from home.certs.api import router as domains_router
from home.cloudlink.api import router as status_router
from home.errors import UNAVAILABLE, unavailable_reason
from home.tunnels.api import router as entries_router
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
api.add_router("/", entries_router)
api.add_router("/status", status_router)


def on_unavailable(request: HttpRequest, exc: Exception) -> HttpResponse:
    return error_response(api, request, 503, unavailable_reason(exc))


for kind in UNAVAILABLE:
    api.exception_handler(kind)(on_unavailable)

redoc = redoc_view(api)
