"""The NinjaAPI both sites build on (workers.common.api): one error shape for every error a
client can meet, domain errors at their status, and 503 with the reason when a component of
the site is down (here a real Redis, started and stopped)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.http import HttpRequest
from ninja import Router, Schema
from ninja.testing import TestClient

from workers.celery import TransientError
from workers.common.api import site_api
from workers.common.errors import Conflict, Forbidden, Invalid, NotFound, Unavailable
from workers.local.procs import free_port, running, stop_pid
from workers.locks import exclusive, redis_client

ERRORS = {
    "invalid": Invalid("must be https or http", field="scheme"),
    "forbidden": Forbidden("administrators only"),
    "missing": NotFound("no such mapping", field="host"),
    "taken": Conflict("this hostname belongs to another home", field="host"),
    "upstream": Unavailable("the cloud refused the mapping"),
    "transient": TransientError("lock edge-sync is held by another run"),
}


class MappingIn(Schema):
    host: str
    tunnel_port: int


def api_with(redis_url: str = "") -> TestClient:
    router = Router()

    @router.get("/raise/{kind}", auth=None)
    def raise_(request: HttpRequest, kind: str) -> None:
        raise ERRORS[kind]

    @router.post("/mappings", auth=None)
    def create(request: HttpRequest, body: MappingIn) -> dict[str, Any]:
        return {"host": body.host}

    @router.get("/private")
    def private(request: HttpRequest) -> dict[str, Any]:
        return {}

    @router.post("/sync", auth=None)
    def sync(request: HttpRequest) -> dict[str, Any]:
        with exclusive(redis_url, "test-api-sync", wait=1):
            return {"synced": True}

    api = site_api("test API", "errors", auth=[lambda request: None])
    api.add_router("/", router)
    return TestClient(api)


@pytest.mark.parametrize(
    ("kind", "status", "body"),
    [
        ("invalid", 400, {"detail": "scheme: must be https or http", "field": "scheme"}),
        ("forbidden", 403, {"detail": "administrators only"}),
        ("missing", 404, {"detail": "host: no such mapping", "field": "host"}),
        ("taken", 409, {"detail": "host: this hostname belongs to another home", "field": "host"}),
        ("upstream", 502, {"detail": "the cloud refused the mapping"}),
        ("transient", 503, {"detail": "lock edge-sync is held by another run"}),
    ],
)
def test_domain_errors_answer_their_status_in_the_one_shape(
    kind: str, status: int, body: dict[str, str]
) -> None:
    r = api_with().get(f"/raise/{kind}")
    assert (r.status_code, r.json()) == (status, body)


def test_invalid_input_names_the_field() -> None:
    r = api_with().post("/mappings", json={"host": "a.example", "tunnel_port": "many"})
    assert r.status_code == 422
    assert r.json()["field"] == "tunnel_port"
    assert r.json()["detail"].startswith("tunnel_port: ")


def test_a_missing_token_is_a_401_saying_how_to_send_one() -> None:
    r = api_with().get("/private")
    assert r.status_code == 401
    assert r.json() == {"detail": "authentication required: send 'Authorization: Bearer <token>'"}


@pytest.fixture
def stopped_redis(tmp_path: Path) -> Iterator[str]:
    """The URL of a real Redis that answered once and has been stopped since."""
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    with running(argv, log=tmp_path / "redis.log", ready=lambda: redis_client(url).ping()) as proc:
        assert api_with(url).post("/sync").json() == {"synced": True}
        stop_pid(proc)
        yield url


def test_a_stopped_redis_is_a_503_with_the_reason_not_a_500(stopped_redis: str) -> None:
    r = api_with(stopped_redis).post("/sync")
    assert r.status_code == 503
    assert r.json()["detail"].startswith("lock test-api-sync: Redis is not reachable")
    assert set(r.json()) == {"detail"}
