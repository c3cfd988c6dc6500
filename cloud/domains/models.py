"""Names homes own, and the custom domains they are proving.

Ownership is a tree of claims, one row per name, unique: a home's owned name (its label
under the base domain, or a verified custom domain) is a leaf, and every name above it is a
shared `branch` row, the leaf's parent chain. Two homes can never own one name (the unique
name) nor names nested in each other's: the inner one needs the outer name as a branch, and
a name is either a branch or owned. Rows never change kind, and a branch still referenced
cannot be deleted (its children's foreign key), so this holds whatever the timing.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from cloud.domains.rules import RECORD_PREFIX
from cloud.homes.models import Home


class DomainStatus(models.TextChoices):
    UNVERIFIED = "unverified"
    VERIFIED = "verified"
    FAILED = "failed"


class Domain(models.Model):
    """A custom domain a home asked for, proven by a TXT record holding its token. Several
    homes may ask for one name; only a verified one owns it (through its claim)."""

    home = models.ForeignKey(Home, on_delete=models.CASCADE, related_name="domains")
    name = models.CharField(max_length=253)
    token = models.CharField(max_length=64)
    status = models.CharField(
        max_length=10, choices=DomainStatus.choices, default=DomainStatus.UNVERIFIED
    )
    reason = models.CharField(max_length=500, blank=True)
    # Consecutive checks that did not find the token: the retry backoff of an unverified
    # domain, and the count towards losing the routes of a verified one.
    failures = models.PositiveIntegerField(default=0)
    checked = models.DateTimeField(null=True, blank=True)
    next_check = models.DateTimeField(null=True, blank=True, db_index=True)
    verified = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["home", "name"], name="domain_home_name")]

    def __str__(self) -> str:
        return self.name

    @property
    def record_name(self) -> str:
        return f"{RECORD_PREFIX}.{self.name}"


class ClaimKind(models.TextChoices):
    BRANCH = "branch"  # a name above owned ones, shared by all of them
    LABEL = "label"  # a home's label under the base domain
    DOMAIN = "domain"  # a verified custom domain


class Claim(models.Model):
    name = models.CharField(max_length=253, unique=True)
    kind = models.CharField(max_length=6, choices=ClaimKind.choices)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    home = models.ForeignKey(
        Home, null=True, blank=True, on_delete=models.CASCADE, related_name="claims"
    )
    domain = models.OneToOneField(
        Domain, null=True, blank=True, on_delete=models.CASCADE, related_name="claim"
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind=ClaimKind.BRANCH, home__isnull=True, domain__isnull=True)
                | Q(kind=ClaimKind.LABEL, home__isnull=False, domain__isnull=True)
                | Q(kind=ClaimKind.DOMAIN, home__isnull=False, domain__isnull=False),
                name="claim_kind_owner",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"
