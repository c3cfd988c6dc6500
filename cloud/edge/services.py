"""The cloud's doors to its edge processes: HAProxy maps (routes) and sshd identities
(accounts). Views and API handlers never reach these; home and mapping services do."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import cast

from django.conf import settings

from cloud.edge import haproxy, sshd
from cloud.homes.models import HomeStatus, ProxyMapping
from workers.locks import exclusive

log = logging.getLogger(__name__)


def edge_config() -> haproxy.EdgeConfig:
    return haproxy.EdgeConfig(
        state_dir=Path(settings.STATE_DIR),
        https_port=settings.HTTPS_PORT,
        http_port=settings.HTTP_PORT,
        bind=settings.EDGE_BIND,
    )


def sshd_config() -> sshd.SshdConfig:
    return sshd.SshdConfig(
        state_dir=Path(settings.STATE_DIR),
        port=settings.SSH_PORT,
        listen=settings.SSH_BIND,
        mode=cast(sshd.Mode, settings.SSH_MODE),
        account=settings.SSH_ACCOUNT,
    )


def ssh_accounts() -> sshd.Accounts:
    return sshd.accounts_for(sshd_config())


def desired_routes() -> list[haproxy.Route]:
    """Every mapping of a ready home; a home being released or failed routes nothing."""
    rows = ProxyMapping.objects.filter(home__status=HomeStatus.READY).values_list(
        "host", "tunnel_port", "scheme", "proxy_protocol"
    )
    return [
        haproxy.Route(host, port, cast(haproxy.Scheme, scheme), pp)
        for host, port, scheme, pp in rows
    ]


def edge_sync() -> haproxy.SyncResult:
    """Converge HAProxy's live maps (and map files) on the database. Serialized: two
    workers applying diffs computed from different snapshots would undo each other."""
    with exclusive(settings.REDIS_URL, "edge-sync"):
        result = haproxy.Edge(edge_config()).sync(desired_routes())
    if result.added or result.changed or result.removed:
        log.info("edge sync: %s", result)
    return result


def edge_update(host: str) -> haproxy.SyncResult:
    """Converge one hostname after a mapping change: routable in a lookup's time whatever
    the size of the maps; the full diff stays with edge_sync (beat, worker start)."""
    with exclusive(settings.REDIS_URL, "edge-sync"):
        everything = desired_routes()
        return haproxy.Edge(edge_config()).update(
            host, [r for r in everything if r.host == host], everything
        )


def edge_live_routes() -> list[haproxy.Route]:
    return haproxy.Edge(edge_config()).live_routes()


def ssh_host_key() -> str:
    """The public host key of our sshd, for homes to pin ("" before the first start)."""
    try:
        return sshd.host_key_line(sshd_config())
    except FileNotFoundError:
        return ""


def haproxy_prepare() -> list[str]:
    """Install a checked haproxy.cfg (and empty maps on first run); the argv to run it."""
    cfg = edge_config()
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
