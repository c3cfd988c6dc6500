"""In-process Django for one site's suite (the two sites' settings cannot share a process, so
each suite is its own pytest invocation): its settings module, a throwaway state dir unless
the caller chose one, and a fast password hasher. DATABASE_URL selects PostgreSQL
(pytest-django creates test_<name>). Sites that tests start as real processes never see
these variables (workers.local.sites gives each only its own)."""

from __future__ import annotations

import os
import shutil
import tempfile


def use_site(settings_module: str) -> str:
    """Call at conftest import time; returns the state dir made here ('' if the caller's)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", settings_module)
    if "CLOUDATHOME_STATE_DIR" in os.environ:
        return ""
    state = tempfile.mkdtemp(prefix=f"cah-{settings_module.partition('.')[0]}-tests-")
    os.makedirs(os.path.join(state, "static"))  # STATIC_ROOT; whitenoise warns without it
    os.environ["CLOUDATHOME_STATE_DIR"] = state
    return state


def configure() -> None:
    """From the suite's pytest_configure."""
    import django
    from django.apps import apps
    from django.conf import settings

    if not apps.ready:
        django.setup()
    # The default hasher spends ~0.5 s per password by design; in-process tests only need it
    # to work (the sites started as real processes keep the real hasher).
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def clean_up(state: str) -> None:
    """From the suite's pytest_unconfigure."""
    if state:
        shutil.rmtree(state, ignore_errors=True)
