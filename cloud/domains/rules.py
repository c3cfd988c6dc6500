"""Which names a home may own, as pure functions of the settings: the base domain and its
labels, names reserved for everyone (the cloud's own, localhost, the operator's list) and
public suffixes (the bundled Public Suffix List; it is never downloaded at run time)."""

from __future__ import annotations

import ipaddress
import re
from functools import cache

from django.conf import settings
from publicsuffixlist import PublicSuffixList

from workers.common.names import covers, validate_hostname

RECORD_PREFIX = "_cloudathome"
# Special-use names (RFC 6761) nobody may publish, whatever the operator configured.
ALWAYS_RESERVED = ("localhost", "localdomain")
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


@cache
def _psl() -> PublicSuffixList:
    return PublicSuffixList()  # the list bundled with the package


def ancestors(name: str) -> list[str]:
    """The names above `name` with at least two labels, nearest first:
    a.b.example.org -> b.example.org, example.org."""
    labels = name.split(".")
    return [".".join(labels[i:]) for i in range(1, len(labels) - 1)]


def nested(a: str, b: str) -> bool:
    return covers(a, b) or covers(b, a)


def _host_names(entries: list[str]) -> list[str]:
    """Hostnames among ALLOWED_HOSTS-style entries: IPs and `*` skipped, `.x.org` is x.org."""
    names = []
    for entry in entries:
        entry = entry.strip().lower().removeprefix(".").rstrip(".")
        if not entry or entry == "*":
            continue
        try:
            ipaddress.ip_address(entry.strip("[]"))
            continue
        except ValueError:
            pass
        names.append(entry)
    return names


def reserved_names() -> list[str]:
    """Names nobody may own, nor any name above or below them."""
    public = _host_names([settings.PUBLIC_HOST, *settings.ALLOWED_HOSTS])
    return [*ALWAYS_RESERVED, *public, *_host_names(settings.RESERVED_NAMES)]


def _reserved_reason(name: str) -> str | None:
    for reserved in reserved_names():
        if nested(name, reserved):
            what = "reserved" if name == reserved else f"nested with the reserved name {reserved}"
            return f"{name} is {what}: choose another name"
    return None


def why_not_ownable(name: str) -> str | None:
    """Why `name` (already validated) can never be a custom domain of any home, or None."""
    reason = _reserved_reason(name)
    if reason:
        return reason
    base = settings.BASE_DOMAIN
    if base and covers(base, name) and name != base:
        return f"names under {base} come with a home's label, not with a custom domain"
    if base and covers(name, base):
        return f"{name} holds this cloud's base domain {base}: choose another name"
    if _psl().is_public(name):
        return f"{name} is a public suffix: prove a name registered under it"
    return None


def base_name(label: str | None) -> str | None:
    """The name a label stands for under the base domain (None without either)."""
    if not label or not settings.BASE_DOMAIN:
        return None
    return f"{label}.{settings.BASE_DOMAIN}"


def validate_label(label: str) -> str:
    """A home's label: one DNS label whose name under the base domain is ownable."""
    label = label.strip().lower()
    if not _LABEL.fullmatch(label):
        raise ValueError(
            "label: one DNS label of a-z, 0-9 and '-' (not first or last), at most 63 characters"
        )
    name = validate_hostname(f"{label}.{settings.BASE_DOMAIN}", field="label")
    reason = _reserved_reason(name)
    if reason:
        raise ValueError(f"label: {reason}")
    return label


def label_stem(username: str) -> str:
    """A label derived from a user name: alice, j-doe, user."""
    stem = re.sub(r"[^a-z0-9]+", "-", username.lower()).strip("-")[:40].strip("-")
    return stem or "home"
