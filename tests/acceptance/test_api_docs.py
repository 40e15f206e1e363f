"""GET /docs serves Swagger UI from this server, never from a CDN."""

from __future__ import annotations

from tests.support.api import ApiServer


def test_docs_assets_served_locally(api_server: ApiServer) -> None:
    with api_server.client() as client:
        page = client.get("/docs")
        script = client.get("/docs/assets/swagger-ui-bundle.js")
        style = client.get("/docs/assets/swagger-ui.css")
        unknown = client.get("/docs/assets/swagger-editor-bundle.js")
        redoc = client.get("/redoc")

    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert '<script src="/docs/assets/swagger-ui-bundle.js"></script>' in page.text
    assert '<link type="text/css" rel="stylesheet" href="/docs/assets/swagger-ui.css">' in page.text
    assert "url: '/openapi.json'" in page.text
    assert "cdn" not in page.text.lower()
    assert (script.status_code, script.headers["content-type"]) == (200, "text/javascript; charset=utf-8")
    assert "SwaggerUIBundle" in script.text
    assert (style.status_code, style.headers["content-type"]) == (200, "text/css; charset=utf-8")
    assert script.headers["cache-control"] == "public, max-age=86400"
    assert unknown.status_code == 404
    assert "no documentation asset named 'swagger-editor-bundle.js'" in unknown.text
    assert redoc.status_code == 404
