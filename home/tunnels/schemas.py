"""In/Out schemas of the proxy-entries API (an entry with its tunnel's state)."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from ninja import Field, Schema

from home.traffic.schemas import EdgeTrafficOut, edge_traffic_out
from home.tunnels.models import ProxyEntry


class TunnelOut(Schema):
    desired: Literal["open", "closed"]
    state: str
    pid: int | None
    since: dt.datetime | None
    last_error: str


class EntryIn(Schema):
    hostname: str | None = Field(
        None, max_length=253, description="Defaults to the domain's name; none for tcp."
    )
    scheme: Literal["https", "tcp"] = Field(
        "https", description="https by name, or tcp: a public port of the cloud's edge"
    )
    home_port: int = Field(..., ge=1, le=65535, description="Your service on 127.0.0.1.")
    proxy_protocol: bool = False
    allow: list[str] = Field(
        default_factory=list,
        max_length=256,
        description="client networks (CIDR, IPv4 or IPv6) the edge lets through; empty: all",
    )


class EntryAllowIn(Schema):
    allow: list[str] = Field(..., max_length=256, description="empty: every client")


class EntryOut(Schema):
    id: int
    domain: int
    hostname: str = Field(..., description="empty for tcp")
    scheme: str
    public_port: int | None = Field(..., description="tcp: the cloud's port visitors dial")
    allow: list[str]
    home_port: int
    proxy_protocol: bool
    tunnel_port: int
    tunnel: TunnelOut
    traffic: EdgeTrafficOut | None = Field(
        None,
        description="what the cloud's edge counted for this entry's tunnel port, refreshed every "
        "CLOUDATHOME_TRAFFIC_REFRESH_SECONDS; null before the first refresh",
    )


class TunnelIn(Schema):
    open: bool


def entry_out(entry: ProxyEntry) -> EntryOut:
    tunnel = entry.tunnel
    return EntryOut(
        id=entry.pk,
        domain=entry.domain_id,
        hostname=entry.hostname,
        scheme=entry.scheme,
        public_port=entry.public_port,
        allow=list(entry.allow),
        home_port=entry.home_port,
        proxy_protocol=entry.proxy_protocol,
        tunnel_port=tunnel.remote_port,
        tunnel=TunnelOut(
            desired="open" if tunnel.desired_open else "closed",
            state=tunnel.state,
            pid=tunnel.pid,
            since=tunnel.since,
            last_error=tunnel.last_error,
        ),
        traffic=edge_traffic_out(getattr(tunnel, "edge_traffic", None)),
    )
