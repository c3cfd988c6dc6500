"""Schemathesis against a running site's own OpenAPI schema: every operation, valid and
invalid inputs, a bounded number of examples each, authenticated with a Bearer token. A
request fails the test when the site answers a server error or a status (or body) that the
operation's schema does not document."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance


def fuzz(url: str, token: str, examples: int) -> tuple[int, int]:
    """Run every operation of `<url>/api/schema/`; returns (operations, requests sent)."""
    schema = schemathesis.openapi.from_url(f"{url}/api/schema/")
    headers = {"Authorization": f"Bearer {token}"}
    sent = operations = 0
    for result in schema.get_all_operations():
        operations += 1
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=examples,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def one(case: Any) -> None:
                nonlocal sent
                sent += 1
                response = case.call(base_url=url, headers=headers, timeout=30)
                what = f"{case.method} {case.formatted_path} {case.body!r}"
                assert response.status_code < 500, f"{what}: {response.status_code} {response.text}"
                case.validate_response(
                    response, checks=[status_code_conformance, response_schema_conformance]
                )

            one()
    return operations, sent
