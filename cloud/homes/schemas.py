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
    host: str = Field(..., max_length=253)
    scheme: Literal["https", "http"] = "https"
    tunnel_port: int | None = Field(None, ge=1, le=65535)
    proxy_protocol: bool = False


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
    host: str
    scheme: str
    tunnel_port: int
    proxy_protocol: bool
    edge: Literal["routed", "pending", "unknown"] = Field(
        "pending", description="what the live HAProxy map says of this mapping"
    )
    traffic: TrafficOut = Field(
        ...,
        description="what the edge counted for this mapping's tunnel port (mappings sharing a "
        "port share it), totals since the port was first used by this home",
    )
