"""Domains and proxy entries API: parse, call one service, return. Long work (certificates,
tunnel processes) is queued; the answer shows the state to poll."""

from __future__ import annotations

from typing import Annotated

from django.db.models import QuerySet
from django.http import HttpRequest
from ninja import Path, Router, Status

from home.domains import services
from home.domains.models import Domain, ProxyEntry
from home.domains.schemas import (
    DomainIn,
    DomainOut,
    EntryIn,
    EntryOut,
    TunnelIn,
    domain_out,
    entry_out,
)
from workers.common.errors import NotFound

router = Router(tags=["domains"])
entries_router = Router(tags=["proxy entries"])

# Bounded so an absurd id is a 422 naming the parameter, not a database overflow.
Id = Annotated[int, Path(ge=1, le=2**63 - 1)]


def _domains() -> QuerySet[Domain]:
    return Domain.objects.prefetch_related("entries__tunnel")


def _domain(domain_id: int) -> Domain:
    domain = _domains().filter(pk=domain_id).first()
    if domain is None:
        raise NotFound(f"there is no domain with id {domain_id}")
    return domain


def _entry(entry_id: int) -> ProxyEntry:
    entry = ProxyEntry.objects.select_related("tunnel").filter(pk=entry_id).first()
    if entry is None:
        raise NotFound(f"there is no proxy entry with id {entry_id}")
    return entry


@router.get("", response=list[DomainOut])
def list_domains(request: HttpRequest) -> list[DomainOut]:
    return [domain_out(d) for d in _domains()]


@router.post("", response={201: DomainOut})
def create_domain(request: HttpRequest, body: DomainIn) -> Status[DomainOut]:
    """Add a domain; its certificate is issued in the background (`job.state` goes from
    `pending` to `running`, then `done` or `failed` with `job.error`)."""
    domain = services.domain_create(
        body.name, body.email, body.cert_dir, body.challenge, body.post_renew_command
    )
    return Status(201, domain_out(_domain(domain.pk)))


@router.get("/{domain_id}", response=DomainOut)
def get_domain(request: HttpRequest, domain_id: Id) -> DomainOut:
    return domain_out(_domain(domain_id))


@router.delete("/{domain_id}", response={204: None})
def delete_domain(request: HttpRequest, domain_id: Id) -> Status[None]:
    """Delete a domain with its proxy entries (their tunnels stop, their cloud mappings go).
    The certificate files stay where they are."""
    services.domain_delete(_domain(domain_id))
    return Status(204, None)


@router.post("/{domain_id}/renew", response={202: DomainOut})
def renew_domain(request: HttpRequest, domain_id: Id) -> Status[DomainOut]:
    """Queue a forced certificate run now (409 while one is queued or running)."""
    domain = _domain(domain_id)
    services.domain_renew(domain)
    return Status(202, domain_out(_domain(domain.pk)))


@router.get("/{domain_id}/proxy-entries", response=list[EntryOut])
def list_entries(request: HttpRequest, domain_id: Id) -> list[EntryOut]:
    return [entry_out(e) for e in _domain(domain_id).entries.all()]


@router.post("/{domain_id}/proxy-entries", response={201: EntryOut})
def create_entry(request: HttpRequest, domain_id: Id, body: EntryIn) -> Status[EntryOut]:
    """Publish 127.0.0.1:`home_port` as `hostname` (the domain's name when omitted): the
    cloud maps the hostname to a tunnel port of this home. The tunnel starts closed."""
    domain = _domain(domain_id)
    entry = services.entry_create(
        domain, body.hostname or domain.name, body.home_port, body.proxy_protocol
    )
    return Status(201, entry_out(_entry(entry.pk)))


@entries_router.get("/{entry_id}", response=EntryOut)
def get_entry(request: HttpRequest, entry_id: Id) -> EntryOut:
    return entry_out(_entry(entry_id))


@entries_router.delete("/{entry_id}", response={204: None})
def delete_entry(request: HttpRequest, entry_id: Id) -> Status[None]:
    """Stop the tunnel, remove the cloud mapping, delete the entry."""
    services.entry_delete(_entry(entry_id))
    return Status(204, None)


@entries_router.post("/{entry_id}/tunnel", response={202: EntryOut})
def set_tunnel(request: HttpRequest, entry_id: Id, body: TunnelIn) -> Status[EntryOut]:
    """Ask for the tunnel open or closed; the supervisor converges the ssh process (poll
    `tunnel.state`: `opening` then `open`, or `failed` with `last_error`)."""
    services.entry_tunnel(_entry(entry_id), body.open)
    return Status(202, entry_out(_entry(entry_id)))
