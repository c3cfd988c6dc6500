"""The cloud's doors to its edge processes: HAProxy maps (routes) and sshd identities
(accounts). Views and API handlers never reach these; home and mapping services do."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import cast

from django.conf import settings

from cloud.edge import haproxy, sshd
from cloud.homes.models import HomeStatus, ProxyMapping
from workers.celery import TransientError
from workers.common.metrics import Timing, timed
from workers.common.supervise import WEB_THREADS
from workers.locks import exclusive, redis_client

log = logging.getLogger(__name__)

EDGE_SYNC = Timing(
    "cloudathome_edge_sync_seconds",
    "Edge syncs of HAProxy's maps: full (every route) or host (one name after a change)",
    ("kind", "outcome"),
)


def edge_config() -> haproxy.EdgeConfig:
    return haproxy.EdgeConfig(
        state_dir=Path(settings.STATE_DIR),
        https_port=settings.HTTPS_PORT,
        http_port=settings.HTTP_PORT,
        bind=settings.EDGE_BIND,
        traffic_counters=settings.EDGE_TRAFFIC_COUNTERS,
        maxconn=settings.EDGE_MAXCONN,
        limits=settings.EDGE_LIMITS,
        web_port=settings.WEB_PORT,
        web_bind=settings.WEB_BIND,
        web_threads=WEB_THREADS,
        public_host=settings.PUBLIC_HOST if settings.PUBLIC_TLS else None,
        tcp_ports=settings.TCP_PORTS,
    )


def sshd_config() -> sshd.SshdConfig:
    return sshd.SshdConfig(
        state_dir=Path(settings.STATE_DIR),
        port=settings.SSH_PORT,
        listen=settings.SSH_BIND,
        mode=cast(sshd.Mode, settings.SSH_MODE),
        account=settings.SSH_ACCOUNT,
        group=sshd.homes_group(settings.SSH_USER_PREFIX),
        source_startups=settings.SSH_SOURCE_STARTUPS,
        login_grace_s=settings.SSH_LOGIN_GRACE,
        max_startups=settings.SSH_MAX_STARTUPS,
        home_sessions=settings.SSH_HOME_SESSIONS,
    )


def ssh_accounts() -> sshd.Accounts:
    return sshd.accounts_for(sshd_config())


def desired_routes(host: str | None = None) -> list[haproxy.Route]:
    """Every mapping of a ready home (of `host` only, when given); a home being released or
    failed routes nothing."""
    mappings = ProxyMapping.objects.filter(home__status=HomeStatus.READY)
    if host is not None:
        mappings = mappings.filter(host=host)
    rows = mappings.values_list(
        "host", "tunnel_port", "scheme", "proxy_protocol", "public_port", "allow"
    )
    return [
        haproxy.Route(host, port, cast(haproxy.Scheme, scheme), pp, public, tuple(allow))
        for host, port, scheme, pp, public, allow in rows
    ]


def edge_sync() -> haproxy.SyncResult:
    """Converge HAProxy's live maps (and map files) on the database. Serialized: two
    workers applying diffs computed from different snapshots would undo each other."""
    with (
        exclusive(settings.REDIS_URL, "edge-sync"),
        exclusive(settings.REDIS_URL, "edge-files"),
        timed(EDGE_SYNC, "full"),
    ):
        result = haproxy.Edge(edge_config()).sync(desired_routes())
    if result.added or result.changed or result.removed:
        log.info("edge sync: %s", result)
    return result


def edge_update(host: str) -> haproxy.SyncResult:
    """Converge one hostname after a mapping change: the live maps first, in a lookup's time
    whatever their size; then the files, for HAProxy's next start (a crash in between is
    healed by the full sync that beat and every worker start run)."""
    edge = haproxy.Edge(edge_config())
    with exclusive(settings.REDIS_URL, "edge-sync"), timed(EDGE_SYNC, "host"):
        result = edge.update(host, desired_routes(host))
    _write_map_files(edge)
    return result


def _write_map_files(edge: haproxy.Edge) -> None:
    """Coalesced: each change bumps a generation; one writer at a time writes the files from
    the database until no change came in meanwhile, and a change that finds a writer at
    work leaves the job to it instead of queueing (a 10,000-route write takes ~0.1 s)."""
    client = redis_client(settings.REDIS_URL)
    key = "cloudathome:edge-files:generation"
    client.incr(key)
    while True:
        try:
            with exclusive(settings.REDIS_URL, "edge-files", wait=0):
                while True:
                    written = client.get(key)
                    edge.write_maps(edge.desired_maps(desired_routes()))
                    if client.get(key) == written:
                        break
        except TransientError:
            return  # the writer at work re-checks the generation once it lets go
        # A change may have come between the last check and letting go of the lock.
        if client.get(key) == written:
            return


def edge_live_routes() -> list[haproxy.Route]:
    return haproxy.Edge(edge_config()).live_routes()


def ssh_host_key() -> str:
    """The public host key of our sshd, for homes to pin ("" before the first start)."""
    try:
        return sshd.host_key_line(sshd_config())
    except FileNotFoundError:
        return ""


def haproxy_prepare() -> list[str]:
    """Raise the open-file limit HAProxy inherits, install a checked haproxy.cfg rendered for
    it (and on first run empty maps and the public host's placeholder certificate); the argv
    to run it."""
    cfg = edge_config()
    short = haproxy.raise_nofile(cfg)
    if short:
        log.warning("%s", short)
    haproxy.write_config(cfg)
    return haproxy.config_command(cfg)


def haproxy_ready() -> bool:
    try:
        haproxy.RuntimeAPI(edge_config().socket_path, timeout=1).command("show info")
    except haproxy.EdgeError:
        return False
    return True


def sshd_prepare() -> list[str]:
    """Host keys, checked sshd_config and key folders of our own sshd; the argv to run it."""
    cfg = sshd_config()
    sshd.prepare(cfg)
    return sshd.command(cfg)
