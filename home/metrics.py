"""The Home Console's `/metrics` (for loopback clients or with the metrics token,
workers.common.metrics): tunnels by state, proxy entries, domains by certificate status and
each certificate's days to expiry, the cloud link, all read from the database at scrape time,
and the timings the site's processes record in its Redis (Celery tasks, certificate flows)."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric

from home.certs.models import CertStatus, Domain
from home.certs.services import CERT_ISSUE
from home.cloudlink.models import LinkCheck, LinkState
from home.tunnels.models import ProxyEntry, Tunnel, TunnelState
from workers.common.metrics import TASKS, gauge, metrics_view, source_up, timing_families

TIMINGS = (TASKS, CERT_ISSUE)


def collect() -> Iterator[Metric]:
    tunnels = dict(
        Tunnel.objects.filter(temporary=False)
        .order_by()
        .values_list("state")
        .annotate(n=Count("pk"))
    )
    yield gauge(
        "cloudathome_tunnels",
        "Tunnels of proxy entries by state (certificate flows' temporary ones left out)",
        {state: float(tunnels.get(state, 0)) for state in TunnelState.values},
        "state",
    )
    yield GaugeMetricFamily(
        "cloudathome_proxy_entries",
        "Hostnames this home publishes",
        value=ProxyEntry.objects.count(),
    )
    statuses = dict(Domain.objects.order_by().values_list("cert_status").annotate(n=Count("pk")))
    yield gauge(
        "cloudathome_domains",
        "Domains by certificate status",
        {status: float(statuses.get(status, 0)) for status in CertStatus.values},
        "cert_status",
    )
    now = timezone.now()
    expiring = Domain.objects.filter(cert_expiry__isnull=False).values_list("name", "cert_expiry")
    yield gauge(
        "cloudathome_certificate_expiry_days",
        "Days until each domain's certificate expires (negative: expired)",
        {name: (expiry - now).total_seconds() / 86400 for name, expiry in expiring if expiry},
        "domain",
    )
    check = LinkCheck.current()
    if check.state != LinkState.UNKNOWN:
        yield GaugeMetricFamily(
            "cloudathome_cloud_link_ok",
            "1 if the last link check (cloud API, token, SSH preflight) passed, else 0",
            value=float(check.state == LinkState.OK),
        )
    timings = timing_families(TIMINGS)
    yield from timings or []
    yield source_up({"redis": timings is not None})


view = metrics_view(collect)
