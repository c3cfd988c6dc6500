"""The home suite runs against home.settings (the cloud suite has its own settings, so the
two run as separate pytest invocations). The state dir is a throwaway folder unless the
caller chose one; DATABASE_URL selects PostgreSQL (pytest-django creates test_<name>)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "home.settings")
if "CLOUDATHOME_STATE_DIR" not in os.environ:
    _STATE = tempfile.mkdtemp(prefix="cah-home-tests-")
    os.makedirs(os.path.join(_STATE, "static"))  # STATIC_ROOT; whitenoise warns without it
    os.environ["CLOUDATHOME_STATE_DIR"] = _STATE
else:
    _STATE = ""

# pytest-django sets Django up in its trylast pytest_configure only if Django is already
# imported, and this conftest may load after its early hook: import it now.
import django


def pytest_configure(config: pytest.Config) -> None:
    from django.apps import apps
    from django.conf import settings

    if not apps.ready:
        django.setup()
    # The default hasher spends ~0.5 s per password by design; in-process tests only need it
    # to work (the sites started as real processes keep the real hasher).
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def pytest_unconfigure(config: pytest.Config) -> None:
    if _STATE:
        shutil.rmtree(_STATE, ignore_errors=True)


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    """A root-owned folder for one module's sites (sshd refuses key files under /tmp)."""
    from tests.support.sites import state_root

    with state_root() as path:
        yield path
