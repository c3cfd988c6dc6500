"""The one hostname rule of both sites (RFC 1123, lower-cased, no wildcard, no address): the
cloud checks every name before it reaches HAProxy, the console before it asks the cloud, the
ACME client before it asks a CA."""

from __future__ import annotations

import ipaddress
import re

_LABEL = re.compile(r"[a-z0-9-]{1,63}")
# What a browser's URL parser reads as an IPv4 number (WHATWG "ends in a number"): a last
# label of digits, or of hex digits after 0x. `10.0.0.1`, `1.0x7f` and `127.1` are addresses.
_NUMBER = re.compile(r"[0-9]+|0x[0-9a-f]*")


def validate_hostname(host: str, field: str = "host") -> str:
    """`host` in its one stored form (lower-cased, one trailing dot dropped: `Example.COM.`
    is `example.com`), or ValueError("<field>: <reason>")."""
    if not isinstance(host, str):
        raise ValueError(f"{field}: must be a string")
    if not host.isascii():
        raise ValueError(
            f"{field}: must be ASCII (write internationalized names in their xn-- form)"
        )
    # The absolute form names the same host; one spelling keeps maps and ownership unique.
    host = host.lower().removesuffix(".")
    if not host:
        raise ValueError(f"{field}: must not be empty")
    if len(host) > 253:
        raise ValueError(f"{field}: {len(host)} characters, at most 253 allowed")
    if is_address(host):
        raise ValueError(f"{field}: {host!r} is an IP address, not a DNS name")
    if "*" in host:
        raise ValueError(f"{field}: wildcards are not allowed")
    labels = host.split(".")
    if len(labels) < 2:
        raise ValueError(f"{field}: needs at least two labels (name.tld)")
    for label in labels:
        if not label:
            raise ValueError(f"{field}: has an empty label")
        if len(label) > 63:
            raise ValueError(f"{field}: label {label[:20]!r}... is longer than 63 characters")
        if not _LABEL.fullmatch(label):
            raise ValueError(f"{field}: label {label!r} may only contain a-z, 0-9 and '-'")
        if label.startswith("-") or label.endswith("-"):
            raise ValueError(f"{field}: label {label!r} must not start or end with '-'")
    if _NUMBER.fullmatch(labels[-1]):
        raise ValueError(f"{field}: {host!r} reads as an IP address, not a DNS name")
    return host


def is_address(host: str) -> bool:
    """An IP address (IPv6 with or without brackets), not a name."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def covers(owned: str, name: str) -> bool:
    """An owned name covers itself and every name below it (both already validated)."""
    return name == owned or name.endswith(f".{owned}")
