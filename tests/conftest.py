"""Fixtures both suites share: a whole cloud site as real processes, one per test module, and
the DNS server it proves custom domains against (Pebble resolves names with it too)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.sites import CloudSite, cloud_site
from workers.local.pebble import MockDns, mock_dns


@pytest.fixture(scope="module")
def dns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MockDns]:
    """pebble-challtestsrv for this module: TXT records are set through its API, as a user
    would at a DNS provider."""
    with mock_dns(tmp_path_factory.mktemp("dns")) as server:
        yield server


@pytest.fixture(scope="module")
def cloud(request: pytest.FixtureRequest, dns: MockDns) -> Iterator[CloudSite]:
    """`cloudathome cloud up` for this module; a module's CLOUD_ENV adds settings to it."""
    env = {"CLOUDATHOME_DNS_RESOLVERS": dns.resolver, **getattr(request.module, "CLOUD_ENV", {})}
    with cloud_site(extra_env=env) as site:
        yield site
