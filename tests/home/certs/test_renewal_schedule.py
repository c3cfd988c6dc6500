"""Which certificates beat renews: inside the window, old enough, and past the backoff of a
failed renewal (on the console's real database)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from home.certs.models import CertStatus, Domain, JobState
from home.certs.services import certificates_due
from workers.common.acme import renew_backoff

pytestmark = pytest.mark.django_db


def _domain(name: str, expires_in_days: float, **fields: object) -> Domain:
    now = timezone.now()
    defaults: dict[str, object] = {
        "email": "a@example.com",
        "cert_dir": "/srv/certs",
        "cert_status": CertStatus.VALID,
        "cert_expiry": now + dt.timedelta(days=expires_in_days),
        "cert_issued": now - dt.timedelta(days=60),
        "job_state": JobState.DONE,
    }
    return Domain.objects.create(name=name, **{**defaults, **fields})


def test_only_certificates_inside_the_window_are_due(settings) -> None:
    settings.RENEW_DAYS = 30
    due = _domain("due.example.test", 10)
    _domain("later.example.test", 45)
    assert certificates_due() == [due.pk]


def test_a_failed_renewal_waits_for_its_backoff_before_beat_tries_again(settings) -> None:
    settings.RENEW_DAYS = 30
    waiting = _domain(
        "waiting.example.test",
        10,
        job_state=JobState.FAILED,
        renew_failures=1,
        renew_after=timezone.now() + renew_backoff(1),
    )
    retry = _domain(
        "retry.example.test",
        10,
        job_state=JobState.FAILED,
        renew_failures=3,
        renew_after=timezone.now() - dt.timedelta(minutes=1),
    )
    due = certificates_due()
    assert retry.pk in due and waiting.pk not in due


def test_backoff_doubles_per_failure_up_to_a_day() -> None:
    assert [renew_backoff(n).total_seconds() / 3600 for n in (1, 2, 3, 5, 6, 10)] == [
        1,
        2,
        4,
        16,
        24,
        24,
    ]


def test_a_certificate_younger_than_the_minimum_age_is_never_due(settings) -> None:
    settings.RENEW_DAYS = 36500
    settings.RENEW_MIN_AGE = 3600
    _domain("fresh.example.test", 80, cert_issued=timezone.now())
    old = _domain("old.example.test", 80)
    assert certificates_due() == [old.pk]


def test_running_and_queued_jobs_are_not_queued_twice(settings) -> None:
    settings.RENEW_DAYS = 30
    _domain("running.example.test", 10, job_state=JobState.RUNNING)
    _domain("pending.example.test", 10, job_state=JobState.PENDING)
    assert certificates_due() == []
