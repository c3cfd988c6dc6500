"""The home suite runs against home.settings (the cloud suite has its own settings, so the
two run as separate pytest invocations). The state dir is a throwaway folder unless the
caller chose one; DATABASE_URL selects PostgreSQL (pytest-django creates test_<name>)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import django_site
from tests.support.sites import CloudSite, state_root
from workers.local.pebble import PebbleInfo, pebble_server

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
def pebble(cloud: CloudSite, root: Path) -> Iterator[PebbleInfo]:
    """A local ACME CA that validates through the module's cloud edge (:80 and :443)."""
    with pebble_server(
        root / "pebble", http_port=cloud.http_port, tls_port=cloud.https_port
    ) as info:
        yield info
