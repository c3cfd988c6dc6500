"""Headless Chromium for the browser suites: Debian's chromium driven by Playwright's sync
API (never a downloaded browser), and an album that saves a full-page screenshot of every
page a test visits under artifacts/screenshots/<suite>/."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    ViewportSize,
    sync_playwright,
)

CHROMIUM = os.environ.get("CLOUDATHOME_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags chromium keeps calling Google services, which
# floods a closed network with retries; QUIC would try UDP first.
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}


@contextlib.contextmanager
def chromium(extra_args: Sequence[str] = ()) -> Iterator[Browser]:
    """One browser for a test module; Playwright stops the chromium it launched on exit."""
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[*ARGS, *extra_args])
        try:
            yield browser
        finally:
            browser.close()


class Album:
    """Numbered full-page screenshots of one suite (`01-signup.png`, ...); the suite's old
    pictures are removed first so the folder shows exactly the last run."""

    def __init__(self, suite: str) -> None:
        self.folder = SCREENSHOTS / suite
        self.folder.mkdir(parents=True, exist_ok=True)
        for old in self.folder.glob("*.png"):
            old.unlink()
        self.count = 0

    def shot(self, page: Page, name: str) -> Path:
        if not re.fullmatch(r"[a-z0-9-]+", name):
            raise ValueError(f"name: {name!r} must be lower-case letters, digits and dashes")
        self.count += 1
        path = self.folder / f"{self.count:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path


class Tab:
    """A page in its own browser context (its own cookies: one signed-in person), which
    records every script error and failed same-site request, so a test can assert a page
    worked and not only that some text appeared."""

    def __init__(self, browser: Browser, base_url: str, ignore_https_errors: bool = False) -> None:
        self.context: BrowserContext = browser.new_context(
            base_url=base_url, viewport=VIEWPORT, ignore_https_errors=ignore_https_errors
        )
        self.page: Page = self.context.new_page()
        self.page.set_default_timeout(15_000)
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(f"script error: {exc}"))
        self.page.on("console", self._console)
        self.page.on(
            "response",
            lambda r: (
                self.errors.append(f"HTTP {r.status} {r.url}")
                if r.status >= 400 and r.url.startswith(base_url)
                else None
            ),
        )

    def _console(self, message: ConsoleMessage) -> None:
        # A failed load is reported with its URL by the response handler instead.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(f"console error: {message.text}")

    def close(self) -> None:
        self.context.close()


@contextlib.contextmanager
def tab(browser: Browser, base_url: str, ignore_https_errors: bool = False) -> Iterator[Tab]:
    opened = Tab(browser, base_url, ignore_https_errors)
    try:
        yield opened
    finally:
        opened.close()
