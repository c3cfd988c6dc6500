"""The cloud's API against a real cloud site (HAProxy, sshd, web, worker, beat, Redis,
PostgreSQL): schemathesis, driven by the cloud's own OpenAPI schema with an administrator's
token (so the admin operations run too), finds no server error and no answer its schema does
not document."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.sites import CloudSite, cloud_site

# Examples per operation: enough to hit every error path's shape, bounded for `make test`.
EXAMPLES = 12


@pytest.fixture(scope="module")
def site() -> Iterator[CloudSite]:
    with cloud_site() as running:
        yield running


@pytest.fixture(scope="module")
def token(site: CloudSite) -> str:
    return site.token("admin", site.admin_password)


@pytest.fixture(scope="module")
def cloud_schema(site: CloudSite) -> Any:
    return schemathesis.openapi.from_url(f"{site.url}/api/schema/")


schema = schemathesis.pytest.from_fixture("cloud_schema")


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_the_cloud_api_answers_every_generated_request_within_its_schema(
    case: Any, site: CloudSite, token: str
) -> None:
    response = case.call(base_url=site.url, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text}"
    case.validate_response(response, checks=[status_code_conformance, response_schema_conformance])
