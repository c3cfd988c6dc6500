"""The shared library's tests run in-process against the cloud's settings (any site's would
do: both have an `accounts.ApiToken`), with a throwaway state dir unless the caller chose one."""

from __future__ import annotations

import pytest

from tests.support import django_site

_STATE = django_site.prepare("cloud.settings")


def pytest_configure(config: pytest.Config) -> None:
    django_site.setup()


def pytest_unconfigure(config: pytest.Config) -> None:
    django_site.cleanup(_STATE)
