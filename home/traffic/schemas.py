"""Out schema of what the cloud's edge last said of a tunnel (part of a proxy entry)."""

from __future__ import annotations

import datetime as dt

from ninja import Field, Schema

from home.traffic.models import EdgeTraffic


class EdgeSampleOut(Schema):
    at: dt.datetime
    connections: int
    bytes_in: int
    bytes_out: int


class EdgeTrafficOut(Schema):
    connected: bool | None = Field(
        ..., description="the tunnel is up at the cloud (its port listens there); null: unknown"
    )
    connections_current: int | None
    connections_total: int
    bytes_in: int = Field(..., description="bytes from clients in all")
    bytes_out: int = Field(..., description="bytes to clients in all")
    fetched_at: dt.datetime = Field(..., description="when the cloud said so")
    history: list[EdgeSampleOut] = Field(..., description="the cloud's samples of the last hour")


def edge_traffic_out(row: EdgeTraffic | None) -> EdgeTrafficOut | None:
    if row is None:
        return None
    return EdgeTrafficOut(
        connected=row.connected,
        connections_current=row.connections_current,
        connections_total=row.connections_total,
        bytes_in=row.bytes_in,
        bytes_out=row.bytes_out,
        fetched_at=row.fetched_at,
        history=[EdgeSampleOut(**vars(sample)) for sample in row.samples()],
    )
