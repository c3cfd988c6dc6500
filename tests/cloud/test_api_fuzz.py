"""The cloud's API against a real cloud site (HAProxy, sshd, web, worker, beat, Redis,
PostgreSQL): schemathesis, driven by the cloud's own OpenAPI schema with an administrator's
token (so the admin operations run too), finds no server error and no answer its schema does
not document."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fuzz import fuzz
from tests.support.sites import CloudSite, cloud_site

# Examples per operation: enough to hit every error path's shape, bounded for `make test`.
EXAMPLES = 12
OPERATIONS = 11  # the API's operations today: a schema that lost some would fuzz less


@pytest.fixture(scope="module")
def site() -> Iterator[CloudSite]:
    with cloud_site() as running:
        yield running


@pytest.fixture(scope="module")
def token(site: CloudSite) -> str:
    return site.token("admin", site.admin_password)


def test_the_cloud_api_answers_every_generated_request_within_its_schema(
    site: CloudSite, token: str
) -> None:
    operations, sent = fuzz(site.url, token, EXAMPLES)
    assert operations >= OPERATIONS and sent >= 2 * operations  # valid and invalid input each
