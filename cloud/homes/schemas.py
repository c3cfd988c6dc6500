from __future__ import annotations

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


class MappingOut(Schema):
    host: str
    scheme: str
    tunnel_port: int
    proxy_protocol: bool
    edge: Literal["routed", "pending", "unknown"] = Field(
        "pending", description="what the live HAProxy map says of this mapping"
    )
