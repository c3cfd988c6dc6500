"""Domains API: parse, call one service, return. The certificate is issued in the
background; the answer shows the job to poll."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router, Status

from home.certs import services
from home.certs.models import Domain
from home.certs.schemas import DomainIn, DomainOut, Id, domain_out
from workers.common.api import errors

router = Router(tags=["domains"])


@router.get("", response={200: list[DomainOut], **errors()})
def list_domains(request: HttpRequest) -> list[DomainOut]:
    return [domain_out(d) for d in services.with_entries(Domain.objects.all())]


@router.post("", response={201: DomainOut, **errors(400, 409, 422)})
def create_domain(request: HttpRequest, body: DomainIn) -> Status[DomainOut]:
    """Add a domain; its certificate is issued in the background (`job.state` goes from
    `pending` to `running`, then `done` or `failed` with `job.error`). A name this home does
    not own yet waits in `waiting` for the TXT record that `ownership.record` shows; a name
    under its base domain needs none."""
    domain = services.domain_create(
        body.name, body.email, body.cert_dir, body.challenge, body.post_renew_action
    )
    return Status(201, domain_out(services.domain_get(domain.pk)))


@router.get("/{domain_id}", response={200: DomainOut, **errors(404, 422)})
def get_domain(request: HttpRequest, domain_id: Id) -> DomainOut:
    return domain_out(services.domain_get(domain_id))


@router.delete("/{domain_id}", response={204: None, **errors(404, 422, 502)})
def delete_domain(request: HttpRequest, domain_id: Id) -> Status[None]:
    """Delete a domain with its proxy entries (their tunnels stop, their cloud mappings go).
    The certificate files stay where they are."""
    services.domain_delete(services.domain_get(domain_id))
    return Status(204, None)


@router.post("/{domain_id}/renew", response={202: DomainOut, **errors(404, 409, 422)})
def renew_domain(request: HttpRequest, domain_id: Id) -> Status[DomainOut]:
    """Queue a forced certificate run now (409 while one is queued or running)."""
    services.domain_renew(services.domain_get(domain_id))
    return Status(202, domain_out(services.domain_get(domain_id)))


@router.post("/{domain_id}/verify", response={202: DomainOut, **errors(404, 409, 422, 502)})
def verify_domain(request: HttpRequest, domain_id: Id) -> Status[DomainOut]:
    """Ask the cloud to check the domain's TXT record now; the job starts by itself once the
    cloud says verified (`ownership.status`)."""
    services.domain_check_name(services.domain_get(domain_id))
    return Status(202, domain_out(services.domain_get(domain_id)))
