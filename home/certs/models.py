"""Domains: the name, its certificate and the job that issues and renews it (the state
people look at: state, current step, reason)."""

from __future__ import annotations

from django.db import models


class Challenge(models.TextChoices):
    HTTP01 = "http-01"
    TLSALPN01 = "tls-alpn-01"


class CertStatus(models.TextChoices):
    NONE = "none"
    PENDING = "pending"
    VALID = "valid"
    FAILED = "failed"


class JobState(models.TextChoices):
    IDLE = "idle"
    PENDING = "pending"
    WAITING = "waiting"  # for the cloud to say this home owns the name (a DNS proof)
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Domain(models.Model):
    name = models.CharField(max_length=253, unique=True)
    email = models.EmailField()
    cert_dir = models.CharField(max_length=1024)
    challenge = models.CharField(max_length=12, choices=Challenge.choices, default=Challenge.HTTP01)
    # The name of one of the operator's actions (home.certs.actions), never a program.
    post_renew_action = models.CharField(max_length=40, blank=True)
    # Its last run, for the dashboard: when, the exit code (None: not started or stopped at
    # the time limit) and the tail of its output.
    action_ran = models.DateTimeField(null=True, blank=True)
    action_exit = models.IntegerField(null=True, blank=True)
    action_output = models.TextField(blank=True)
    cert_status = models.CharField(
        max_length=8, choices=CertStatus.choices, default=CertStatus.NONE
    )
    cert_path = models.CharField(max_length=1024, blank=True)
    cert_expiry = models.DateTimeField(null=True, blank=True)
    cert_issued = models.DateTimeField(null=True, blank=True)
    # Renewal failures back off (1, 2, 4 ... hours, at most a day) instead of hammering the CA.
    renew_failures = models.PositiveIntegerField(default=0)
    renew_after = models.DateTimeField(null=True, blank=True)
    # What the cloud says of the name (cloudlink.services.Ownership), asked before anything is
    # mapped or ordered: nothing reaches the edge or the CA for a name the home does not own.
    ownership = models.CharField(max_length=10, blank=True)
    ownership_reason = models.CharField(max_length=500, blank=True)
    proof_name = models.CharField(max_length=300, blank=True)
    proof_value = models.CharField(max_length=64, blank=True)
    # The certificate job people look at (docs/architecture.md, the control path): state, current step, reason.
    job_state = models.CharField(max_length=8, choices=JobState.choices, default=JobState.IDLE)
    job_step = models.CharField(max_length=200, blank=True)
    job_error = models.TextField(blank=True)
    job_updated = models.DateTimeField(auto_now=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
