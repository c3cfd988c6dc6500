"""In-process Django for one site's tests: its settings module, a throwaway state dir unless
the caller chose one, and a fast password hasher. Each suite's conftest calls prepare() when
it is imported and setup() from pytest_configure. DATABASE_URL selects PostgreSQL
(pytest-django creates test_<name>). Sites that tests start as real processes never see these
variables (workers.local.sites gives each only its own)."""

from __future__ import annotations

import os
import shutil
import tempfile

# pytest-django sets Django up in its trylast pytest_configure only if Django is already
# imported, and a conftest may load after that early hook: import it now.
import django


def prepare(settings_module: str) -> str:
    """Choose the settings (unless the caller did) and a state dir; return the state dir made
    here, for cleanup(), or "" when the caller chose one."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", settings_module)
    if "CLOUDATHOME_STATE_DIR" in os.environ:
        return ""
    state = tempfile.mkdtemp(prefix=f"cah-{settings_module.split('.')[0]}-tests-")
    os.makedirs(os.path.join(state, "static"))  # STATIC_ROOT; whitenoise warns without it
    os.environ["CLOUDATHOME_STATE_DIR"] = state
    return state


def setup() -> None:
    from django.apps import apps
    from django.conf import settings

    if not apps.ready:
        django.setup()
    # The default hasher spends ~0.5 s per password by design; in-process tests only need it
    # to work (the sites started as real processes keep the real hasher).
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def cleanup(state: str) -> None:
    if state:
        shutil.rmtree(state, ignore_errors=True)
