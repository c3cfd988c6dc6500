"""The home suite runs against home.settings (tests.support.django_site)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import django_site

_STATE = django_site.use_site("home.settings")

# pytest-django sets Django up in its trylast pytest_configure only if Django is already
# imported, and this conftest may load after its early hook: import it now.
import django  # noqa: E402, F401


def pytest_configure(config: pytest.Config) -> None:
    django_site.configure()


def pytest_unconfigure(config: pytest.Config) -> None:
    django_site.clean_up(_STATE)


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    """A root-owned folder for one module's sites (sshd refuses key files under /tmp)."""
    from tests.support.sites import state_root

    with state_root() as path:
        yield path
