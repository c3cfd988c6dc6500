"""The cloud and the Home Console side by side in one browser (one cookie jar, as on a machine
that runs both, like the demo): each site has its own session and CSRF cookies, so logging into
one never logs out of the other and a form of each still posts; both pages are served under a
Content-Security-Policy that allows no inline script, and run without one violation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, Page, expect

from tests.support.browser import VIEWPORT, chromium
from tests.support.sites import CloudSite, HomeSite, registered_console

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def console(cloud: CloudSite, root: Path, console_user: Any) -> Iterator[HomeSite]:
    with registered_console(cloud, root, "duo", console_user) as site:
        yield site


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as running:
        yield running


def _log_in(page: Page, url: str, username: str, password: str) -> None:
    page.goto(f"{url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("main button[type=submit]")
    expect(page.locator("main h1").first).to_be_visible()
    assert "/login/" not in page.url, page.url


@pytest.mark.parametrize("site", ["cloud", "console"])
def test_each_site_has_its_own_cookies_and_a_policy_without_inline_script(
    request: pytest.FixtureRequest, site: str
) -> None:
    running = request.getfixturevalue(site)
    r = requests.get(f"{running.url}/login/", timeout=10)
    name = "cloud" if site == "cloud" else "home"
    assert r.cookies.keys() == [f"cah_{name}_csrftoken"]
    policy = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy.split("script-src", 1)[1].split(";", 1)[0]
    # Plain HTTP here: no Secure flag and no HSTS (CLOUDATHOME_SECURE_COOKIES turns both on).
    assert "Strict-Transport-Security" not in r.headers
    for path in ("/api/schema/swagger/", "/api/schema/redoc/"):
        docs = requests.get(f"{running.url}{path}", timeout=10)
        assert docs.status_code == 200 and "Content-Security-Policy" in docs.headers
        assert "<script>" not in docs.text


def test_both_sites_are_used_side_by_side_in_one_browser(
    cloud: CloudSite, console: HomeSite, browser: Browser
) -> None:
    context = browser.new_context(viewport=VIEWPORT)
    errors: list[str] = []
    try:
        cloud_page, home_page = context.new_page(), context.new_page()
        for page in (cloud_page, home_page):
            page.set_default_timeout(15_000)
            page.on("pageerror", lambda exc: errors.append(f"script error: {exc}"))
            page.on(
                "console",
                lambda m: errors.append(m.text) if m.type == "error" else None,
            )
        _log_in(cloud_page, cloud.url, "duo", "Duo-pass-42")
        _log_in(home_page, console.url, "admin", console.admin_password)
        names = {c["name"] for c in context.cookies()}
        assert {"cah_cloud_session", "cah_home_session"} <= names, names
        assert {"cah_cloud_csrftoken", "cah_home_csrftoken"} <= names, names

        # Act on the cloud after logging into the console: still logged in, its form posts.
        cloud_page.goto(f"{cloud.url}/tokens/")
        cloud_page.fill("#id_name", "side-by-side")
        cloud_page.click("main button[type=submit]")
        expect(cloud_page.locator("#new-token")).to_contain_text("cah_")

        # And on the console after acting on the cloud.
        home_page.goto(f"{console.url}/domains/add/")
        home_page.fill("#id_name", "www.duo.homes.test")
        home_page.fill("#id_email", "duo@example.com")
        home_page.click("main button[type=submit]")
        expect(home_page.locator("main h1")).to_have_text("www.duo.homes.test")

        # A confirm() from our own script file (no inline handler) still guards a delete.
        home_page.once("dialog", lambda dialog: dialog.dismiss())
        home_page.click("text=Delete domain")
        expect(home_page.locator("main h1")).to_have_text("www.duo.homes.test")

        for page, url in ((cloud_page, cloud.url), (home_page, console.url)):
            page.goto(f"{url}/")
            assert "/login/" not in page.url, page.url
        assert errors == []
    finally:
        context.close()
