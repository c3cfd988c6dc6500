"""The cloud's one door to DNS: TXT lookups with dnspython against CLOUDATHOME_DNS_RESOLVERS
(the system's resolvers when unset), each bounded in time, with the outcome in one sentence."""

from __future__ import annotations

import dns.exception
import dns.nameserver
import dns.resolver
from django.conf import settings

TIMEOUT_S = 2.0  # per query to one server
LIFETIME_S = 5.0  # the whole lookup, retries and every server included


class NoRecord(Exception):
    """The name has no TXT record (NXDOMAIN or an empty answer)."""


class LookupFailed(Exception):
    """No server gave an answer (timeout, SERVFAIL, refused): nothing is known either way."""


def _resolver() -> dns.resolver.Resolver:
    resolvers = settings.DNS_RESOLVERS
    resolver = dns.resolver.Resolver(configure=not resolvers)
    if resolvers:
        resolver.nameservers = [dns.nameserver.Do53Nameserver(ip, port) for ip, port in resolvers]
    resolver.timeout = TIMEOUT_S
    resolver.lifetime = LIFETIME_S
    resolver.cache = None  # a check must see the zone as it is now
    return resolver


def txt_values(name: str) -> list[str]:
    """Every TXT string of `name` (a record split into 255-byte chunks is joined again)."""
    try:
        answer = _resolver().resolve(name, "TXT", search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        raise NoRecord(name) from None
    except dns.resolver.NoNameservers:
        raise LookupFailed("every DNS server failed to answer (SERVFAIL or refused)") from None
    except dns.exception.Timeout:
        raise LookupFailed(f"no DNS server answered within {LIFETIME_S:g} s") from None
    except dns.exception.DNSException as exc:
        raise LookupFailed(str(exc)) from None
    return [b"".join(rdata.strings).decode("ascii", "replace") for rdata in answer]
