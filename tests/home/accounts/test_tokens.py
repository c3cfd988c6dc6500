"""The console's own users and API tokens: the auth endpoint, tokens stored as digests, and
what the API refuses; the login page."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from django.test import Client

from home.accounts.models import ApiToken
from tests.home.conftest import PASSWORD, Api

pytestmark = pytest.mark.django_db


def test_api_refuses_a_request_without_a_token(client: Client) -> None:
    response = client.get("/api/domains")
    assert response.status_code == 401
    assert "Bearer" in response.json()["detail"]


def test_api_refuses_an_unknown_token(client: Client, token: str) -> None:
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    response = client.get("/api/domains", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401


def test_a_token_from_the_auth_endpoint_opens_the_api(api: Api) -> None:
    response = api.get("/api/domains")
    assert response.status_code == 200
    assert response.json() == []


def test_the_token_is_stored_only_as_a_digest(token: str) -> None:
    stored = ApiToken.objects.get()
    assert token.startswith(f"cahh_{stored.prefix}_")
    assert token not in (stored.digest, stored.prefix, stored.name)


def test_a_wrong_password_gets_no_token(client: Client, user: Any) -> None:
    response = client.post(
        "/api/auth/token",
        {"username": "alice", "password": "wrong"},
        content_type="application/json",
    )
    assert response.status_code == 403
    assert "invalid username or password" in response.json()["detail"]
    assert not ApiToken.objects.exists()


def test_a_disabled_account_loses_its_tokens(api: Api, user: Any) -> None:
    user.is_active = False
    user.save()
    assert api.get("/api/domains").status_code == 401


def test_a_token_whose_secret_contains_underscores_is_accepted(client: Client, user: Any) -> None:
    # base64url secrets contain "_" about half the time; the parser must split only once.
    token = "cahh_0123456789ab_se_cr_et"
    ApiToken.objects.create(
        user=user, prefix="0123456789ab", digest=hashlib.sha256(token.encode()).hexdigest()
    )
    response = client.get("/api/domains", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


def test_the_login_page_renders(client: Client) -> None:
    response = client.get("/login/")
    assert response.status_code == 200
    assert b'name="password"' in response.content


def test_guessing_a_password_locks_the_username_out_with_429_in_the_error_shape(
    client: Client, user: Any, settings: Any
) -> None:
    def attempt(password: str, address: str) -> Any:
        return client.post(
            "/api/auth/token",
            {"username": "alice", "password": password},
            content_type="application/json",
            REMOTE_ADDR=address,
        )

    for i in range(settings.AXES_FAILURE_LIMIT - 1):
        assert attempt("wrong", f"127.0.1.{i + 1}").status_code == 403
    locked = attempt("wrong", "127.0.1.100")
    assert locked.status_code == 429
    assert locked.json()["field"] == "username" and "retry in" in locked.json()["detail"]
    assert int(locked["Retry-After"]) == settings.AXES_COOLOFF_TIME.total_seconds()
    assert attempt(PASSWORD, "127.0.1.101").status_code == 429  # even the right password
    page = client.post(
        "/login/", {"username": "alice", "password": PASSWORD}, REMOTE_ADDR="127.0.1.102"
    )
    assert page.status_code == 429 and b"Too many attempts" in page.content
    assert not ApiToken.objects.exists()


def test_a_few_wrong_passwords_then_the_right_one_get_a_token(client: Client, user: Any) -> None:
    for _ in range(3):
        response = client.post(
            "/api/auth/token",
            {"username": "alice", "password": "wrong"},
            content_type="application/json",
        )
        assert response.status_code == 403
    response = client.post(
        "/api/auth/token",
        {"username": "alice", "password": PASSWORD},
        content_type="application/json",
    )
    assert response.status_code == 200
