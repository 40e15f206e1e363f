"""The interactive API documentation (Swagger UI) at GET /docs, with no CDN.

FastAPI's own /docs page loads Swagger UI from a CDN, which a CI server on
an isolated network cannot reach. The files come from the swagger-ui-py
package instead and are served from here.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

router = APIRouter(include_in_schema=False)

ASSETS_PATH = "/docs/assets"
# Only the files the page loads. The package also ships an editor and source maps.
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}
ASSET_MAX_AGE_SECONDS = 86_400


def _assets_dir() -> Path:
    """Find the package's static folder without importing the package."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the swagger-ui-py package is missing: run `make install`")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


ASSETS_DIR = _assets_dir()


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    app = request.app
    return get_swagger_ui_html(
        openapi_url=app.openapi_url, title=f"{app.title} API",
        swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
    )


@router.get(ASSETS_PATH + "/{name}")
async def swagger_ui_asset(name: str) -> FileResponse:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise HTTPException(status_code=404, detail=f"no documentation asset named {name!r}")
    return FileResponse(ASSETS_DIR / name, media_type=media_type,
                        headers={"Cache-Control": f"public, max-age={ASSET_MAX_AGE_SECONDS}"})
