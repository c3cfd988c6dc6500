"""The job that obtains and renews the certificate of the cloud's own public host: the state
people look at (state, current step, reason) and the backoff of failures. The certificate itself
is the file HAProxy serves (haproxy.EdgeConfig.public_pem), read whenever it matters."""

from __future__ import annotations

from django.db import models


class JobState(models.TextChoices):
    IDLE = "idle"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class PublicCertificate(models.Model):
    """One row per public host the cloud has had (a new name starts a new row)."""

    host = models.CharField(max_length=253, unique=True)
    job_state = models.CharField(max_length=8, choices=JobState.choices, default=JobState.IDLE)
    job_step = models.CharField(max_length=200, blank=True)
    job_error = models.TextField(blank=True)
    job_updated = models.DateTimeField(auto_now=True)
    # Failures back off (1, 2, 4 ... hours, at most a day) instead of hammering the CA.
    failures = models.PositiveIntegerField(default=0)
    retry_after = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["host"]

    def __str__(self) -> str:
        return self.host
