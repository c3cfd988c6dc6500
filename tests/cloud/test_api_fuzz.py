"""The cloud's API against a real cloud site (HAProxy, sshd, web, worker, beat, Redis,
PostgreSQL): schemathesis, driven by the cloud's own OpenAPI schema with an administrator's
token (so the admin operations run too), finds no server error and no answer its schema does
not document."""

from __future__ import annotations

import pytest

from tests.support.fuzz import fuzz
from tests.support.sites import CloudSite

# Examples per operation: enough to hit every error path's shape, bounded for `make test`.
EXAMPLES = 12
OPERATIONS = 11  # the API's operations today: a schema that lost some would fuzz less


@pytest.fixture(scope="module")
def token(cloud: CloudSite) -> str:
    return cloud.token("admin", cloud.admin_password)


def test_the_cloud_api_answers_every_generated_request_within_its_schema(
    cloud: CloudSite, token: str
) -> None:
    operations, sent = fuzz(cloud.url, token, EXAMPLES)
    assert operations >= OPERATIONS and sent >= 2 * operations  # valid and invalid input each
