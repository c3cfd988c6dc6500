"""Proxy entries publish a home service under a hostname through a tunnel. A tunnel is desired
state (open or not) plus what was observed of its ssh process; the process itself is
identified by PID *and* start time so a recycled PID is never ours."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import models

from home.certs.models import Domain


class TunnelState(models.TextChoices):
    CLOSED = "closed"
    OPENING = "opening"
    OPEN = "open"
    FAILED = "failed"


class TunnelQuerySet(models.QuerySet["Tunnel"]):
    def free_port(self, ports: Iterable[int]) -> int | None:
        """The first of `ports` that no tunnel (permanent or temporary) holds."""
        used = set(self.values_list("remote_port", flat=True))
        return next((port for port in ports if port not in used), None)


class Tunnel(models.Model):
    name = models.CharField(max_length=300, unique=True)
    remote_port = models.PositiveIntegerField(unique=True)
    local_host = models.CharField(max_length=255, default="127.0.0.1")
    local_port = models.PositiveIntegerField()
    desired_open = models.BooleanField(default=False)
    state = models.CharField(max_length=8, choices=TunnelState.choices, default=TunnelState.CLOSED)
    pid = models.PositiveIntegerField(null=True, blank=True)
    start_time = models.BigIntegerField(null=True, blank=True)
    since = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    failures = models.PositiveIntegerField(default=0)
    retry_at = models.DateTimeField(null=True, blank=True)
    temporary = models.BooleanField(default=False, help_text="opened by a certificate flow")
    created = models.DateTimeField(auto_now_add=True)

    objects = TunnelQuerySet.as_manager()

    class Meta:
        ordering = ["remote_port"]

    def __str__(self) -> str:
        return f"{self.name} (:{self.remote_port} -> {self.local_host}:{self.local_port})"


class EntryScheme(models.TextChoices):
    HTTPS = "https"
    TCP = "tcp"


class ProxyEntry(models.Model):
    domain = models.ForeignKey(Domain, on_delete=models.CASCADE, related_name="entries")
    # The published name (https); a tcp entry has none: visitors dial any name of the cloud
    # (the domain's, say) at `public_port`, the port the cloud gave it.
    hostname = models.CharField(max_length=253, blank=True)
    scheme = models.CharField(max_length=5, choices=EntryScheme.choices, default=EntryScheme.HTTPS)
    public_port = models.PositiveIntegerField(null=True, blank=True)
    home_port = models.PositiveIntegerField()
    proxy_protocol = models.BooleanField(default=False)
    # Client networks the cloud's edge lets through (normal form); empty: everyone.
    allow = models.JSONField(default=list, blank=True)
    tunnel = models.OneToOneField(Tunnel, on_delete=models.PROTECT, related_name="entry")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["scheme", "hostname", "public_port"]
        verbose_name_plural = "proxy entries"
        constraints = [
            models.UniqueConstraint(
                fields=["hostname"], condition=~models.Q(hostname=""), name="entry_hostname"
            )
        ]

    def __str__(self) -> str:
        return f"{self.label} -> 127.0.0.1:{self.home_port}"

    @property
    def label(self) -> str:
        """How the pages name it: its hostname, or its public port."""
        return self.hostname or f"tcp port {self.public_port}"

    @property
    def cloud_key(self) -> str:
        """What the cloud's API names its mapping by (with its scheme)."""
        return self.hostname or str(self.public_port)
