"""The last check of the link to the cloud, kept in one row by a periodic task: the dashboard
and `/api/status` read it, so no page render logs in over SSH or calls the cloud."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import models
from django.utils import timezone


class LinkState(models.TextChoices):
    UNKNOWN = "unknown"  # no check has finished yet
    OK = "ok"
    FAILED = "failed"


class LinkCheck(models.Model):
    state = models.CharField(max_length=8, choices=LinkState.choices, default=LinkState.UNKNOWN)
    # The first failed check's detail; empty when every check passed.
    reason = models.TextField(blank=True)
    # Each check as {"name", "ok", "detail"}, in the order they ran.
    checks = models.JSONField(default=list, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    # Set by "check now", cleared by the run that follows: the page polls meanwhile.
    queued_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "cloud link check"

    def __str__(self) -> str:
        return f"{self.state} ({self.checked_at or 'never checked'})"

    @classmethod
    def current(cls) -> LinkCheck:
        """The one row (an unsaved 'unknown' one before the first check)."""
        return cls.objects.filter(pk=1).first() or cls(pk=1)

    def age(self) -> dt.timedelta | None:
        return timezone.now() - self.checked_at if self.checked_at else None

    @property
    def stale(self) -> bool:
        """No check for three periods of the beat task: the worker or beat is not running."""
        age = self.age()
        return age is not None and age.total_seconds() > 3 * settings.LINK_CHECK_SECONDS

    @property
    def queued(self) -> bool:
        return self.queued_at is not None
