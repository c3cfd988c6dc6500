"""Client networks a mapping may be limited to (its allowlist): one rule for both sites and the
edge. CIDRs through the standard library, IPv4 and IPv6, in one normal form."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

# Enough for an office, a VPN and a few roaming ranges; every network of every list becomes
# map entries at the edge, so the list stays short.
MAX_NETWORKS = 32

# What both sites' forms say of an allowlist field (networks.split reads it).
FORM_HELP = "Client networks allowed, e.g. 192.0.2.0/24 2001:db8::/32; empty: everyone."

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def validate_networks(values: Iterable[object], field: str = "allow") -> list[str]:
    """The networks in normal form (`10.0.0.0/8`, `2001:db8::/32`; an address alone is its /32
    or /128), without duplicates, sorted; ValueError naming `field` and the entry otherwise.

    Host bits set (`10.0.0.1/8`) are refused rather than masked: the operator meant either the
    address or the network, and guessing would open more than was asked for."""
    if isinstance(values, str | bytes):
        raise ValueError(f"{field}: must be a list of networks, not a string")
    found: dict[str, Network] = {}
    for n, value in enumerate(values, 1):
        if not isinstance(value, str):
            raise ValueError(f"{field}: entry {n} must be a string, got {value!r}")
        text = value.strip()
        try:
            network = ipaddress.ip_network(text, strict=True)
        except ValueError as exc:
            loose = _loose(text)
            if loose is not None:
                raise ValueError(
                    f"{field}: entry {n}, {text!r}, has host bits set; did you mean {loose}?"
                ) from None
            raise ValueError(f"{field}: entry {n}, {text!r}, is not a network ({exc})") from None
        found[str(network)] = network
    if len(found) > MAX_NETWORKS:
        raise ValueError(f"{field}: at most {MAX_NETWORKS} networks, got {len(found)}")
    return sorted(found, key=lambda key: _order(found[key]))


def split(text: str) -> list[str]:
    """The networks of a form's text field: separated by commas, spaces or lines."""
    return text.replace(",", " ").split()


def parse(values: Iterable[str]) -> list[Network]:
    """Networks already in normal form (validate_networks' output) as objects."""
    return [ipaddress.ip_network(value) for value in values]


def within(inner: Network, outer: Network) -> bool:
    """`inner` lies in `outer` (or is it); networks of two families never do."""
    return (
        inner.version == outer.version
        and inner.prefixlen >= outer.prefixlen
        and inner.network_address in outer
    )


def _loose(text: str) -> str | None:
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        return None


def _order(network: Network) -> tuple[int, int, int]:
    return (network.version, int(network.network_address), network.prefixlen)
