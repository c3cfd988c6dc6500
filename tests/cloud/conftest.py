"""Two tenants for the modules of the cloud suite that define a `site` fixture: alice and
bob, each with a ready home on that module's site."""

from __future__ import annotations

import pytest

from tests.support.sites import CloudSite
from tests.support.tenants import Tenant, tenant


@pytest.fixture(scope="module")
def alice(site: CloudSite, tmp_path_factory: pytest.TempPathFactory) -> Tenant:
    return tenant(site, tmp_path_factory.mktemp("alice"), "alice")


@pytest.fixture(scope="module")
def bob(site: CloudSite, tmp_path_factory: pytest.TempPathFactory) -> Tenant:
    return tenant(site, tmp_path_factory.mktemp("bob"), "bob")
