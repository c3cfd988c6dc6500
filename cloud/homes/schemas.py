from __future__ import annotations

from datetime import datetime
from typing import Literal

from ninja import Field, Schema


class HomeIn(Schema):
    public_key: str = Field(..., max_length=16384)
    label: str | None = Field(
        None, max_length=63, description="its label under the base domain (default: from the user)"
    )


class HomeOut(Schema):
    slug: str
    index: int
    status: str
    status_detail: str
    ssh_username: str
    ssh_host: str
    ssh_port: int
    ssh_host_key: str
    port_base: int
    port_count: int
    base_domain: str | None = Field(
        None, description="the name this home owns under the base domain, with all below it"
    )


class MappingIn(Schema):
    host: str = Field("", max_length=253, description="the public name; empty for tcp")
    scheme: Literal["https", "http", "tcp"] = "https"
    tunnel_port: int | None = Field(None, ge=1, le=65535)
    proxy_protocol: bool = False
    public_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="tcp only: the edge's port, within CLOUDATHOME_TCP_PORTS (default: the "
        "lowest free one)",
    )
    allow: list[str] = Field(
        default_factory=list,
        max_length=256,
        description="client networks (CIDR, IPv4 or IPv6) the mapping serves; empty: all",
    )


class MappingAllowIn(Schema):
    allow: list[str] = Field(
        ...,
        max_length=256,
        description="client networks (CIDR, IPv4 or IPv6) the mapping serves; empty: all",
    )


class TrafficSampleOut(Schema):
    at: datetime = Field(..., description="end of the sampling period")
    connections: int = Field(..., description="connections that came in the period")
    bytes_in: int = Field(..., description="bytes from clients in the period")
    bytes_out: int = Field(..., description="bytes to clients in the period")
    current: int = Field(..., description="connections open at its end")
    connected: bool | None = Field(..., description="the tunnel was up at its end")


class TrafficOut(Schema):
    connected: bool | None = Field(
        ...,
        description="the home's tunnel for this mapping is up right now (its tunnel port listens "
        "at the cloud); null when the cloud cannot tell",
    )
    connections_current: int | None = Field(
        ..., description="connections open now; null when HAProxy did not answer"
    )
    connections_total: int
    bytes_in: int = Field(..., description="bytes from clients in all")
    bytes_out: int = Field(..., description="bytes to clients in all")
    history: list[TrafficSampleOut] = Field(
        ...,
        description="the last hour, one sample per CLOUDATHOME_TRAFFIC_SAMPLE_SECONDS, oldest "
        "first",
    )


class MappingOut(Schema):
    host: str = Field(..., description="the public name; empty for tcp")
    scheme: str
    tunnel_port: int
    proxy_protocol: bool
    public_port: int | None = Field(..., description="tcp: the edge's port clients dial")
    allow: list[str] = Field(..., description="client networks served; empty: all")
    edge: Literal["routed", "pending", "unknown"] = Field(
        "pending", description="what the live HAProxy map says of this mapping"
    )
    traffic: TrafficOut = Field(
        ...,
        description="what the edge counted for this mapping's tunnel port (mappings sharing a "
        "port share it), totals since the port was first used by this home",
    )
