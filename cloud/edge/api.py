"""The edge's admin API, for staff only: converge HAProxy and sshd on the database now
instead of at the next beat, and show what HAProxy itself serves (routes, the public host's
certificate)."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router

from cloud.accounts.auth import current_user
from cloud.edge import certificate, services
from cloud.edge.schemas import (
    LiveRouteOut,
    PublicCertOut,
    ReconcileOut,
    SyncOut,
)
from cloud.homes.services import homes_reconcile
from workers.common.api import errors
from workers.common.errors import Forbidden

router = Router(tags=["admin"])


def _require_admin(request: HttpRequest) -> None:
    if not getattr(current_user(request), "is_staff", False):
        raise Forbidden("administrators only")


@router.post("/proxy-mappings/sync", response={200: SyncOut, **errors(403)})
def admin_sync_mappings(request: HttpRequest) -> SyncOut:
    """Re-sync every mapping of the database to HAProxy (diff-based; a no-op when in sync)."""
    _require_admin(request)
    result = services.edge_sync()
    return SyncOut(added=result.added, changed=result.changed, removed=result.removed)


@router.get("/proxy-mappings/haproxy", response={200: list[LiveRouteOut], **errors(403)})
def admin_live_map(request: HttpRequest) -> list[LiveRouteOut]:
    """The live HAProxy maps, as HAProxy itself reports them."""
    _require_admin(request)
    return [
        LiveRouteOut(
            host=r.host,
            scheme=r.scheme,
            tunnel_port=r.port,
            proxy_protocol=r.proxy_protocol,
            public_port=r.public_port,
            allowlist=bool(r.allow),
        )
        for r in services.edge_live_routes()
    ]


@router.post("/homes/sync", response={200: ReconcileOut, **errors(403)})
def admin_sync_homes(request: HttpRequest) -> ReconcileOut:
    """Reconcile the database's homes with the SSH identities of our sshd."""
    _require_admin(request)
    return ReconcileOut(**homes_reconcile())


@router.get("/public-cert", response={200: PublicCertOut, **errors(403)})
def admin_public_cert(request: HttpRequest) -> PublicCertOut:
    """The certificate HAProxy serves for the cloud's own public host, and the job that obtains
    and renews it (state, step, the reason of a failure, when it is retried)."""
    _require_admin(request)
    return PublicCertOut(**certificate.public_cert_status())
