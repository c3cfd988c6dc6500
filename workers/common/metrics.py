"""Prometheus metrics both sites share: who may read `/metrics` (the metrics token, or a local
client that came straight to the site), the view that renders a site's collectors, and the
timings (Celery tasks, syncs, provisioning) that any process of a site adds to the site's Redis,
so that the web process answering the scrape exports what the worker measured."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import ipaddress
import json
import logging
import math
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from celery.signals import task_postrun, task_prerun
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from workers.locks import redis_client

log = logging.getLogger(__name__)

# A proxy in front of the site (HAProxy before the cloud's gunicorn, or one an operator adds
# on the same machine) connects from loopback on behalf of anyone: a request that carries any
# of these came through one and must bring the token.
_FORWARDED = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")

DENIED = (
    "metrics: only for loopback clients that reach the site directly, or with "
    "'Authorization: Bearer <CLOUDATHOME_METRICS_TOKEN>'"
)


def _loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:  # a unix socket peer has no address: a proxy in front of us
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def metrics_allowed(request: HttpRequest, token: str) -> bool:
    """A request that sends a token is judged by it alone (a wrong one is refused even from
    loopback, so a misconfigured scraper shows up); one without may pass only if it came from
    a loopback address with no proxy between."""
    sent = request.headers.get("Authorization")
    if sent is not None:
        scheme, _, given = sent.partition(" ")
        if not token or scheme.lower() != "bearer":
            return False
        # Digests first: compare_digest is constant-time only for inputs of equal length.
        return hmac.compare_digest(
            hashlib.sha256(given.strip().encode()).digest(),
            hashlib.sha256(token.encode()).digest(),
        )
    if any(header in request.META for header in _FORWARDED):
        return False
    return _loopback(request.META.get("REMOTE_ADDR", ""))


def metrics_view(collect: Callable[[], Iterable[Metric]]) -> Callable[[HttpRequest], HttpResponse]:
    """The `/metrics` view of a site: the text exposition of the families `collect` yields,
    called once per scrape."""

    class Scrape(Collector):
        def collect(self) -> Iterator[Metric]:
            yield from collect()

    def view(request: HttpRequest) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            return JsonResponse({"detail": "metrics: use GET"}, status=405)
        if not metrics_allowed(request, settings.METRICS_TOKEN):
            return JsonResponse({"detail": DENIED, "field": "Authorization"}, status=403)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(Scrape())
        # The text format Prometheus asks for (OpenMetrics or the classic one), as it asks.
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        return HttpResponse(encode(registry), content_type=content_type)

    return view


def gauge(name: str, documentation: str, values: dict[str, float], label: str) -> GaugeMetricFamily:
    """One gauge family with one label, from {label value: value}."""
    family = GaugeMetricFamily(name, documentation, labels=[label])
    for value_of_label, value in sorted(values.items()):
        family.add_metric([value_of_label], value)
    return family


def source_up(sources: dict[str, bool]) -> GaugeMetricFamily:
    """Whether each source a scrape reads (Redis, HAProxy) answered: when one did not, its
    families are missing from this scrape rather than zero. Yield it once, last."""
    return gauge(
        "cloudathome_metrics_source_up",
        "1 if this scrape could read the source, else 0",
        {name: float(ok) for name, ok in sources.items()},
        "source",
    )


# --- timings kept in the site's Redis ----------------------------------------------------------

# prometheus_client's own buckets, with room above 10 s for certificate flows and big syncs.
BUCKETS = (*Histogram.DEFAULT_BUCKETS[:-1], 30.0, 60.0, 120.0, 300.0, math.inf)


@dataclass(frozen=True)
class Timing:
    """A histogram any process of a site adds observations to. Its `_count` is the number of
    runs: task counts come from the task timing's."""

    name: str
    documentation: str
    labelnames: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"cloudathome:metrics:{self.name}"


TASKS = Timing(
    "cloudathome_task_duration_seconds",
    "Celery task runs by task name and outcome (success, failure, retry), and how long each took",
    ("task", "outcome"),
)


@functools.cache
def _client(url: str) -> redis.Redis:
    # A short timeout: a slow Redis costs a task at most this, never a failure.
    return redis_client(url, timeout=1)


def observe(timing: Timing, seconds: float, *labels: str) -> None:
    """Add one observation; a Redis that cannot take it loses it (logged), nothing else."""
    if len(labels) != len(timing.labelnames):
        raise ValueError(f"labels: {timing.name} takes {timing.labelnames}, got {labels!r}")
    series = json.dumps(labels)
    bound = BUCKETS[bisect_left(BUCKETS, seconds)]
    try:
        with _client(settings.REDIS_URL).pipeline(transaction=False) as pipe:
            pipe.hincrby(timing.key, f"{series}|count", 1)
            pipe.hincrbyfloat(timing.key, f"{series}|sum", seconds)
            pipe.hincrby(timing.key, f"{series}|{bound}", 1)
            pipe.execute()
    except (redis.RedisError, OSError) as exc:
        log.debug("metrics: %s not recorded: %s", timing.name, exc)


@contextlib.contextmanager
def timed(timing: Timing, *labels: str) -> Iterator[None]:
    """Time the block; its outcome ("ok", or "error" when it raised) is the last label."""
    start = time.monotonic()
    outcome = "error"
    try:
        yield
        outcome = "ok"
    finally:
        observe(timing, time.monotonic() - start, *labels, outcome)


def timing_families(timings: Sequence[Timing]) -> list[Metric] | None:
    """The histograms as Redis holds them now; None when it did not answer."""
    try:
        with _client(settings.REDIS_URL).pipeline(transaction=False) as pipe:
            for timing in timings:
                pipe.hgetall(timing.key)
            stored: list[dict[bytes, bytes]] = pipe.execute()
    except (redis.RedisError, OSError) as exc:
        log.warning("metrics: Redis did not answer: %s", exc)
        return None
    families: list[Metric] = []
    for timing, fields in zip(timings, stored, strict=True):
        family = HistogramMetricFamily(
            timing.name, timing.documentation, labels=list(timing.labelnames)
        )
        per_series: dict[str, dict[str, float]] = {}
        for field, value in fields.items():
            series, _, part = field.decode().rpartition("|")
            per_series.setdefault(series, {})[part] = float(value)
        for series, parts in sorted(per_series.items()):
            running = 0.0
            buckets = []
            for bound in BUCKETS:
                running += parts.get(str(bound), 0.0)
                buckets.append(("+Inf" if bound == math.inf else str(bound), running))
            family.add_metric(json.loads(series), buckets, parts.get("sum", 0.0))
        families.append(family)
    return families


# --- Celery tasks, in whichever process runs them ----------------------------------------------

_started: dict[str, float] = {}


@task_prerun.connect(dispatch_uid="cloudathome-metrics-prerun")
def _task_started(task_id: str, **kwargs: object) -> None:
    _started[task_id] = time.monotonic()


@task_postrun.connect(dispatch_uid="cloudathome-metrics-postrun")
def _task_finished(task_id: str, task: Any, state: str | None = None, **kwargs: object) -> None:
    """task_postrun carries the outcome (SUCCESS, FAILURE, RETRY, ...): task_failure would only
    repeat the failures."""
    start = _started.pop(task_id, None)
    if start is not None:
        observe(TASKS, time.monotonic() - start, task.name, (state or "unknown").lower())
