from __future__ import annotations

from datetime import datetime

from ninja import Field, Schema


class LiveRouteOut(Schema):
    host: str = Field(..., description="empty for tcp")
    scheme: str
    tunnel_port: int
    proxy_protocol: bool
    public_port: int | None = Field(..., description="tcp: the edge's port")
    allowlist: bool = Field(..., description="the route serves only its allowed networks")


class SyncOut(Schema):
    added: int
    changed: int
    removed: int


class ReconcileOut(Schema):
    provisioned: int
    released: int
    removed: int


class CertificateOut(Schema):
    """The certificate file HAProxy starts from."""

    serial: str
    issuer: str
    names: list[str]
    not_before: datetime
    not_after: datetime
    placeholder: bool
    served: bool | None  # HAProxy serves this one now (None: it cannot be asked)


class PublicCertOut(Schema):
    """The public host's certificate and the job that obtains and renews it."""

    host: str | None  # None: the cloud has no DNS name of its own (localhost or an address)
    state: str
    step: str
    error: str
    updated: datetime | None
    failures: int
    retry_after: datetime | None
    certificate: CertificateOut | None
