"""The cloud suite runs against cloud.settings (tests.support.django_site)."""

from __future__ import annotations

import pytest

from tests.support import django_site

_STATE = django_site.use_site("cloud.settings")

# pytest-django sets Django up in its trylast pytest_configure only if Django is already
# imported, and this conftest may load after its early hook: import it now.
import django  # noqa: E402, F401


def pytest_configure(config: pytest.Config) -> None:
    django_site.configure()


def pytest_unconfigure(config: pytest.Config) -> None:
    django_site.clean_up(_STATE)
