"""The cloud's view of this home's traffic: the worker asks the cloud API for the home's
mappings (each with its tunnel port's traffic) every CLOUDATHOME_TRAFFIC_REFRESH_SECONDS and
keeps it per tunnel; the pages and the API read what it kept."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from home.cloudlink.client import CloudError
from home.cloudlink.config import ConfigError
from home.cloudlink.services import cloud, link
from home.traffic.models import EdgeTraffic
from home.tunnels.models import Tunnel

log = logging.getLogger(__name__)


def traffic_refresh() -> int:
    """Fetch and keep what the cloud says of each tunnel port; returns the tunnels updated. A
    cloud that does not answer leaves what was kept (its age shows on the pages)."""
    try:
        mappings = cloud().mappings(link().home_slug)
    except (ConfigError, CloudError) as exc:
        log.info("traffic: not refreshed: %s", exc)
        return 0
    by_port: dict[int, dict[str, Any]] = {}
    for mapping in mappings:
        if "traffic" in mapping:  # a cloud without traffic counting says nothing of it
            by_port.setdefault(int(mapping["tunnel_port"]), mapping["traffic"])
    now = timezone.now()
    with transaction.atomic():
        tunnels = Tunnel.objects.filter(remote_port__in=by_port)
        for tunnel in tunnels:
            seen = by_port[tunnel.remote_port]
            EdgeTraffic.objects.update_or_create(
                tunnel=tunnel,
                defaults={
                    "connected": seen["connected"],
                    "connections_current": seen["connections_current"],
                    "connections_total": seen["connections_total"],
                    "bytes_in": seen["bytes_in"],
                    "bytes_out": seen["bytes_out"],
                    "history": seen["history"],
                    "fetched_at": now,
                },
            )
        # A tunnel the cloud no longer maps carries nothing there.
        EdgeTraffic.objects.exclude(tunnel__in=tunnels).delete()
    return len(by_port)
