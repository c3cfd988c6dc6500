"""API tokens (workers.common.tokens) through a site's concrete model: shown once, stored as
a digest, found by prefix, refused for anything else or for an inactive owner."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth.models import User

pytestmark = pytest.mark.django_db


@pytest.fixture
def token_model() -> Any:
    return apps.get_model("accounts", "ApiToken")


@pytest.fixture
def user(django_user_model: type[User]) -> User:
    return django_user_model.objects.create_user("tokens", password="Tokens-pass-1")


def test_a_token_is_shown_once_and_only_its_digest_is_stored(token_model: Any, user: User) -> None:
    row, token = token_model.issue(user, "deploy")
    marker = token_model.token_prefix
    assert token.startswith(f"{marker}{row.prefix}_") and len(token) > len(marker) + 40
    stored = token_model.objects.get(pk=row.pk)
    assert stored.digest == hashlib.sha256(token.encode()).hexdigest()
    assert token not in {stored.prefix, stored.digest, stored.name}
    assert token not in str(stored)


def test_the_token_authenticates_its_owner_and_records_its_use(
    token_model: Any, user: User
) -> None:
    row, token = token_model.issue(user)
    assert row.last_used is None
    found = token_model.objects.authenticate(token)
    assert found is not None and found.pk == row.pk and found.user == user
    assert token_model.objects.get(pk=row.pk).last_used is not None


def test_a_token_with_any_character_changed_is_refused(token_model: Any, user: User) -> None:
    _, token = token_model.issue(user)
    last = "A" if token[-1] != "A" else "B"
    assert token_model.objects.authenticate(token[:-1] + last) is None
    assert token_model.objects.authenticate(token + "x") is None


@pytest.mark.parametrize("mangle", ["other-site", "no-prefix", "no-secret", "empty"])
def test_malformed_tokens_are_refused(token_model: Any, user: User, mangle: str) -> None:
    _, token = token_model.issue(user)
    marker = token_model.token_prefix
    rest = token[len(marker) :]
    candidate = {
        "other-site": ("cahx_" if marker != "cahx_" else "cah_") + rest,
        "no-prefix": marker + "_" + rest.partition("_")[2],
        "no-secret": marker + rest.partition("_")[0],
        "empty": "",
    }[mangle]
    assert token_model.objects.authenticate(candidate) is None


def test_an_inactive_owner_s_token_is_refused(token_model: Any, user: User) -> None:
    _, token = token_model.issue(user)
    user.is_active = False
    user.save()
    assert token_model.objects.authenticate(token) is None
