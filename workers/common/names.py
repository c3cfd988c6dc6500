"""Hostname rules both sites agree on (RFC 1123, lower-cased, no wildcard): the cloud
checks every name before it reaches HAProxy, the home before it asks the cloud or an ACME CA."""

from __future__ import annotations

import re

_LABEL = re.compile(r"[a-z0-9-]{1,63}")


def validate_hostname(host: str, field: str = "host") -> str:
    """Return `host` lower-cased if it is an RFC 1123 hostname we route; raise ValueError if not."""
    if not isinstance(host, str):
        raise ValueError(f"{field}: must be a string")
    if not host:
        raise ValueError(f"{field}: must not be empty")
    if not host.isascii():
        raise ValueError(
            f"{field}: must be ASCII (write internationalized names in their xn-- form)"
        )
    host = host.lower()
    if len(host) > 253:
        raise ValueError(f"{field}: {len(host)} characters, at most 253 allowed")
    if "*" in host:
        raise ValueError(f"{field}: wildcards are not allowed")
    if host.endswith("."):
        raise ValueError(f"{field}: must not end with a dot")
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
    if labels[-1].isdigit():
        # RFC 1123 section 2.1: a name must not look like a dotted-decimal address.
        raise ValueError(f"{field}: the last label is all digits, which reads as an IP address")
    return host


def covers(owned: str, name: str) -> bool:
    """An owned name covers itself and every name below it (both already validated)."""
    return name == owned or name.endswith(f".{owned}")
