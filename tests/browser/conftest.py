"""Playwright fixtures: Debian's Chromium, one browser per session, pages that record dialogs.

The browser is the system's /usr/bin/chromium (the Makefile installs the
Debian package when it is missing); Playwright never downloads one.
Screenshots go to test-artifacts/screenshots/, which is not committed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Dialog, Page, expect, sync_playwright

from tests.support.api import ApiServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
# Playwright's default for waits and expectations; the machine is shared and slow at times.
WAIT_MS = 30_000
expect.set_options(timeout=WAIT_MS)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: run `make install-browser` (apt-get install chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class Dialogs:
    """Dialogs the page opened: confirmations are accepted, anything else is an alert."""

    confirms: list[str] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)

    def handle(self, dialog: Dialog) -> None:
        if dialog.type == "confirm":
            self.confirms.append(dialog.message)
            dialog.accept()
        else:
            self.alerts.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()


@dataclass
class BrowserPage:
    page: Page
    dialogs: Dialogs
    errors: list[str]
    name: str

    def screenshot(self, label: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{label}-{self.name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def browser_page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[BrowserPage]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    dialogs = Dialogs()
    errors: list[str] = []
    page.on("dialog", dialogs.handle)
    page.on("pageerror", lambda error: errors.append(str(error)))
    server = request.node.callspec.params.get("pg_server", "server") if hasattr(
        request.node, "callspec") else "server"
    yield BrowserPage(page=page, dialogs=dialogs, errors=errors,
                      name=re.sub(r"[^A-Za-z0-9_-]", "_", str(server)))
    context.close()


def sign_in_browser(page: Page, api_server: ApiServer, token: str) -> None:
    """Sign in through the form, as a person does."""
    page.goto(f"{api_server.url}/signin")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{api_server.url}/")
