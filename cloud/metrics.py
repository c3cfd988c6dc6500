"""The cloud's `/metrics` (for loopback clients or with the metrics token, workers.common.metrics):
gauges read from the database at scrape time (homes by status, mappings by scheme, tunnels
connected, the public host's certificate's days to expiry), the timings the site's processes record in its Redis (Celery tasks, edge syncs, home
provisioning), and HAProxy's own Prometheus exporter, read from its socket."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from cloud.edge import certificate, haproxy
from cloud.edge import services as edge
from cloud.homes import services as homes
from cloud.homes.models import Home, HomeStatus, ProxyMapping, Scheme
from cloud.traffic.services import tunnels_connected
from workers.common.metrics import TASKS, gauge, metrics_view, source_up, timing_families

TIMINGS = (TASKS, edge.EDGE_SYNC, homes.HOME_PROVISION)


def _counts(rows: dict[str, int], values: list[str]) -> dict[str, float]:
    return {value: float(rows.get(value, 0)) for value in values}


def collect() -> Iterator[Metric]:
    by_status = Home.objects.order_by().values_list("status").annotate(n=Count("pk"))
    homes_by_status = _counts(dict(by_status), HomeStatus.values)
    yield gauge("cloudathome_homes", "Home slots by status", homes_by_status, "status")
    by_scheme = ProxyMapping.objects.order_by().values_list("scheme").annotate(n=Count("pk"))
    yield gauge(
        "cloudathome_mappings",
        "Proxy mappings by kind (scheme)",
        _counts(dict(by_scheme), Scheme.values),
        "scheme",
    )
    connected = tunnels_connected()
    if connected is not None:  # None: this process cannot see sshd's listeners
        yield GaugeMetricFamily(
            "cloudathome_tunnels_connected",
            "Tunnel ports of ready homes listening at the cloud now (one per connected forward)",
            value=connected,
        )
    cfg = edge.edge_config()
    cert = certificate.on_disk(cfg) if cfg.public_host else None
    if cfg.public_host and cert is not None and not cert.placeholder:
        days = (cert.not_after - timezone.now()).total_seconds() / 86400
        yield gauge(
            "cloudathome_certificate_expiry_days",
            "Days until the public host's certificate (the CA's, not the placeholder) expires",
            {cfg.public_host: days},
            "domain",
        )
    timings = timing_families(TIMINGS)
    yield from timings or []
    try:
        exported = haproxy.exporter_text(cfg)
    except haproxy.EdgeError:
        exported = None
    if exported is not None:
        yield from text_string_to_metric_families(exported)
    yield source_up({"redis": timings is not None, "haproxy": exported is not None})


view = metrics_view(collect)
