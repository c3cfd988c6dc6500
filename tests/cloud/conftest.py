"""The cloud suite runs against cloud.settings (tests.support.django_site)."""

from __future__ import annotations

import pytest

from tests.support import django_site

_STATE = django_site.prepare("cloud.settings")


def pytest_configure(config: pytest.Config) -> None:
    django_site.setup()


def pytest_unconfigure(config: pytest.Config) -> None:
    django_site.cleanup(_STATE)
