"""Small factories of the console's rows for in-process tests."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from home.certs.models import Domain
from home.tunnels.models import ProxyEntry, Tunnel

# Every label is legal; only the total (254 > 253) is not.
LONG_NAME = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 58, "com"])
assert len(LONG_NAME) == 254


def domain_body(**overrides: Any) -> dict[str, Any]:
    """What a client posts to add a domain."""
    body = {
        "name": "nas.example.com",
        "email": "me@example.com",
        "cert_dir": str(settings.CERT_ROOT),
    }
    return body | overrides


def domain(**fields: Any) -> Domain:
    defaults = {"name": "nas.example.com", "email": "me@example.com", "cert_dir": "/c"}
    return Domain.objects.create(**(defaults | fields))


def entry_in_db(domain: Domain, hostname: str = "nas.example.com") -> ProxyEntry:
    """An entry as entry_create would leave it, minus the cloud call this suite cannot make."""
    tunnel = Tunnel.objects.create(name=f"entry {hostname}", remote_port=2103, local_port=8443)
    return ProxyEntry.objects.create(
        domain=domain, hostname=hostname, home_port=8443, tunnel=tunnel
    )
