"""Domains in the API and on the pages, without a cloud: validation naming the field, the
certificate job queued (never run: pytest-django's test transaction never commits, and
django_capture_on_commit_callbacks(execute=False) shows what would be sent), renewals
refused while one waits, the domain page and form."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from home.certs.models import Domain, JobState
from tests.home.conftest import Api
from tests.home.factories import LONG_NAME, domain, domain_body, entry_in_db

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "nas example.com"),
        ("name", "nås.example.com"),
        ("name", LONG_NAME),
        ("name", "localhost"),
        ("email", "not-an-email"),
        ("cert_dir", "relative/certs"),
        ("challenge", "dns-01"),
        ("post_renew_action", "/bin/sh"),
        ("post_renew_action", "reload-nginx"),  # not one of the operator's
    ],
)
def test_adding_a_domain_with_a_bad_field_is_refused_naming_the_field(
    api: Api, field: str, value: Any
) -> None:
    response = api.post("/api/domains", domain_body(**{field: value}))
    assert response.status_code in (400, 422), response.content
    body = response.json()
    assert body["field"] == field
    assert body["detail"].startswith(f"{field}: ")
    assert not Domain.objects.exists()


def test_adding_a_domain_answers_201_with_a_pending_job_and_queues_the_certificate(
    api: Api, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = api.post("/api/domains", domain_body(name="NAS.Example.com"))
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["name"] == "nas.example.com"
    assert body["job"]["state"] == "pending"
    assert body["job"]["steps"][0] == {"name": "Queued for a worker", "status": "current"}
    assert body["cert_status"] == "none"
    assert body["entries"] == []
    assert len(queued) == 1
    assert api.get(f"/api/domains/{body['id']}").json()["name"] == "nas.example.com"


def test_adding_the_same_domain_twice_is_a_conflict(api: Api) -> None:
    assert api.post("/api/domains", domain_body()).status_code == 201
    response = api.post("/api/domains", domain_body())
    assert response.status_code == 409
    assert response.json()["field"] == "name"
    assert Domain.objects.count() == 1


def test_an_id_beyond_the_database_range_is_a_422_naming_it(api: Api) -> None:
    response = api.get(f"/api/domains/{2**70}")
    assert response.status_code == 422
    assert response.json()["field"] == "domain_id"


def test_renew_queues_a_forced_run_and_refuses_a_second_while_it_waits(
    api: Api, django_capture_on_commit_callbacks: Any
) -> None:
    added = domain()
    with django_capture_on_commit_callbacks(execute=False) as queued:
        first = api.post(f"/api/domains/{added.pk}/renew")
        second = api.post(f"/api/domains/{added.pk}/renew")
    assert first.status_code == 202
    assert first.json()["job"]["state"] == "pending"
    assert second.status_code == 409
    assert len(queued) == 1


def test_deleting_a_domain_without_entries_removes_it(api: Api) -> None:
    added = domain()
    assert api.delete(f"/api/domains/{added.pk}").status_code == 204
    assert not Domain.objects.exists()
    assert api.delete(f"/api/domains/{added.pk}").status_code == 404


def test_the_domain_form_shows_the_service_error_next_to_the_field(
    client: Client, user: Any
) -> None:
    client.force_login(user)
    form = domain_body(challenge="http-01", cert_dir="certs", post_renew_action="")
    response = client.post("/domains/add/", form)
    assert response.status_code == 200
    page = response.content.decode()
    assert re.search(r'has-error">\s*<label for="id_cert_dir"', page)
    assert "must be an absolute path" in page
    assert not Domain.objects.exists()


def test_the_domain_page_shows_the_certificate_the_job_and_the_entries(
    client: Client, user: Any
) -> None:
    added = domain(
        cert_dir="/srv/certs",
        job_state=JobState.RUNNING,
        job_step="challenge ready",
        cert_path="/srv/certs/nas.example.com",
    )
    entry_in_db(added)
    client.force_login(user)
    response = client.get(f"/domains/{added.pk}/")
    assert response.status_code == 200
    page = response.content.decode()
    assert '<li class="done">Temporary tunnel open</li>' in page
    assert '<li class="current">Challenge ready</li>' in page
    assert "/srv/certs/nas.example.com" in page
    assert "127.0.0.1:8443" in page
    assert "/static/home/domain.js" in page  # polls while the job runs


def test_the_domain_form_adds_the_domain_and_queues_its_certificate(
    client: Client, user: Any, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    settings.POST_RENEW_ACTIONS = {"reload-nginx": ("/usr/sbin/nginx", "-s", "reload")}
    client.force_login(user)
    form = domain_body(challenge="tls-alpn-01", post_renew_action="reload-nginx")
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = client.post("/domains/add/", form)
    added = Domain.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/domains/{added.pk}/"
    assert added.post_renew_action == "reload-nginx"
    assert added.challenge == "tls-alpn-01"
    assert len(queued) == 1
