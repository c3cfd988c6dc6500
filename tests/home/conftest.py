"""The home suite runs against home.settings (the cloud suite has its own settings, so the
two run as separate pytest invocations). The state dir is a throwaway folder unless the
caller chose one; DATABASE_URL selects PostgreSQL (pytest-django creates test_<name>)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import django_site
from tests.support.sites import CloudSite, state_root
from workers.local.pebble import MockDns, PebbleInfo, pebble_server

_STATE = django_site.prepare("home.settings")


def pytest_configure(config: pytest.Config) -> None:
    django_site.setup()


def pytest_unconfigure(config: pytest.Config) -> None:
    django_site.cleanup(_STATE)


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    """A root-owned folder for one module's sites (sshd refuses key files under /tmp)."""
    with state_root() as path:
        yield path


@pytest.fixture(scope="module")
def pebble(cloud: CloudSite, root: Path, dns: MockDns) -> Iterator[PebbleInfo]:
    """A local ACME CA that validates through the module's cloud edge (:80 and :443), with
    the cloud's DNS."""
    with pebble_server(
        root / "pebble", http_port=cloud.http_port, tls_port=cloud.https_port, dns=dns
    ) as info:
        yield info


@pytest.fixture(scope="module")
def console_user() -> Iterator[Any]:
    """The ordinary user one module's consoles run as (and register with), removed afterwards
    with every process it left: the console needs no root (issue 12)."""
    from tests.support.unprivileged import system_user

    with system_user() as user:
        yield user


# --- the console in process: a user, a token, a script's view of the API, a dead cloud ---------

PASSWORD = "correct horse battery staple"


@pytest.fixture
def user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("alice", password=PASSWORD)


@pytest.fixture
def token(client: Any, user: Any) -> str:
    response = client.post(
        "/api/auth/token",
        {"username": "alice", "password": PASSWORD},
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    return str(response.json()["token"])


class Api:
    """A script's view of the API: JSON in and out, Bearer token, no cookies."""

    def __init__(self, token: str) -> None:
        from django.test import Client

        self.client = Client()
        self.headers = {"Authorization": f"Bearer {token}"}

    def get(self, path: str) -> Any:
        return self.client.get(path, headers=self.headers)

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.client.post(
            path, body or {}, content_type="application/json", headers=self.headers
        )

    def patch(self, path: str, body: dict[str, Any]) -> Any:
        return self.client.patch(path, body, content_type="application/json", headers=self.headers)

    def delete(self, path: str) -> Any:
        return self.client.delete(path, headers=self.headers)


@pytest.fixture
def api(token: str) -> Api:
    return Api(token)


def write_cloudlink(directory: Path, api_port: int, ssh_port: int) -> dict[str, Any]:
    """A registered home's cloudlink.yaml pointing at the given loopback ports."""
    import yaml

    key = directory / "id_ed25519"
    key.write_text("not a key\n")
    key.chmod(0o600)
    (directory / "known_hosts").write_text("")
    data = {
        "cloudserver_url": f"http://127.0.0.1:{api_port}",
        "auth_token": "cah_000000000000_not-a-real-token",
        "home_slug": "hometest01",
        "ssh": {
            "host": "127.0.0.1",
            "port": ssh_port,
            "username": "home01_alice",
            "private_key_path": str(key),
            "known_hosts": str(directory / "known_hosts"),
        },
        "ports": {"base": 2100, "count": 10},
    }
    path = directory / "cloudlink.yaml"
    path.write_text(yaml.safe_dump(data))
    path.chmod(0o600)
    return data


@pytest.fixture
def cloud_down(tmp_path: Path, settings: Any) -> Iterator[dict[str, Any]]:
    """A registered home whose cloud (API and sshd) listens nowhere: closed loopback ports."""
    from home.cloudlink.services import link
    from workers.local.procs import free_port

    data = write_cloudlink(tmp_path, free_port(), free_port())
    settings.CLOUDLINK_CONFIG = tmp_path / "cloudlink.yaml"
    link.cache_clear()
    yield data
    link.cache_clear()
