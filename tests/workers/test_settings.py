"""The settings both sites share (workers.common.settings): each site's settings module builds
on them, so the home has the cloud's password validators and cookie flags, from one place."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from workers.common import settings as shared

ROOT = Path(__file__).resolve().parents[2]
SHARED = [name for name in shared.__all__ if name not in ("DEBUG", "CSRF_TRUSTED_ORIGINS")]


def site_settings(site: str, tmp_path: Path, **env: str) -> dict[str, str]:
    """The shared names as `<site>.settings` has them, read in a fresh interpreter."""
    code = (
        "import importlib, json, sys\n"
        "s = importlib.import_module(sys.argv[1] + '.settings')\n"
        "print(json.dumps({name: repr(getattr(s, name)) for name in sys.argv[2:]}))\n"
    )
    environ = {"PATH": "/usr/bin:/bin", "CLOUDATHOME_STATE_DIR": str(tmp_path / site), **env}
    done = subprocess.run(
        [sys.executable, "-c", code, site, *shared.__all__],
        capture_output=True,
        text=True,
        env=environ,
        cwd=ROOT,
        timeout=60,
        check=True,
    )
    return dict(json.loads(done.stdout))


def test_both_sites_have_every_shared_setting_from_the_one_module(tmp_path: Path) -> None:
    expected = {name: repr(getattr(shared, name)) for name in SHARED}
    cloud, home = site_settings("cloud", tmp_path), site_settings("home", tmp_path)
    # Each site adds its error pages after the shared middleware, nothing else: the cloud the
    # shared ones, the console the same with its own dependencies.
    pages = {"cloud": "workers.common.ui.errors.ErrorPageMiddleware"}
    pages["home"] = "home.errors.ErrorPageMiddleware"
    for site, values in (("cloud", cloud), ("home", home)):
        assert values.pop("MIDDLEWARE") == repr([*shared.MIDDLEWARE, pages[site]])
        assert {name: values[name] for name in SHARED if name != "MIDDLEWARE"} == {
            name: value for name, value in expected.items() if name != "MIDDLEWARE"
        }
    assert "MinimumLengthValidator" in home["AUTH_PASSWORD_VALIDATORS"]


@pytest.mark.parametrize("site", ["cloud", "home"])
def test_secure_cookies_are_one_switch_for_session_and_csrf(site: str, tmp_path: Path) -> None:
    off = site_settings(site, tmp_path)
    on = site_settings(site, tmp_path, CLOUDATHOME_SECURE_COOKIES="1", CLOUDATHOME_DEBUG="1")
    assert (off["SESSION_COOKIE_SECURE"], off["CSRF_COOKIE_SECURE"], off["DEBUG"]) == ("False",) * 3
    assert (on["SESSION_COOKIE_SECURE"], on["CSRF_COOKIE_SECURE"], on["DEBUG"]) == ("True",) * 3
    assert on["SESSION_COOKIE_HTTPONLY"] == "True"
