from __future__ import annotations

from ninja import Schema


class LiveRouteOut(Schema):
    host: str
    scheme: str
    tunnel_port: int
    proxy_protocol: bool


class SyncOut(Schema):
    added: int
    changed: int
    removed: int


class ReconcileOut(Schema):
    provisioned: int
    released: int
    removed: int
