"""The traffic of each route (a tunnel port of a ready home) and whether its tunnel is up. A beat
task samples HAProxy's per-route counters (st_route) and the tunnel listeners every
CLOUDATHOME_TRAFFIC_SAMPLE_SECONDS into RouteTraffic; the API and the dashboard read the stored
totals plus what HAProxy counted since the last sample, live. Mappings that share a tunnel port
share its figures: HAProxy counts per route, not per name."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from cloud.edge import haproxy, tunnels
from cloud.edge import services as edge
from cloud.homes.models import Home, HomeStatus, ProxyMapping
from cloud.traffic.models import RouteTraffic
from workers.locks import exclusive

log = logging.getLogger(__name__)

# How far back the samples (and the charts) go.
SPAN = dt.timedelta(hours=1)


@dataclass(frozen=True)
class Sample:
    """One sampling period of a route: what came in it, and the state at its end."""

    at: dt.datetime
    connections: int
    bytes_in: int
    bytes_out: int
    current: int
    connected: bool | None

    @classmethod
    def stored(cls, row: list) -> Sample:
        at, connections, bytes_in, bytes_out, current, connected = row
        up = None if connected is None else bool(connected)
        stamp = dt.datetime.fromtimestamp(at, dt.UTC)
        return cls(stamp, connections, bytes_in, bytes_out, current, up)


@dataclass(frozen=True)
class Traffic:
    """A route as the API shows it: its tunnel now (None: the cloud cannot tell), connections
    open now (None: HAProxy did not answer), totals, and the last hour's samples."""

    connected: bool | None
    current: int | None
    connections: int
    bytes_in: int
    bytes_out: int
    samples: list[Sample]


_ZERO = (0, 0, 0)


def _since_seen(
    row: RouteTraffic, live: haproxy.RouteCounters | None, generation: str
) -> tuple[int, int, int]:
    """What HAProxy counted for the route since the row's last sample."""
    if live is None:  # no entry: nothing came since it expired (or ever)
        return _ZERO
    now = (live.connections, live.bytes_in, live.bytes_out)
    seen = (row.seen_connections, row.seen_bytes_in, row.seen_bytes_out)
    # Another worker, or an entry that expired and started again: everything it holds is new.
    if row.seen_generation != generation or any(n < s for n, s in zip(now, seen, strict=True)):
        return now
    return (now[0] - seen[0], now[1] - seen[1], now[2] - seen[2])


def _ready_ports() -> set[int]:
    homes = Home.objects.filter(status=HomeStatus.READY).only("index")
    return {port for home in homes for port in home.ports}


def _connected(listening: set[int] | None, port: int) -> bool | None:
    return None if listening is None else port in listening


def traffic_sample() -> int:
    """Fold what HAProxy counted since the last sample into every route's totals and add a
    sample (beat); a run while another holds the lock does nothing. Returns the routes sampled."""
    with exclusive(settings.REDIS_URL, "traffic-sample", wait=0):
        return _sample(timezone.now())


def _sample(now: dt.datetime) -> int:
    api = haproxy.Edge(edge.edge_config())
    try:
        generation = api.generation()
        counters = api.route_counters()
    except haproxy.EdgeUnavailable:
        return 0  # nothing to fold: the next sample takes the differences from the last one
    listening = tunnels.tunnel_ports_listening(settings.SSH_PORT)
    owned = _ready_ports()
    mapped = set(
        ProxyMapping.objects.filter(home__status=HomeStatus.READY).values_list(
            "tunnel_port", flat=True
        )
    )
    rows = {row.port: row for row in RouteTraffic.objects.all() if row.port in owned}
    cutoff = (now - SPAN).timestamp()
    changed: list[RouteTraffic] = []
    new: list[RouteTraffic] = []
    for port in sorted((mapped | set(rows) | set(counters)) & owned):
        row = rows.get(port) or RouteTraffic(port=port)
        live = counters.get(port)
        connections, bytes_in, bytes_out = _since_seen(row, live, generation)
        row.connections += connections
        row.bytes_in += bytes_in
        row.bytes_out += bytes_out
        # A route with no entry starts again from zero when one is made.
        seen = (live.connections, live.bytes_in, live.bytes_out) if live else _ZERO
        row.seen_connections, row.seen_bytes_in, row.seen_bytes_out = seen
        row.seen_generation = generation
        row.sampled_at = now
        up = _connected(listening, port)
        current = live.current if live else 0
        sample = [now.timestamp(), connections, bytes_in, bytes_out, current, up]
        row.samples = [s for s in row.samples if s[0] >= cutoff] + [sample]
        (changed if row.pk else new).append(row)
    fields = [
        "connections",
        "bytes_in",
        "bytes_out",
        "seen_connections",
        "seen_bytes_in",
        "seen_bytes_out",
        "seen_generation",
        "sampled_at",
        "samples",
    ]
    # Routes of free slots keep the baseline their last release left (traffic_forget).
    with transaction.atomic():
        RouteTraffic.objects.bulk_update(changed, fields, batch_size=500)
        RouteTraffic.objects.bulk_create(new, batch_size=500)
    return len(changed) + len(new)


