"""``mount(app)``: the console on the control plane's own FastAPI app, under ``/console/``.

``AREAS`` lists the page modules, one line each (each module has its own ``router`` and templates subfolder). The
console's routes come after the API's in the app's route list, so an API request matches as it did before; the
security middleware costs a request outside ``/console`` one string comparison.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from cellplane.console import (
    assets,
    pages_auth,
    pages_build,
    pages_component,
    pages_config,
    pages_deploy,
    pages_home,
    pages_observe,
    pages_org,
    pages_project,
    pages_sso,
    pages_test,
)
from cellplane.console.security import ConsoleSecurity
from cellplane.console.sessions import SessionSettings
from cellplane.console.viewer import SignInRequired, sign_in_required

AREAS = [
    pages_auth,
    pages_home,
    pages_project,
    pages_org,
    pages_component,
    pages_build,
    pages_deploy,
    pages_sso,
    pages_observe,
    pages_config,
    pages_test,
]
STATIC = "/console/static"


def mount(app: FastAPI, session_settings: SessionSettings | None = None) -> None:
    app.state.console_sessions = session_settings or SessionSettings.from_env()
    app.add_exception_handler(SignInRequired, sign_in_required)

    @app.get("/", include_in_schema=False)
    async def root() -> Response:
        return RedirectResponse("/console/", status_code=307)

    @app.get("/console", include_in_schema=False)
    async def console() -> Response:
        return RedirectResponse("/console/", status_code=307)

    @app.get(STATIC + "/vendor/htmx.min.js", include_in_schema=False)
    async def htmx() -> Response:
        path = assets.htmx_path()
        if not path.is_file():
            return Response(f"htmx is not installed; run {assets.ENSURE}\n", status_code=404,
                            media_type="text/plain")
        return FileResponse(path, media_type="text/javascript", headers={"cache-control": "max-age=86400"})

    for area in AREAS:
        app.include_router(area.router)
    app.mount(STATIC, StaticFiles(packages=[("cellplane.console", "static")]), name="console-static")
    app.add_middleware(ConsoleSecurity, key=app.state.platform.token_key)
