"""The cloud UI in a real headless Chromium against the whole cloud site: a person signs
up, the administrator approves them in Django admin, they register a home and publish a
hostname; every page visited is kept as a screenshot."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.browser import Album, chromium, tab
from tests.support.sites import CloudSite
from tests.support.ssh import keygen

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as running_browser:
        yield running_browser


@pytest.fixture(scope="module")
def album() -> Album:
    return Album("cloud")


def _log_in(page: Page, username: str, password: str) -> None:
    page.goto("/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("main button[type=submit]")


def _field_of(page: Page, input_id: str):
    """The form row (label, input, its errors) that holds the input `input_id`."""
    return page.locator(f".field:has(#{input_id})")


def test_a_new_user_signs_up_is_approved_by_the_admin_registers_a_home_and_publishes_a_hostname(
    cloud: CloudSite, browser: Browser, album: Album, tmp_path: Path
) -> None:
    password = "Frida-pass-2024"
    with tab(browser, cloud.url) as person:
        page = person.page
        page.goto("/signup/")
        album.shot(page, "signup")
        page.fill("#id_username", "frida")
        page.fill("#id_email", "frida@example.com")
        page.fill("#id_password1", password)
        page.fill("#id_password2", password)
        page.click("main button[type=submit]")
        expect(page.locator("main h1")).to_have_text("Thanks, frida")
        expect(page.locator("main .badge")).to_have_text("waiting for approval")
        album.shot(page, "signup-done")

        _log_in(page, "frida", password)
        assert page.url.endswith("/login/")
        expect(page.locator("main .msg.error")).to_be_visible()
        album.shot(page, "login-before-approval")

        with tab(browser, cloud.url) as admin:
            apage = admin.page
            apage.goto("/admin/")
            apage.fill("#id_username", "admin")
            apage.fill("#id_password", cloud.admin_password)
            apage.click("input[type=submit]")
            expect(apage.locator("#site-name")).to_be_visible()
            album.shot(apage, "admin-index")
            apage.goto("/admin/auth/user/?is_active__exact=0")
            row = apage.locator("#result_list tbody tr", has_text="frida")
            expect(row.locator("td.field-is_active img")).to_have_attribute("alt", "False")
            album.shot(apage, "admin-inactive-accounts")
            row.locator("input[name=_selected_action]").check()
            apage.select_option("select[name=action]", "approve")
            apage.click("button[name=index]")
            apage.goto("/admin/auth/user/?q=frida")
            row = apage.locator("#result_list tbody tr", has_text="frida")
            expect(row.locator("td.field-is_active img")).to_have_attribute("alt", "True")
            album.shot(apage, "admin-approved")
            assert admin.errors == []

        _log_in(page, "frida", password)
        expect(page.locator("main h1")).to_have_text("Dashboard")
        assert page.url.rstrip("/") == cloud.url
        album.shot(page, "dashboard-no-home")

        page.get_by_role("link", name="Register a home").click()
        expect(page).to_have_url(f"{cloud.url}/homes/register/")
        album.shot(page, "register-home")
        page.fill("#id_public_key", keygen(tmp_path / "frida_key"))
        page.click("main button[type=submit]")
        expect(page.locator("#home-status")).to_be_visible()
        album.shot(page, "dashboard-home-registered")
        # Nobody clicks: the dashboard follows the provisioning on its own.
        expect(page.locator("#home-status")).to_have_text("ready", timeout=30_000)
        username = page.locator("#ssh-username").inner_text()
        assert username.endswith("_frida")
        port_base = int(page.locator("#port-range").inner_text().split()[0])
        album.shot(page, "dashboard-ready")

        page.get_by_role("link", name="Add mapping").click()
        album.shot(page, "mapping-add")
        page.fill("#id_host", "Shop.Frida.Homes.test")
        page.fill("#id_tunnel_port", str(port_base))
        page.click("main button[type=submit]")
        row = page.locator("#mappings tr", has_text="shop.frida.homes.test")
        expect(row).to_be_visible()
        expect(row).to_contain_text(str(port_base))
        expect(page.locator(".messages .msg.success")).to_contain_text("shop.frida.homes.test")
        expect(row.locator("[data-edge]")).to_have_text("routed", timeout=15_000)
        album.shot(page, "dashboard-mapping")

        page.get_by_role("link", name="API tokens").click()
        page.fill("#id_name", "backup script")
        page.click("main button[type=submit]")
        token = page.locator("#new-token").inner_text().strip()
        expect(page.locator("#tokens")).to_contain_text("backup script")
        album.shot(page, "tokens")
        assert person.errors == []

    # The token the page showed once works for scripts and sees this home's mapping.
    api = cloud.api(token)
    homes = api.get(f"{cloud.url}/api/homes", timeout=10).json()
    assert [h["ssh_username"] for h in homes] == [username]
    mappings = api.get(f"{cloud.url}/api/homes/{homes[0]['slug']}/proxy-mappings", timeout=10)
    assert [m["host"] for m in mappings.json()] == ["shop.frida.homes.test"]


def test_a_bad_hostname_is_shown_next_to_the_host_field_and_nothing_is_added(
    cloud: CloudSite, browser: Browser, album: Album, tmp_path: Path
) -> None:
    cloud.create_user("gus", "Gus-pass-2024")
    api = cloud.api(cloud.token("gus", "Gus-pass-2024"))
    r = api.post(
        f"{cloud.url}/api/homes", json={"public_key": keygen(tmp_path / "gus_key")}, timeout=10
    )
    assert r.status_code == 201, r.text
    with tab(browser, cloud.url) as person:
        page = person.page
        _log_in(page, "gus", "Gus-pass-2024")
        expect(page.locator("#home-status")).to_have_text("ready", timeout=30_000)
        page.goto("/mappings/add/")
        page.fill("#id_host", "bad host.test")
        page.click("main button[type=submit]")
        host = _field_of(page, "id_host")
        expect(host).to_have_class("field has-error")
        expect(host.locator(".error")).to_contain_text("host")
        expect(_field_of(page, "id_tunnel_port").locator(".error")).to_have_count(0)
        expect(page.locator("#id_host")).to_have_value("bad host.test")
        album.shot(page, "mapping-bad-hostname")
        page.goto("/")
        expect(page.locator("#mappings")).to_contain_text("No mappings yet.")
        assert person.errors == []


def test_a_tcp_mapping_gets_a_public_port_and_its_allowlist_is_set_from_the_dashboard(
    cloud: CloudSite, browser: Browser, album: Album, tmp_path: Path
) -> None:
    cloud.create_user("hedy", "Hedy-pass-2024")
    api = cloud.api(cloud.token("hedy", "Hedy-pass-2024"))
    r = api.post(
        f"{cloud.url}/api/homes", json={"public_key": keygen(tmp_path / "hedy_key")}, timeout=10
    )
    assert r.status_code == 201, r.text
    slug = r.json()["slug"]
    first = int(cloud.env["CLOUDATHOME_TCP_PORTS"].split("-")[0])
    with tab(browser, cloud.url) as person:
        page = person.page
        _log_in(page, "hedy", "Hedy-pass-2024")
        expect(page.locator("#home-status")).to_have_text("ready", timeout=30_000)
        page.goto("/mappings/add/")
        page.select_option("#id_scheme", "tcp")
        page.fill("#id_allow", "10.0.0.1/8")
        page.click("main button[type=submit]")
        allow = _field_of(page, "id_allow")
        expect(allow).to_have_class("field has-error")
        expect(allow.locator(".error")).to_contain_text("host bits")
        page.fill("#id_allow", "127.0.0.2 2001:db8::/32")
        page.click("main button[type=submit]")
        row = page.locator("#mappings tr[data-scheme=tcp]")
        expect(row).to_be_visible()
        public = int(row.get_attribute("data-public-port") or 0)
        assert public >= first
        expect(row.locator("input[name=allow]")).to_have_value("127.0.0.2/32 2001:db8::/32")
        expect(row.locator("[data-edge]")).to_have_text("routed", timeout=15_000)
        album.shot(page, "dashboard-tcp-mapping")
        row.locator("input[name=allow]").fill("not-a-network")
        row.get_by_role("button", name="Save").click()
        expect(page.locator(".messages .msg.error")).to_contain_text("allow")
        row = page.locator("#mappings tr[data-scheme=tcp]")
        row.locator("input[name=allow]").fill("")
        row.get_by_role("button", name="Save").click()
        expect(page.locator(".messages .msg.success")).to_contain_text("Allowed networks")
        expect(page.locator("#mappings tr[data-scheme=tcp] input[name=allow]")).to_have_value("")
        assert person.errors == []
    mappings = api.get(f"{cloud.url}/api/homes/{slug}/proxy-mappings", timeout=10).json()
    assert [(m["scheme"], m["public_port"], m["allow"]) for m in mappings] == [("tcp", public, [])]
