"""The Home Console's API as a whole, without a cloud: the contract's paths, the docs, CSRF
for session calls, pages behind the login, and every error in the one error shape (a 503
with a reason for what the console depends on, on pages as in the API)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.http import HttpResponse
from django.test import Client, RequestFactory
from kombu.exceptions import OperationalError as QueueUnreachable

from home.api import api as home_api
from home.certs.models import Domain
from home.cloudlink.client import CloudError
from home.cloudlink.config import ConfigError
from home.errors import ErrorPageMiddleware
from tests.home.conftest import Api
from tests.home.factories import domain_body
from workers.celery import TransientError
from workers.common.errors import Conflict, NotFound

pytestmark = pytest.mark.django_db

# The API paths of the README, with every path parameter written {id}.
CONTRACT_PATHS = {
    "/api/auth/token": {"post"},
    "/api/domains": {"get", "post"},
    "/api/domains/{id}": {"get", "delete"},
    "/api/domains/{id}/renew": {"post"},
    "/api/domains/{id}/proxy-entries": {"get", "post"},
    "/api/proxy-entries/{id}": {"get", "delete"},
    "/api/proxy-entries/{id}/tunnel": {"post"},
    "/api/status": {"get"},
    "/api/status/check": {"post"},
}

# What the console depends on, failing: each is a 503 with a reason, never a 500.
UNAVAILABLE = [
    (TransientError("lock tunnel-3 is held by another run"), "lock tunnel-3 is held"),
    (ConfigError("/etc/cloudlink.yaml: ssh.username: missing"), "not configured"),
    (QueueUnreachable("Connection refused"), "task queue cannot be reached"),
    (CloudError("cannot reach the cloud at http://cloud.test"), "cannot reach the cloud"),
]


def test_openapi_schema_lists_every_path_of_the_contract(client: Client) -> None:
    response = client.get("/api/schema/")
    assert response.status_code == 200
    paths = {
        re.sub(r"\{[^}]+\}", "{id}", path): {m for m in methods if m != "parameters"}
        for path, methods in response.json()["paths"].items()
    }
    for path, methods in CONTRACT_PATHS.items():
        assert path in paths, f"{path} missing from the schema"
        assert methods <= paths[path], f"{path}: {paths[path]}"


@pytest.mark.parametrize("path", ["/api/schema/swagger/", "/api/schema/redoc/"])
def test_api_docs_pages_render(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert b"/api/schema/" in response.content


@pytest.mark.parametrize(
    "path",
    ["/api/domains/424242", "/api/proxy-entries/424242", "/api/domains/424242/proxy-entries"],
)
def test_an_unknown_id_is_a_404_with_a_detail(api: Api, path: str) -> None:
    response = api.get(path)
    assert response.status_code == 404
    assert "424242" in response.json()["detail"]


def test_session_calls_to_the_api_need_the_csrf_token(user: Any) -> None:
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    refused = browser.post("/api/domains", domain_body(), content_type="application/json")
    assert refused.status_code == 403
    assert not Domain.objects.exists()
    browser.get("/domains/add/")  # a page with a form sets the CSRF cookie
    csrf = browser.cookies["cah_home_csrftoken"].value
    accepted = browser.post(
        "/api/domains",
        domain_body(),
        content_type="application/json",
        headers={"X-CSRFToken": csrf},
    )
    assert accepted.status_code == 201


@pytest.mark.parametrize("path", ["/", "/domains/", "/domains/add/"])
def test_pages_send_a_visitor_to_the_login_page(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


@pytest.mark.parametrize(("error", "reason"), UNAVAILABLE)
def test_the_api_answers_an_unavailable_dependency_with_503_and_its_reason(
    error: Exception, reason: str
) -> None:
    response = home_api.on_exception(RequestFactory().get("/api/domains"), error)
    assert response.status_code == 503
    assert response["Content-Type"].startswith("application/json")
    assert reason in json.loads(response.content)["detail"]


def _page_for(user: Any, error: Exception) -> HttpResponse | None:
    """What the pages' middleware answers when a view of `user` raised `error`."""
    request = RequestFactory().post("/entries/1/delete/")
    request.user = user
    return ErrorPageMiddleware(HttpResponse).process_exception(request, error)


@pytest.mark.parametrize(("error", "reason"), UNAVAILABLE)
def test_a_page_shows_an_unavailable_dependency_as_a_503_page_with_its_reason(
    user: Any, error: Exception, reason: str
) -> None:
    response = _page_for(user, error)
    assert response is not None
    assert response.status_code == 503
    page = response.content.decode()
    assert "<html" in page and reason in page


@pytest.mark.parametrize(
    ("error", "status"), [(NotFound("no such thing"), 404), (Conflict("busy"), 409)]
)
def test_a_domain_error_no_view_caught_is_a_page_with_its_own_status(
    user: Any, error: Exception, status: int
) -> None:
    response = _page_for(user, error)
    assert response is not None and response.status_code == status
    assert str(error) in response.content.decode()


def test_an_unexpected_error_is_left_to_django(user: Any) -> None:
    assert _page_for(user, KeyError("x")) is None


@pytest.mark.django_db(transaction=True)
def test_a_change_saved_while_the_task_queue_is_down_is_a_503_saying_so(api: Api) -> None:
    # The test settings' broker is the private Redis socket of a state dir where none runs;
    # in a transactional test the commit (and so the send) happens inside the request.
    response = api.post("/api/domains", domain_body())
    assert response.status_code == 503
    assert "task queue cannot be reached" in response.json()["detail"]
    assert Domain.objects.filter(name="nas.example.com").exists()


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/domains", {"name": "nas\x00.example.com"}, "name"),
        ("/api/domains", {"name": "x", "nested": {"k": ["a", "b\x00"]}}, "nested.k.1"),
        ("/api/domains/1%00", None, "path"),
        ("/api/domains?x=%00", None, "x"),
    ],
)
def test_a_nul_character_anywhere_is_a_400_naming_where(
    api: Api, path: str, body: Any, field: str
) -> None:
    response = api.post(path, body) if body is not None else api.get(path)
    assert response.status_code == 400, response.content
    assert response.json() == {
        "detail": f"{field}: must not contain NUL characters",
        "field": field,
    }
