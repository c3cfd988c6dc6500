"""Custom domains of a home: add one, see the TXT record that proves it, ask for a check,
delete it. Parse, authorize (a caller sees only its own home), call one service, return."""

from __future__ import annotations

from typing import Literal, cast

from django.http import HttpRequest
from ninja import Router

from cloud.accounts.auth import current_user
from cloud.domains import services
from cloud.domains.models import Domain
from cloud.domains.schemas import DomainIn, DomainOut, VerificationOut
from cloud.homes.services import home_of
from workers.common.api import errors

router = Router(tags=["domains"])


def domain_out(domain: Domain) -> DomainOut:
    return DomainOut(
        name=domain.name,
        status=cast(Literal["unverified", "verified", "failed"], domain.status),
        reason=domain.reason,
        verification=VerificationOut(name=domain.record_name, value=domain.token),
        failures=domain.failures,
        checked=domain.checked,
        next_check=domain.next_check,
        verified=domain.verified,
    )


@router.get("/{slug}/domains", response={200: list[DomainOut], **errors(404)})
def list_domains(request: HttpRequest, slug: str) -> list[DomainOut]:
    return [domain_out(d) for d in home_of(current_user(request), slug).domains.all()]


@router.post("/{slug}/domains", response={201: DomainOut, **errors(404, 409, 422)})
def add_domain(request: HttpRequest, slug: str, body: DomainIn) -> tuple[int, DomainOut]:
    """Ask to own a custom domain (and every name below it). Create the TXT record named in
    `verification`, then ask for a check with `POST .../verify`; it is also checked on a
    schedule with backoff, and daily once verified."""
    home = home_of(current_user(request), slug)
    return 201, domain_out(services.domain_add(home, body.name))


@router.get("/{slug}/domains/{name}", response={200: DomainOut, **errors(404)})
def get_domain(request: HttpRequest, slug: str, name: str) -> DomainOut:
    return domain_out(services.domain_of(home_of(current_user(request), slug), name))


@router.delete("/{slug}/domains/{name}", response={204: None, **errors(404)})
def delete_domain(request: HttpRequest, slug: str, name: str) -> tuple[int, None]:
    """Give the domain up: the home's mappings under it and their routes go with it."""
    services.domain_delete(services.domain_of(home_of(current_user(request), slug), name))
    return 204, None


@router.post("/{slug}/domains/{name}/verify", response={202: DomainOut, **errors(404, 409)})
def verify_domain(request: HttpRequest, slug: str, name: str) -> tuple[int, DomainOut]:
    """Check the TXT record now (in the background): poll the domain for its status."""
    domain = services.domain_of(home_of(current_user(request), slug), name)
    services.domain_verify(domain)
    return 202, domain_out(domain)