def traffic_of(ports: Iterable[int]) -> dict[int, Traffic]:
    """The routes of `ports` now: stored totals plus HAProxy's counts since the last sample
    (one lookup per port, whatever the size of the table)."""
    wanted = sorted(set(ports))
    rows = {row.port: row for row in RouteTraffic.objects.filter(port__in=wanted)}
    api = haproxy.Edge(edge.edge_config())
    counters: dict[int, haproxy.RouteCounters] | None
    try:
        generation = api.generation()
        counters = api.route_counters(wanted)
    except haproxy.EdgeError:
        generation, counters = "", None
    listening = tunnels.tunnel_ports_listening(settings.SSH_PORT)
    result = {}
    for port in wanted:
        row = rows.get(port) or RouteTraffic(port=port)
        live = counters.get(port) if counters is not None else None
        extra = _since_seen(row, live, generation) if counters is not None else _ZERO
        result[port] = Traffic(
            connected=_connected(listening, port),
            current=None if counters is None else (live.current if live else 0),
            connections=row.connections + extra[0],
            bytes_in=row.bytes_in + extra[1],
            bytes_out=row.bytes_out + extra[2],
            samples=[Sample.stored(s) for s in row.samples],
        )
    return result


# How long a release waits for the connections still open on its ports to end.
DRAIN = dt.timedelta(seconds=10)


def traffic_forget(ports: Iterable[int]) -> None:
    """Forget what `ports` carried (a released home's): their totals and samples go, and what
    HAProxy counted for them becomes the baseline the next sample takes differences from, so
    the ports' next owner starts from zero. HAProxy adds a connection's bytes as they flow and
    when it ends, so connections still open are waited for (at most DRAIN); clearing the
    entries at the edge instead would fail for any such connection. Raises EdgeError when a
    running HAProxy does not answer (the release is retried); one that is not running starts
    with empty tables."""
    wanted = sorted(set(ports))
    api = haproxy.Edge(edge.edge_config())
    # One lookup per port for a home; a bulk release reads the table once instead.
    lookup = wanted if len(wanted) <= 100 else None
    deadline = time.monotonic() + DRAIN.total_seconds()
    try:
        generation = api.generation()
        counters = api.route_counters(lookup)
        while any(c.current for p, c in counters.items() if p in wanted):
            if time.monotonic() > deadline:
                log.warning("traffic: connections still open on released ports %s", wanted)
                break
            time.sleep(0.2)
            counters = api.route_counters(lookup)
    except haproxy.EdgeUnavailable:
        generation, counters = "", {}
    baselines = []
    for port in wanted:
        live = counters.get(port)
        seen = (live.connections, live.bytes_in, live.bytes_out) if live else _ZERO
        baselines.append(
            RouteTraffic(
                port=port,
                seen_connections=seen[0],
                seen_bytes_in=seen[1],
                seen_bytes_out=seen[2],
                seen_generation=generation,
            )
        )
    with transaction.atomic():
        RouteTraffic.objects.filter(port__in=wanted).delete()
        RouteTraffic.objects.bulk_create(baselines, batch_size=500)


def tunnels_connected() -> int | None:
    """How many tunnel ports of ready homes are listening now (None: the cloud cannot tell)."""
    listening = tunnels.tunnel_ports_listening(settings.SSH_PORT)
    return None if listening is None else len(listening & _ready_ports())
