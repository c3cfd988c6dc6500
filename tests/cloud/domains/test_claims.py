"""The claim tree and the rules of cloud.domains in process (the database the suite's
settings give, transactions for real): what may be owned, nesting refused in every direction,
and branches pruned once nothing below them is owned."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User

from cloud.domains import rules, services
from cloud.domains.models import Claim, ClaimKind, Domain
from cloud.homes.models import Home, HomeStatus
from workers.common.errors import Conflict, Forbidden

pytestmark = pytest.mark.django_db(transaction=True)  # claims run in durable transactions


@pytest.fixture(autouse=True)
def names_settings(settings: Any) -> None:
    settings.BASE_DOMAIN = "homes.example.com"
    settings.PUBLIC_HOST = "cloud.example.com"
    settings.ALLOWED_HOSTS = ["cloud.example.com", ".admin.example.net", "127.0.0.1", "*"]
    settings.RESERVED_NAMES = ["status.example.com"]


def _home(name: str) -> Home:
    """A ready home of a new user (transactional tests start with no slot rows)."""
    return Home.objects.create(
        index=Home.objects.count() + 100,
        owner=User.objects.create_user(name),
        slug=f"slug-{name}",
        status=HomeStatus.READY,
        label=name,
    )


def _own(home: Home, name: str) -> Claim:
    """A verified custom domain, as a passed DNS check leaves it."""
    domain = Domain.objects.create(home=home, name=name, token="t")
    return services._durably(lambda: services._take(home, name, ClaimKind.DOMAIN, domain))


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("cloud.example.com", "cloud.example.com is reserved"),
        ("api.cloud.example.com", "nested with the reserved name cloud.example.com"),
        ("example.com", "nested with the reserved name cloud.example.com"),
        ("x.admin.example.net", "nested with the reserved name admin.example.net"),
        ("status.example.com", "is reserved"),
        ("x.localhost", "nested with the reserved name localhost"),
        ("localhost.localdomain", "nested with the reserved name localdomain"),
        ("alice.homes.example.com", "come with a home's label"),
        ("co.uk", "co.uk is a public suffix"),
        ("github.io", "github.io is a public suffix"),
    ],
)
def test_reserved_names_and_public_suffixes_cannot_be_owned(name: str, reason: str) -> None:
    assert reason in (rules.why_not_ownable(name) or "")


@pytest.mark.parametrize("name", ["example.org", "nas.smith.net", "me.github.io", "shop.co.uk"])
def test_registrable_names_and_names_below_them_can_be_owned(name: str) -> None:
    assert rules.why_not_ownable(name) is None


def test_ancestors_stop_above_the_top_level_domain() -> None:
    assert rules.ancestors("a.b.example.org") == ["b.example.org", "example.org"]
    assert rules.ancestors("example.org") == []


def test_names_nested_in_another_homes_name_are_refused_above_and_below() -> None:
    alice, bob = _home("alice"), _home("bob")
    _own(alice, "shop.example.org")
    for name in ("shop.example.org", "www.shop.example.org", "example.org"):
        with pytest.raises(Forbidden, match=re.escape("shop.example.org is owned by another home")):
            _own(bob, name)
    _own(bob, "blog.example.org")  # a sibling is not nested
    assert Claim.objects.get(name="example.org").kind == ClaimKind.BRANCH


def test_a_home_cannot_nest_its_own_names_either() -> None:
    alice = _home("alice")
    _own(alice, "example.org")
    with pytest.raises(Conflict, match=re.escape("already owns example.org")):
        _own(alice, "www.example.org")


def test_releasing_the_last_name_below_a_branch_prunes_it_and_frees_the_name_above() -> None:
    alice, bob = _home("alice"), _home("bob")
    _own(alice, "a.b.example.org")
    assert set(Claim.objects.values_list("name", flat=True)) == {
        "a.b.example.org",
        "b.example.org",
        "example.org",
    }
    services.domain_delete(Domain.objects.get(name="a.b.example.org"))
    assert not Claim.objects.exists()
    _own(bob, "example.org")


def test_a_stale_branch_does_not_block_the_name_it_holds() -> None:
    alice = _home("alice")
    Claim.objects.create(name="example.org", kind=ClaimKind.BRANCH)
    stale = Claim.objects.get(name="example.org")
    Claim.objects.create(name="b.example.org", kind=ClaimKind.BRANCH, parent=stale)
    claim = _own(alice, "example.org")
    assert claim.kind == ClaimKind.DOMAIN and Claim.objects.count() == 1


def test_a_label_claim_is_the_homes_name_under_the_base_domain() -> None:
    alice = _home("alice")
    claim = services.label_claim(alice)
    assert claim is not None and claim.name == "alice.homes.example.com"
    assert services.label_claim(alice) == claim  # idempotent
    assert services.claim_covering(alice, "www.alice.homes.example.com") == claim
    bob = _home("bob")
    with pytest.raises(
        Forbidden, match=re.escape("this home's names are under bob.homes.example.com")
    ):
        services.claim_covering(bob, "www.alice.homes.example.com")
