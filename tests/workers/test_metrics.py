"""The metrics both sites share (workers.common.metrics): who may read /metrics, the one error
shape of a refusal, and the timings any process records in the site's Redis (the machine's
real one here) for the web process to export, Celery tasks' among them."""

from __future__ import annotations

import json
import math
import os
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from django.test import RequestFactory
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from workers.celery import make_app
from workers.common.metrics import (
    TASKS,
    Timing,
    metrics_allowed,
    metrics_view,
    observe,
    source_up,
    timed,
    timing_families,
)
from workers.local.procs import free_port
from workers.locks import redis_client

REDIS = os.environ.get("CLOUDATHOME_TEST_REDIS", "redis://127.0.0.1:6379/0")
TOKEN = "m3tr1cs-" + "x" * 24
rf = RequestFactory()


def request(addr: str = "127.0.0.1", **headers: str) -> Any:
    return rf.get("/metrics", REMOTE_ADDR=addr, headers=headers)


@pytest.mark.parametrize("addr", ["127.0.0.1", "127.3.4.5", "::1", "::ffff:127.0.0.1"])
def test_a_loopback_client_that_reaches_the_site_directly_needs_no_token(addr: str) -> None:
    assert metrics_allowed(request(addr), token="")
    assert metrics_allowed(request(addr), token=TOKEN)


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-For": "127.0.0.1"},
        {"X-Forwarded-For": "203.0.113.9"},
        {"Forwarded": "for=127.0.0.1"},
        {"X-Real-IP": "127.0.0.1"},
    ],
)
def test_a_request_that_came_through_a_proxy_on_loopback_needs_the_token(
    headers: dict[str, str],
) -> None:
    assert not metrics_allowed(request("127.0.0.1", **headers), token=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert metrics_allowed(request("127.0.0.1", **headers, **auth), token=TOKEN)


@pytest.mark.parametrize("addr", ["203.0.113.9", "10.0.0.1", "::2", "", "not-an-address"])
def test_other_clients_and_unix_socket_peers_are_refused_without_the_token(addr: str) -> None:
    assert not metrics_allowed(request(addr), token=TOKEN)
    assert metrics_allowed(request(addr, Authorization=f"Bearer {TOKEN}"), token=TOKEN)


@pytest.mark.parametrize(
    ("sent", "configured"),
    [
        (f"Bearer {TOKEN}x", TOKEN),  # wrong: refused even from loopback
        (f"Bearer {TOKEN[:-1]}", TOKEN),
        ("Bearer ", TOKEN),
        (f"Basic {TOKEN}", TOKEN),
        (f"Bearer {TOKEN}", ""),  # a token sent where none is configured
    ],
)
def test_a_request_that_sends_a_token_is_judged_by_it_alone(sent: str, configured: str) -> None:
    assert not metrics_allowed(request("127.0.0.1", Authorization=sent), token=configured)


def _view(families: list[Any] | None = None) -> Any:
    return metrics_view(lambda: iter(families or [source_up({"redis": True})]))


def test_a_refusal_is_a_403_in_the_one_error_shape_naming_the_header(settings: Any) -> None:
    settings.METRICS_TOKEN = TOKEN
    response = _view()(request("203.0.113.9"))
    assert response.status_code == 403
    body = json.loads(response.content)
    assert set(body) == {"detail", "field"} and body["field"] == "Authorization"
    assert "CLOUDATHOME_METRICS_TOKEN" in body["detail"]
    assert _view()(rf.post("/metrics", REMOTE_ADDR="127.0.0.1")).status_code == 405


def test_the_view_answers_the_text_format_its_parser_reads(settings: Any) -> None:
    settings.METRICS_TOKEN = ""
    families = [GaugeMetricFamily("cloudathome_test_things", "things", value=3)]
    response = _view(families)(request())
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    parsed = {f.name: f for f in text_string_to_metric_families(response.content.decode())}
    assert parsed["cloudathome_test_things"].samples[0].value == 3


# --- timings in Redis ----------------------------------------------------------------------------


@pytest.fixture
def timing(settings: Any) -> Iterator[Timing]:
    """A histogram of this test's own in the machine's Redis, removed afterwards."""
    settings.REDIS_URL = REDIS
    name = f"cloudathome_test_{secrets.token_hex(4)}_seconds"
    kept = Timing(name, "a test's timing", ("kind", "outcome"))
    yield kept
    redis_client(REDIS).delete(kept.key)


def _series(family: Any, **labels: str) -> dict[str, float]:
    """{sample name suffix (_count, _sum, _bucket:le): value} of one labelled series."""
    found = {}
    for sample in family.samples:
        if all(sample.labels.get(k) == v for k, v in labels.items()):
            suffix = sample.name.removeprefix(family.name)
            key = f"{suffix}:{sample.labels['le']}" if "le" in sample.labels else suffix
            found[key] = sample.value
    return found


def test_observations_add_up_to_a_histogram_any_process_can_export(timing: Timing) -> None:
    for seconds in (0.003, 0.2, 0.2, 42.0, 1000.0):
        observe(timing, seconds, "full", "ok")
    with pytest.raises(RuntimeError), timed(timing, "host"):
        raise RuntimeError("boom")
    families = timing_families([timing])
    assert families is not None
    ok = _series(families[0], kind="full", outcome="ok")
    assert ok["_count"] == 5 and math.isclose(ok["_sum"], 1042.403)
    assert ok["_bucket:0.005"] == 1 and ok["_bucket:0.25"] == 3
    assert ok["_bucket:60.0"] == 4 and ok["_bucket:+Inf"] == 5
    assert _series(families[0], kind="host", outcome="error")["_count"] == 1


def test_a_redis_that_does_not_answer_loses_observations_and_says_so(settings: Any) -> None:
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    lost = Timing("cloudathome_test_lost_seconds", "lost", ("outcome",))
    observe(lost, 1.0, "ok")  # never raises: a task is not failed by its metrics
    assert timing_families([lost]) is None


@pytest.fixture
def app(timing: Timing) -> Celery:
    return make_app("metricstest", "cloud.settings", REDIS)


def test_every_celery_task_run_is_counted_and_timed_by_name_and_outcome(
    app: Celery, timing: Timing
) -> None:
    name = f"metricstest.t{secrets.token_hex(4)}"

    @app.task(name=name)
    def work(fail: bool) -> None:
        if fail:
            raise ValueError("failed on purpose")

    try:
        work.apply(args=[False])
        work.apply(args=[False])
        work.apply(args=[True])
        families = timing_families([TASKS])
        assert families is not None
        assert _series(families[0], task=name, outcome="success")["_count"] == 2
        assert _series(families[0], task=name, outcome="failure")["_count"] == 1
    finally:
        client = redis_client(REDIS)
        mine = [f for f in client.hkeys(TASKS.key) if name.encode() in f]
        if mine:
            client.hdel(TASKS.key, *mine)
