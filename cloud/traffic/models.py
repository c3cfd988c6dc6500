"""What one route (a tunnel port of a ready home) carried, kept by the traffic sampler: totals
since its first sample, HAProxy's counters as last read (to take differences from), and the
samples of the last hour for the charts."""

from __future__ import annotations

from django.db import models


class RouteTraffic(models.Model):
    port = models.PositiveIntegerField(unique=True)
    connections = models.BigIntegerField(default=0)
    bytes_in = models.BigIntegerField(default=0)
    bytes_out = models.BigIntegerField(default=0)
    # st_route's counters at the last sample, and the HAProxy worker that kept them: a new
    # worker (restart, reload) starts every counter from zero again.
    seen_connections = models.BigIntegerField(default=0)
    seen_bytes_in = models.BigIntegerField(default=0)
    seen_bytes_out = models.BigIntegerField(default=0)
    seen_generation = models.CharField(max_length=64, blank=True)
    sampled_at = models.DateTimeField(null=True, blank=True)
    # One [unix time, new connections, bytes in, bytes out, open connections, tunnel up (1, 0
    # or null)] per sample of the last hour, oldest first: one row per route, rewritten by
    # each sample, instead of a row per sample to insert and prune.
    samples = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["port"]
        verbose_name_plural = "route traffic"

    def __str__(self) -> str:
        return f":{self.port} ({self.connections} connections)"
