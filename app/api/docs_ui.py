"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) from files inside the install, never from a CDN.

FastAPI's own pages load their JavaScript, CSS and favicon from outside hosts, so ``/docs`` was blank on a
machine without internet access (and told those hosts who read the docs). The assets come from the
``fastapi-offline`` package (Swagger UI, ReDoc and FastAPI's favicon, MIT; only its static files are
used) and are served under ``ASSETS_PATH``; the pages are FastAPI's own HTML builders pointed there, with
Swagger UI's online validator (another outside host) turned off and ReDoc without Google Fonts.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

ASSETS_PATH = "/assets/docs"  # outside CLOSECAST_PROTECT_READS: public library code only
ASSETS_DIR = Path(str(files("fastapi_offline") / "static"))


def install(app: FastAPI) -> None:
    """Serve the assets and the two pages (the app is built with ``docs_url=None, redoc_url=None``)."""
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS_DIR), name="docs-assets")
    title = app.title

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
            swagger_ui_parameters={"validatorUrl": None},  # else the spec is sent to validator.swagger.io
        )

    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
            with_google_fonts=False,
        )

    app.add_route("/docs", swagger_ui, include_in_schema=False)
    app.add_route("/redoc", redoc, include_in_schema=False)
