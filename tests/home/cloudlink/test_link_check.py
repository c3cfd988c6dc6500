"""The link check behind the dashboard and `/api/status`: the worker runs it (beat, worker
start, "check now") and stores the result; pages and the API only read that row, so they
stay fast and never reach the cloud themselves."""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from home.celery import app
from home.cloudlink.models import LinkCheck, LinkState
from home.cloudlink.services import link, link_check
from tests.home.conftest import Api, write_cloudlink

pytestmark = pytest.mark.django_db


class Listener:
    """A loopback port that accepts and at once closes connections, counting them."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                self.accepted += 1
                conn.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self.sock.close()
        self.thread.join(timeout=5)


@pytest.fixture
def counted_cloud(tmp_path: Path, settings: Any) -> Iterator[tuple[Listener, Listener]]:
    """A registered home whose cloud API and sshd are listeners that count connections."""
    api_port, ssh_port = Listener(), Listener()
    write_cloudlink(tmp_path, api_port.port, ssh_port.port)
    settings.CLOUDLINK_CONFIG = tmp_path / "cloudlink.yaml"
    link.cache_clear()
    try:
        yield api_port, ssh_port
    finally:
        link.cache_clear()
        api_port.close()
        ssh_port.close()


def test_the_status_endpoint_reports_each_failed_check_when_the_cloud_is_down(
    api: Api, cloud_down: dict[str, Any]
) -> None:
    link_check()  # what beat runs
    response = api.get("/api/status")
    assert response.status_code == 200
    body = response.json()
    checks = {c["name"]: c for c in body["checks"]}
    assert set(checks) == {"api", "token", "ssh"}
    assert not any(c["ok"] for c in checks.values())
    assert "cannot reach the cloud" in checks["api"]["detail"]
    assert body["state"] == "failed" and "cannot reach the cloud" in body["reason"]


def test_the_dashboard_renders_when_the_cloud_is_unreachable(
    client: Client, user: Any, cloud_down: dict[str, Any]
) -> None:
    link_check()
    client.force_login(user)
    response = client.get("/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "hometest01" in page
    assert "home01_alice@127.0.0.1:" in page
    assert "2100 \N{EN DASH} 2109" in page
    assert "cannot reach the cloud" in page
    assert page.count('class="badge bad"') >= 3


def test_the_dashboard_and_the_status_endpoint_never_reach_the_cloud(
    api: Api, client: Client, user: Any, counted_cloud: tuple[Listener, Listener]
) -> None:
    cloud_api, cloud_ssh = counted_cloud
    client.force_login(user)
    for _ in range(3):
        assert client.get("/").status_code == 200
        assert api.get("/api/status").status_code == 200
    assert (cloud_api.accepted, cloud_ssh.accepted) == (0, 0)
    link_check()  # the worker's run does reach both
    assert cloud_api.accepted >= 1 and cloud_ssh.accepted >= 1


def test_before_the_first_check_the_status_is_unknown_and_the_dashboard_follows_it(
    api: Api, client: Client, user: Any, cloud_down: dict[str, Any]
) -> None:
    body = api.get("/api/status").json()
    assert body["state"] == "unknown"
    assert (body["checked_at"], body["age_seconds"], body["checks"]) == (None, None, [])
    client.force_login(user)
    page = client.get("/").content.decode()
    assert "not checked yet" in page
    assert "/static/home/dashboard.js" in page  # reloads once a result is in


def test_check_now_queues_one_check_however_often_it_is_asked(
    api: Api, cloud_down: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as queued:
        first = api.post("/api/status/check")
        second = api.post("/api/status/check")
    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json()["queued"] and second.json()["queued"]
    assert len(queued) == 1


def test_the_check_now_button_queues_a_check_and_the_dashboard_follows_it(
    client: Client, user: Any, cloud_down: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    client.force_login(user)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = client.post("/link/check/")
    assert response.status_code == 302 and response["Location"] == "/"
    assert len(queued) == 1
    page = client.get("/").content.decode()
    assert "Checking…" in page and "/static/home/dashboard.js" in page


def test_a_finished_check_records_its_time_and_clears_the_queued_flag(
    api: Api, cloud_down: dict[str, Any], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        api.post("/api/status/check")
    before = timezone.now()
    link_check()
    body = api.get("/api/status").json()
    assert not body["queued"] and not body["stale"]
    assert dt.datetime.fromisoformat(body["checked_at"]) >= before
    assert 0 <= body["age_seconds"] < 60


def test_a_check_older_than_three_periods_is_flagged_stale(
    api: Api, client: Client, user: Any, cloud_down: dict[str, Any], settings: Any
) -> None:
    link_check()
    old = timezone.now() - dt.timedelta(seconds=3 * settings.LINK_CHECK_SECONDS + 5)
    LinkCheck.objects.update(checked_at=old)
    body = api.get("/api/status").json()
    assert body["stale"] and body["age_seconds"] > 3 * settings.LINK_CHECK_SECONDS
    client.force_login(user)
    assert "is the worker running?" in client.get("/").content.decode()


def test_a_missing_cloudlink_yaml_is_a_failed_check_not_a_crash(
    tmp_path: Path, settings: Any
) -> None:
    settings.CLOUDLINK_CONFIG = tmp_path / "cloudlink.yaml"
    link.cache_clear()
    try:
        row = link_check()
    finally:
        link.cache_clear()
    assert row.state == LinkState.FAILED
    assert "not configured" in row.reason and "cloudlink.yaml: file not found" in row.reason


def test_beat_runs_the_link_check_every_period(settings: Any) -> None:
    entry = app.conf.beat_schedule["link-check"]
    assert entry["task"] == "home.cloudlink.tasks.link_check"
    assert entry["schedule"] == float(settings.LINK_CHECK_SECONDS)
    assert entry["task"] in app.tasks
