"""Homes and proxy mappings API: parse, authorize (a caller sees only its own home), call
one service, return."""

from __future__ import annotations

import dataclasses
from typing import Literal

from django.conf import settings
from django.http import HttpRequest
from ninja import Router

from cloud.accounts.auth import current_user
from cloud.domains import services as names
from cloud.edge import services as edge
from cloud.homes import services
from cloud.homes.models import Home
from cloud.homes.schemas import (
    HomeIn,
    HomeOut,
    MappingAllowIn,
    MappingIn,
    MappingOut,
    TrafficOut,
    TrafficSampleOut,
)
from workers.common.api import errors

router = Router(tags=["homes"])


def home_out(home: Home) -> HomeOut:
    return HomeOut(
        slug=home.slug or "",
        index=home.index,
        status=home.status,
        status_detail=home.status_detail,
        ssh_username=home.ssh_username,
        ssh_host=settings.PUBLIC_HOST,
        ssh_port=settings.SSH_PORT,
        ssh_host_key=edge.ssh_host_key(),
        port_base=home.port_base,
        port_count=home.port_count,
        base_domain=names.base_domain(home),
    )


def mapping_out(state: services.MappingState) -> MappingOut:
    m, t = state.mapping, state.traffic
    return MappingOut(
        host=m.host,
        scheme=m.scheme,
        tunnel_port=m.tunnel_port,
        proxy_protocol=m.proxy_protocol,
        public_port=m.public_port,
        allow=list(m.allow),
        edge=state.edge,
        traffic=TrafficOut(
            connected=t.connected,
            connections_current=t.current,
            connections_total=t.connections,
            bytes_in=t.bytes_in,
            bytes_out=t.bytes_out,
            history=[TrafficSampleOut(**dataclasses.asdict(sample)) for sample in t.samples],
        ),
    )


@router.post("", response={201: HomeOut, **errors(400, 409, 422)})
def claim_home(request: HttpRequest, body: HomeIn) -> tuple[int, HomeOut]:
    """Claim a home slot with an SSH public key; provisioning continues in the background
    (status goes from `provisioning` to `ready` or `failed`)."""
    return 201, home_out(services.home_claim(current_user(request), body.public_key, body.label))


@router.get("", response={200: list[HomeOut], **errors()})
def list_homes(request: HttpRequest) -> list[HomeOut]:
    return [home_out(h) for h in Home.objects.filter(owner=current_user(request))]


@router.get("/{slug}", response={200: HomeOut, **errors(404)})
def get_home(request: HttpRequest, slug: str) -> HomeOut:
    return home_out(services.home_of(current_user(request), slug))


@router.delete("/{slug}", response={204: None, **errors(404, 409)})
def release_home(request: HttpRequest, slug: str) -> tuple[int, None]:
    services.home_release(services.home_of(current_user(request), slug))
    return 204, None


@router.get("/{slug}/proxy-mappings", response={200: list[MappingOut], **errors(404)})
def list_mappings(request: HttpRequest, slug: str) -> list[MappingOut]:
    home = services.home_of(current_user(request), slug)
    return [mapping_out(state) for state in services.mappings_with_state(home)]


@router.post(
    "/{slug}/proxy-mappings", response={201: MappingOut, **errors(400, 403, 404, 409, 422)}
)
def create_mapping(request: HttpRequest, slug: str, body: MappingIn) -> tuple[int, MappingOut]:
    """Map a hostname (https, http), or a public port of the edge (tcp, no host), to a tunnel
    port of this home (the cloud picks free ports when `tunnel_port` or `public_port` is
    omitted), for the `allow` networks only when given. Routable within a fraction of a
    second, no reload."""
    home = services.home_of(current_user(request), slug)
    mapping = services.mapping_create(
        home,
        body.host,
        body.scheme,
        body.tunnel_port,
        body.proxy_protocol,
        body.public_port,
        body.allow,
    )
    return 201, mapping_out(services.mapping_state(mapping))


@router.patch(
    "/{slug}/proxy-mappings/{host}", response={200: list[MappingOut], **errors(400, 404, 422)}
)
def set_mapping_allow(
    request: HttpRequest,
    slug: str,
    host: str,
    body: MappingAllowIn,
    scheme: Literal["https", "http", "tcp"] | None = None,
) -> list[MappingOut]:
    """Replace the allowlist of the hostname's mappings (only the `scheme` one when given;
    with `scheme=tcp`, `host` is the public port). Applied at the edge at run time."""
    home = services.home_of(current_user(request), slug)
    changed = services.mapping_allow(home, host, scheme, body.allow)
    return [mapping_out(services.mapping_state(m)) for m in changed]


@router.delete("/{slug}/proxy-mappings/{host}", response={204: None, **errors(400, 404, 422)})
def delete_mapping(
    request: HttpRequest,
    slug: str,
    host: str,
    scheme: Literal["https", "http", "tcp"] | None = None,
) -> tuple[int, None]:
    """Delete the hostname's mappings (only the `scheme` one when given; with `scheme=tcp`,
    `host` is the public port, which is free again)."""
    services.mapping_delete(services.home_of(current_user(request), slug), host, scheme)
    return 204, None
