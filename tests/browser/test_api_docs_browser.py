"""The interactive API documentation renders in a browser with no network beyond this server."""

from __future__ import annotations

import httpx
from playwright.sync_api import Request, expect

from tests.browser.conftest import BrowserPage
from tests.support.api import ApiServer


def test_swagger_ui_loads_only_from_this_server(api_server: ApiServer, browser_page: BrowserPage) -> None:
    page = browser_page.page
    requested: list[str] = []

    def record(request: Request) -> None:
        requested.append(request.url)

    page.on("request", record)
    page.goto(f"{api_server.url}/docs")

    schema = httpx.get(f"{api_server.url}/openapi.json").json()
    operations = sum(len(methods) for methods in schema["paths"].values())

    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Mini-Jenkin")
    expect(page.locator(".opblock")).to_have_count(operations)
    browser_page.screenshot("api-docs")
    assert [url for url in requested if not url.startswith(api_server.url)] == []
    assert browser_page.errors == []
