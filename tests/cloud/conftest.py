"""The cloud suite runs against cloud.settings (tests.support.django_site); two tenants for
the module's cloud: alice and bob, each with a ready home on it."""

from __future__ import annotations

import pytest

from tests.support import django_site
from tests.support.sites import CloudSite
from tests.support.tenants import Tenant, tenant

_STATE = django_site.prepare("cloud.settings")


def pytest_configure(config: pytest.Config) -> None:
    django_site.setup()


def pytest_unconfigure(config: pytest.Config) -> None:
    django_site.cleanup(_STATE)


@pytest.fixture(scope="module")
def alice(cloud: CloudSite, tmp_path_factory: pytest.TempPathFactory) -> Tenant:
    return tenant(cloud, tmp_path_factory.mktemp("alice"), "alice")


@pytest.fixture(scope="module")
def bob(cloud: CloudSite, tmp_path_factory: pytest.TempPathFactory) -> Tenant:
    return tenant(cloud, tmp_path_factory.mktemp("bob"), "bob")
