"""The Home Console in a real headless Chromium, against a real cloud site, a registered
home, a real Pebble and a local HTTPS service: the owner adds a domain and watches its
certificate being issued, publishes the service and opens its tunnel; the browser then
reaches the service through the cloud edge. Every page visited is kept as a screenshot."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Response, expect

from home.certs.schemas import FLOW
from tests.support.browser import Album, chromium, tab
from tests.support.net import Echo, Service, echo_through, self_signed, serve
from tests.support.sites import (
    CloudSite,
    HomeSite,
    home_site,
    register_home,
    scratch_database,
)
from workers.common.processes import stop_process
from workers.local.pebble import PebbleInfo
from workers.local.procs import wait_for

pytestmark = pytest.mark.browser

DOMAIN = "shop.shopkeeper.homes.test"  # under the base domain: no DNS proof needed
CONSOLE_PASSWORD = "Console-pass-3"


def _close_every_tunnel(console: HomeSite) -> None:
    """Tunnels outlive the console on purpose: close each through the console."""
    api = console.api()
    entries = [
        e
        for d in api.get(f"{console.url}/api/domains", timeout=10).json()
        for e in api.get(f"{console.url}/api/domains/{d['id']}", timeout=10).json()["entries"]
    ]
    for e in entries:
        api.post(
            f"{console.url}/api/proxy-entries/{e['id']}/tunnel", json={"open": False}, timeout=10
        )
    for e in entries:

        def closed(entry_id: int = e["id"]) -> bool:
            r = api.get(f"{console.url}/api/proxy-entries/{entry_id}", timeout=5)
            return bool(r.json()["tunnel"]["state"] == "closed")

        try:
            wait_for(closed, timeout=20, what="tunnel closed")
        except TimeoutError:
            _stop_ssh(e["tunnel"]["pid"])


def _stop_ssh(pid: int | None) -> None:
    """Last resort for a tunnel the console failed to close: its recorded PID, and only
    while that PID is still an ssh process (never a recycled one)."""

    def is_ssh() -> bool:
        with contextlib.suppress(OSError):
            return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].endswith(b"ssh")
        return False

    if pid:
        stop_process(pid, timeout=5, is_ours=is_ssh)


@pytest.fixture(scope="module")
def console(
    cloud: CloudSite, root: Path, pebble: PebbleInfo, console_user: Any
) -> Iterator[HomeSite]:
    cloud.create_user("shopkeeper", "Shop-pass-42")
    config, done = register_home(cloud, root / "shop", "shopkeeper", "Shop-pass-42", console_user)
    assert done.returncode == 0, done.stderr
    env = {
        "CLOUDATHOME_ACME_DIRECTORY": pebble.directory_url,
        "CLOUDATHOME_ACME_CA_BUNDLE": pebble.ca_bundle,
    }
    with (
        scratch_database("cah_home") as db,
        home_site(root / "shop", config, db, CONSOLE_PASSWORD, env, user=console_user) as site,
    ):
        try:
            yield site
        finally:
            _close_every_tunnel(site)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    ctx, der = self_signed(tmp_path_factory.mktemp("svc"), DOMAIN)
    with serve("the shop at home", ctx, der) as svc:
        yield svc


@pytest.fixture(scope="module")
def browser(cloud: CloudSite) -> Iterator[Browser]:
    # The published name resolves to the cloud edge, as public DNS would make it.
    with chromium([f"--host-resolver-rules=MAP {DOMAIN}:443 127.0.0.1:{cloud.https_port}"]) as b:
        yield b


@pytest.fixture(scope="module")
def album() -> Album:
    return Album("home")


def _log_in(page: Page) -> None:
    page.goto("/login/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", CONSOLE_PASSWORD)
    page.click("main button[type=submit]")


# Records, in this tab's sessionStorage (which outlives the page's own reload), every job
# state and step the page shows without being reloaded: the proof that it updates live.
WATCH_JOB = """() => {
  window.__watching = true;
  const seen = [];
  const record = () => {
    const now = `${document.getElementById("job-state").textContent}|${document.getElementById("job-step").textContent}`;
    if (seen[seen.length - 1] !== now) seen.push(now);
    sessionStorage.setItem("job-seen", JSON.stringify(seen));
  };
  record();
  new MutationObserver(record).observe(document.getElementById("job"),
    { subtree: true, childList: true, characterData: true });
}"""


def test_the_owner_adds_a_domain_sees_its_certificate_issued_live_and_publishes_a_service(
    cloud: CloudSite,
    console: HomeSite,
    service: Service,
    browser: Browser,
    album: Album,
) -> None:
    with tab(browser, console.url) as owner:
        page = owner.page
        page.goto("/")
        assert "/login/" in page.url
        album.shot(page, "login")
        _log_in(page)
        expect(page.locator("main h1")).to_have_text("Dashboard")
        # The worker checks the link at its start; a page rendered before that follows it.
        expect(page.locator("#cloud-link h2 .badge")).to_have_text("healthy", timeout=30_000)
        expect(page.locator("#checks .badge")).to_have_text(["ok", "ok", "ok"])
        album.shot(page, "dashboard-empty")

        page.get_by_role("link", name="Add a domain").first.click()
        expect(page).to_have_url(f"{console.url}/domains/add/")
        album.shot(page, "domain-add")
        page.fill("#id_name", DOMAIN)
        page.fill("#id_email", "shop@example.com")
        page.click("main button[type=submit]")
        expect(page.locator("main h1")).to_have_text(DOMAIN)
        page.evaluate(WATCH_JOB)
        album.shot(page, "domain-job-queued")
        # The page reloads itself once the job has settled; nobody touches it meanwhile.
        expect(page.locator("#job-state")).to_have_text("done", timeout=60_000)
        seen = json.loads(page.evaluate("sessionStorage.getItem('job-seen')"))
        assert seen[0].startswith(("pending|", "running|")), seen
        assert len(seen) >= 2 and seen[-1] == "done|certificate issued", seen
        page.wait_for_function("() => !window.__watching")  # then it reloads by itself
        expect(page.locator("#cert-status")).to_have_text("Valid", timeout=10_000)
        expect(page.locator("#job-steps li")).to_have_count(len(FLOW))
        expect(page.locator("#job-steps li.done")).to_have_count(len(FLOW))
        # Under the home's base domain: owned at once, no TXT record to wait for.
        expect(page.locator("#ownership-status")).to_have_text("base")
        expect(page.locator("#job-steps li").last).to_have_text("Certificate issued")
        expect(page.locator("#cert-path")).to_contain_text(DOMAIN)
        expect(page.locator("#job-error")).to_be_hidden()
        album.shot(page, "domain-certificate-issued")

        page.locator("#entries").get_by_role("link", name="Add entry").click()
        expect(page.locator("#id_hostname")).to_have_value(DOMAIN)
        page.fill("#id_home_port", str(service.port))
        album.shot(page, "entry-add")
        page.click("main button[type=submit]")
        row = page.locator("#entries-table tr[id^=entry-]")
        expect(row).to_have_count(1)
        expect(row.locator("[data-tunnel-state]")).to_have_text("closed")
        expect(row).to_contain_text(f"127.0.0.1:{service.port}")
        album.shot(page, "entry-added")

        row.get_by_role("button", name="Open tunnel").click()
        expect(page.locator(".messages .msg.success")).to_contain_text("opening")
        # Nobody reloads: the page follows the tunnel until it is open.
        expect(row.locator("[data-tunnel-state]")).to_have_text("open", timeout=30_000)
        expect(row.get_by_role("button", name="Close tunnel")).to_be_visible()
        assert row.locator("td.mono").nth(1).inner_text().isdigit()  # the PID
        album.shot(page, "tunnel-open")

        page.get_by_role("link", name="Dashboard").click()
        expect(page.locator("#stat-tunnels")).to_contain_text("1 / 1")
        expect(page.locator("#stat-domains")).to_have_text("1")
        expect(page.locator("#domains .badge").first).to_have_text("Valid")
        album.shot(page, "dashboard-published")
        page.get_by_role("navigation").get_by_role("link", name="Domains").click()
        listed = page.locator("#domains tr", has_text=DOMAIN)
        expect(listed.locator(".badge").first).to_have_text("Valid")
        album.shot(page, "domains")
        assert owner.errors == []

    # A visitor's browser reaches the service at home through the cloud edge (TLS passes
    # through: the certificate is the service's own, hence ignore_https_errors).
    with tab(browser, f"https://{DOMAIN}", ignore_https_errors=True) as visitor:

        def served() -> Response | None:
            response = visitor.page.goto(f"https://{DOMAIN}/")
            return response if response is not None and response.ok else None

        response = wait_for(served, timeout=15, what="the published service")
        assert response.text() == "the shop at home"
        album.shot(visitor.page, "published-service")


def test_a_tcp_entry_gets_a_public_port_and_serves_only_its_allowed_networks(
    cloud: CloudSite, console: HomeSite, browser: Browser, album: Album
) -> None:
    # Under the domain the publishing test above added (a tcp entry needs no name of its own).
    domain = next(d for d in _domains(console) if d["name"] == DOMAIN)
    echo = Echo()
    try:
        with tab(browser, console.url) as owner:
            page = owner.page
            _log_in(page)
            page.goto(f"/domains/{domain['id']}/entries/add/")
            page.select_option("#id_scheme", "tcp")
            page.fill("#id_home_port", str(echo.port))
            page.fill("#id_allow", "127.0.0.2/8")
            page.click("main button[type=submit]")
            allow = page.locator(".field:has(#id_allow)")
            expect(allow).to_have_class("field has-error")
            expect(allow.locator(".error")).to_contain_text("host bits")
            page.fill("#id_allow", "127.0.0.2")
            album.shot(page, "entry-add-tcp")
            page.click("main button[type=submit]")
            row = page.locator("#entries-table tr", has=page.locator("[data-public-port]"))
            expect(row).to_have_count(1)
            public = int(row.locator("[data-public-port]").get_attribute("data-public-port") or 0)
            expect(row.locator("input[name=allow]")).to_have_value("127.0.0.2/32")
            row.get_by_role("button", name="Open tunnel").click()
            expect(row.locator("[data-tunnel-state]")).to_have_text("open", timeout=30_000)
            album.shot(page, "entry-tcp-open")
            data = os.urandom(1024 * 1024)
            assert wait_for(lambda: echo_through(public, data, "127.0.0.2") == data, timeout=15)
            assert echo_through(public, b"ping", "127.0.0.3") == b""
            row.locator("input[name=allow]").fill("")
            row.get_by_role("button", name="Save").click()
            expect(page.locator(".messages .msg.success")).to_contain_text("Allowed networks")
            assert wait_for(lambda: echo_through(public, b"hi", "127.0.0.3") == b"hi", timeout=15)
            assert owner.errors == []
    finally:
        echo.close()


def test_a_bad_domain_name_is_shown_next_to_its_field_and_nothing_is_added(
    console: HomeSite, browser: Browser, album: Album
) -> None:
    with tab(browser, console.url) as owner:
        page = owner.page
        _log_in(page)
        page.goto("/domains/add/")
        page.fill("#id_name", "not a domain")
        page.fill("#id_email", "shop@example.com")
        page.click("main button[type=submit]")
        name = page.locator(".field:has(#id_name)")
        expect(name).to_have_class("field has-error")
        expect(name.locator(".error")).to_be_visible()
        expect(page.locator(".field:has(#id_email) .error")).to_have_count(0)
        expect(page.locator("#id_name")).to_have_value("not a domain")
        album.shot(page, "domain-bad-name")
        names = [d["name"] for d in _domains(console)]
        assert "not a domain" not in names
        assert owner.errors == []


def _domains(console: HomeSite) -> list[dict]:
    r = console.api().get(f"{console.url}/api/domains", timeout=10)
    assert r.status_code == 200, r.text
    return list(r.json())
