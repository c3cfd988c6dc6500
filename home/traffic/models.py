"""What the cloud's edge last said of each tunnel port (mapping list of the cloud API): whether
the tunnel is up at the cloud, connections and bytes, and the last hour's samples. A periodic
task keeps it, so no page render calls the cloud."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import models

from home.tunnels.models import Tunnel


@dataclass(frozen=True)
class Sample:
    """One sample of the cloud's, as the chart draws it."""

    at: dt.datetime
    connections: int
    bytes_in: int
    bytes_out: int


class EdgeTraffic(models.Model):
    tunnel = models.OneToOneField(Tunnel, on_delete=models.CASCADE, related_name="edge_traffic")
    # None: the cloud could not tell (its tunnel listeners or HAProxy out of its sight).
    connected = models.BooleanField(null=True)
    connections_current = models.PositiveIntegerField(null=True)
    connections_total = models.BigIntegerField(default=0)
    bytes_in = models.BigIntegerField(default=0)
    bytes_out = models.BigIntegerField(default=0)
    # The cloud's samples of the last hour as its API gives them (`at` in ISO 8601).
    history = models.JSONField(default=list, blank=True)
    fetched_at = models.DateTimeField()

    class Meta:
        verbose_name_plural = "edge traffic"

    def __str__(self) -> str:
        return f"{self.tunnel.name}: {self.connections_total} connections"

    def samples(self) -> list[Sample]:
        return [
            Sample(
                dt.datetime.fromisoformat(s["at"]), s["connections"], s["bytes_in"], s["bytes_out"]
            )
            for s in self.history
        ]
