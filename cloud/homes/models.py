"""Home slots (pre-provisioned rows, each owning a fixed tunnel port range) and the proxy
mappings that route a hostname to one of those ports."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class HomeStatus(models.TextChoices):
    FREE = "free"
    PROVISIONING = "provisioning"
    READY = "ready"
    FAILED = "failed"
    RELEASING = "releasing"


class Home(models.Model):
    index = models.PositiveIntegerField(unique=True)
    slug = models.CharField(max_length=32, unique=True, null=True, blank=True)
    owner = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="home",
    )
    public_key = models.TextField(blank=True)
    # The home's SSH identity: its system user (system-users mode) or the tag of its key line
    # in the service account's keys file (single-account mode, where ssh_username is shared).
    identity = models.CharField(max_length=32, blank=True)
    ssh_username = models.CharField(max_length=32, blank=True)
    # The home's one label under the operator's base domain (`alice` of alice.homes.example.com);
    # set when a base domain is configured, freed with the slot.
    label = models.CharField(max_length=63, unique=True, null=True, blank=True)
    status = models.CharField(max_length=16, choices=HomeStatus.choices, default=HomeStatus.FREE)
    status_detail = models.TextField(blank=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["index"]

    def __str__(self) -> str:
        return f"home {self.index:02d} ({self.slug or 'free'})"

    # Port math: slot i owns PORT_BASE + i*PORT_STRIDE .. + PORTS_PER_HOME-1.
    @property
    def port_base(self) -> int:
        return int(settings.PORT_BASE + self.index * settings.PORT_STRIDE)

    @property
    def port_count(self) -> int:
        return int(settings.PORTS_PER_HOME)

    @property
    def ports(self) -> range:
        return range(self.port_base, self.port_base + self.port_count)


class Scheme(models.TextChoices):
    HTTPS = "https"
    HTTP = "http"
    TCP = "tcp"


class ProxyMapping(models.Model):
    home = models.ForeignKey(Home, on_delete=models.CASCADE, related_name="mappings")
    # The published name (https, http); a tcp mapping has none, its public port instead.
    host = models.CharField(max_length=253, blank=True)
    scheme = models.CharField(max_length=5, choices=Scheme.choices, default=Scheme.HTTPS)
    tunnel_port = models.PositiveIntegerField()
    proxy_protocol = models.BooleanField(default=False)
    # The edge's port of a tcp mapping, from CLOUDATHOME_TCP_PORTS: unique, so two homes
    # racing for one port cannot both get it.
    public_port = models.PositiveIntegerField(null=True, blank=True, unique=True)
    # Client networks the mapping serves, in normal form (workers.common.networks); empty: all.
    allow = models.JSONField(default=list, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["scheme", "host", "public_port"]
        # A hostname may have an https route (:443, SNI) and an http route (:80, Host, e.g.
        # ACME HTTP-01 renewals) at once; both belong to the same home (checked in services).
        constraints = [
            models.UniqueConstraint(
                fields=["host", "scheme"],
                condition=~models.Q(scheme="tcp"),
                name="mapping_host_scheme",
            ),
            models.CheckConstraint(
                condition=(models.Q(scheme="tcp", public_port__isnull=False, host=""))
                | (~models.Q(scheme="tcp") & models.Q(public_port__isnull=True)),
                name="mapping_tcp_has_a_public_port",
            ),
        ]

    def __str__(self) -> str:
        if self.scheme == Scheme.TCP:
            return f"tcp :{self.public_port} -> :{self.tunnel_port}"
        return f"{self.scheme}://{self.host} -> :{self.tunnel_port}"
