"""Proxy entries API: parse, call one service, return. Tunnel processes are converged in the
background; the answer shows the tunnel state to poll."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router, Status

from home.certs.schemas import Id
from home.certs.services import domain_get
from home.tunnels import services
from home.tunnels.models import ProxyEntry
from home.tunnels.schemas import EntryAllowIn, EntryIn, EntryOut, TunnelIn, entry_out
from workers.common.api import errors
from workers.common.errors import NotFound

# Mounted at the API's root: an entry is created under its domain, then addressed alone.
router = Router(tags=["proxy entries"])


def _entry(entry_id: int) -> ProxyEntry:
    entry = ProxyEntry.objects.select_related("tunnel").filter(pk=entry_id).first()
    if entry is None:
        raise NotFound(f"there is no proxy entry with id {entry_id}")
    return entry


@router.get(
    "/domains/{domain_id}/proxy-entries", response={200: list[EntryOut], **errors(404, 422)}
)
def list_entries(request: HttpRequest, domain_id: Id) -> list[EntryOut]:
    return [entry_out(e) for e in domain_get(domain_id).entries.all()]


@router.post(
    "/domains/{domain_id}/proxy-entries",
    response={201: EntryOut, **errors(400, 404, 409, 422, 502)},
)
def create_entry(request: HttpRequest, domain_id: Id, body: EntryIn) -> Status[EntryOut]:
    """Publish 127.0.0.1:`home_port` as `hostname` (the domain's name when omitted), or with
    scheme tcp on a public port the cloud gives (`public_port`): the cloud maps it to a tunnel
    port of this home, for the `allow` networks only when given. The tunnel starts closed."""
    domain = domain_get(domain_id)
    hostname = "" if body.scheme == "tcp" else body.hostname or domain.name
    entry = services.entry_create(
        domain, hostname, body.home_port, body.proxy_protocol, body.scheme, body.allow
    )
    return Status(201, entry_out(_entry(entry.pk)))


@router.patch(
    "/proxy-entries/{entry_id}/allow", response={200: EntryOut, **errors(400, 404, 422, 502)}
)
def set_allow(request: HttpRequest, entry_id: Id, body: EntryAllowIn) -> EntryOut:
    """Replace the networks the cloud's edge lets through to this entry (empty: all)."""
    services.entry_allow(_entry(entry_id), body.allow)
    return entry_out(_entry(entry_id))


@router.get("/proxy-entries/{entry_id}", response={200: EntryOut, **errors(404, 422)})
def get_entry(request: HttpRequest, entry_id: Id) -> EntryOut:
    return entry_out(_entry(entry_id))


@router.delete("/proxy-entries/{entry_id}", response={204: None, **errors(404, 422, 502)})
def delete_entry(request: HttpRequest, entry_id: Id) -> Status[None]:
    """Stop the tunnel, remove the cloud mapping, delete the entry."""
    services.entry_delete(_entry(entry_id))
    return Status(204, None)


@router.post("/proxy-entries/{entry_id}/tunnel", response={202: EntryOut, **errors(404, 409, 422)})
def set_tunnel(request: HttpRequest, entry_id: Id, body: TunnelIn) -> Status[EntryOut]:
    """Ask for the tunnel open or closed; the supervisor converges the ssh process (poll
    `tunnel.state`: `opening` then `open`, or `failed` with `last_error`)."""
    services.entry_tunnel(_entry(entry_id), body.open)
    return Status(202, entry_out(_entry(entry_id)))
