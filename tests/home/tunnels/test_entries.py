"""Proxy entries in the API and on the pages, without a cloud: an entry with its tunnel's
state, the wish to open it recorded and the reconciler queued (never run), validation
naming the field, and nothing stored when the cloud cannot be reached."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from home.tunnels.models import ProxyEntry, Tunnel
from tests.home.conftest import Api
from tests.home.factories import domain, entry_in_db

pytestmark = pytest.mark.django_db


def test_a_domain_shows_its_entries_with_the_tunnel_state(api: Api) -> None:
    added = domain()
    entry = entry_in_db(added)
    body = api.get(f"/api/domains/{added.pk}").json()
    assert [e["id"] for e in body["entries"]] == [entry.pk]
    got = api.get(f"/api/proxy-entries/{entry.pk}").json()
    assert got["tunnel_port"] == 2103
    assert got["tunnel"] == {
        "desired": "closed",
        "state": "closed",
        "pid": None,
        "since": None,
        "last_error": "",
    }


def test_opening_a_tunnel_records_the_wish_and_queues_the_reconciler(
    api: Api, django_capture_on_commit_callbacks: Any
) -> None:
    entry = entry_in_db(domain())
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = api.post(f"/api/proxy-entries/{entry.pk}/tunnel", {"open": True})
    assert response.status_code == 202
    assert response.json()["tunnel"]["desired"] == "open"
    assert response.json()["tunnel"]["state"] == "opening"
    assert len(queued) == 1


def test_a_tunnel_request_without_open_is_a_422_naming_it(api: Api) -> None:
    entry = entry_in_db(domain())
    response = api.post(f"/api/proxy-entries/{entry.pk}/tunnel", {})
    assert response.status_code == 422
    assert response.json()["field"] == "open"
    assert not Tunnel.objects.get().desired_open


def test_an_entry_is_not_stored_when_the_cloud_is_unreachable(
    api: Api, cloud_down: dict[str, Any]
) -> None:
    added = domain()
    response = api.post(f"/api/domains/{added.pk}/proxy-entries", {"home_port": 8443})
    assert response.status_code == 502
    assert "cannot reach the cloud" in response.json()["detail"]
    assert not ProxyEntry.objects.exists()
    assert not Tunnel.objects.exists()


def test_the_open_tunnel_button_records_the_wish(
    client: Client, user: Any, django_capture_on_commit_callbacks: Any
) -> None:
    entry = entry_in_db(domain())
    client.force_login(user)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = client.post(f"/entries/{entry.pk}/tunnel/", {"open": "1"})
    assert response.status_code == 302
    assert Tunnel.objects.get().desired_open
    assert len(queued) == 1


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"home_port": 22, "scheme": "tcp", "allow": ["10.0.0.1/8"]}, 400, "allow"),
        ({"home_port": 22, "allow": ["not a network"]}, 400, "allow"),
        ({"home_port": 22, "scheme": "udp"}, 422, "scheme"),
        ({"home_port": 22, "allow": "10.0.0.0/8"}, 422, "allow"),
    ],
)
def test_a_bad_kind_or_allowlist_is_refused_naming_it_before_any_port_is_reserved(
    api: Api, body: dict[str, Any], status: int, field: str
) -> None:
    added = domain()
    response = api.post(f"/api/domains/{added.pk}/proxy-entries", body)
    assert response.status_code == status, response.json()
    assert response.json()["field"] == field
    assert not ProxyEntry.objects.exists()
    assert not Tunnel.objects.exists()


def test_an_allowlist_change_the_cloud_cannot_take_leaves_the_entry_as_it_was(
    api: Api, cloud_down: dict[str, Any]
) -> None:
    entry = entry_in_db(domain())
    response = api.patch(f"/api/proxy-entries/{entry.pk}/allow", {"allow": ["192.0.2.0/24"]})
    assert response.status_code == 502, response.json()
    assert ProxyEntry.objects.get().allow == []
    bad = api.patch(f"/api/proxy-entries/{entry.pk}/allow", {"allow": ["192.0.2.1/24"]})
    assert bad.status_code == 400 and bad.json()["field"] == "allow"
