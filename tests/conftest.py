"""Fixtures both suites share: a whole cloud site as real processes, one per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.sites import CloudSite, cloud_site


@pytest.fixture(scope="module")
def cloud(request: pytest.FixtureRequest) -> Iterator[CloudSite]:
    """`cloudathome cloud up` for this module; a module's CLOUD_ENV adds settings to it."""
    with cloud_site(extra_env=getattr(request.module, "CLOUD_ENV", None)) as site:
        yield site
