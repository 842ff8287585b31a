"""The control plane's REST API (FastAPI): ``/api/v1``, OpenAPI at ``/openapi.json``."""

from __future__ import annotations

import gc
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from anyio import to_thread
from fastapi import FastAPI

from cellplane import API_VERSION, __version__
from cellplane.console import app as console
from cellplane.controlplane.api import (
    alerts,
    builds,
    config,
    dataplanes,
    deployments,
    errors,
    identity,
    identityproviders,
    imports,
    observe,
    releases,
    resources,
    scaling,
    schemas,
    telemetry,
    webhooks,
)
from cellplane.controlplane.api.routing import add_routes, api_router
from cellplane.controlplane.api.selfmetrics import Measured, SelfMetrics
from cellplane.controlplane.api.textguard import TextGuard
from cellplane.controlplane.buildworker import BuildSettings, BuildWorkers
from cellplane.controlplane.platform import Platform
from cellplane.controlplane.telemetry.loop import TelemetryLoop, TelemetrySettings
from cellplane.controlplane.telemetry.traces import OtlpExport

# Worker threads for the sync routes (anyio's default is 40). The routes are CPU-bound Python and share one
# interpreter lock: fewer threads finish each request sooner, and a writer holding SQLite's lock is not slowed by
# 40 readers taking turns with it. (Nothing in a sync route waits long: long-polls and follows are async.)
API_THREADS = 4
# How long a thread may hold the interpreter lock while another wants it (Python's default: 5 ms). The event loop
# thread reads and answers requests between the workers' turns; with 5 ms turns a request arriving behind busy
# workers waited for several of them. Control-plane benchmark, the API alone (--deployments 0), 50 paced clients:
# p99 21-22 ms at 4 threads and 2 ms, 24-93 ms at 8 threads and 5 ms (in full runs, within the machine's noise).
SWITCH_INTERVAL = 0.002


def create_app(data_dir: Path, database_url: str | None = None, build_settings: BuildSettings | None = None,
               telemetry_settings: TelemetrySettings | None = None) -> FastAPI:
    """The API, this process's build worker pool (``workers=0`` leaves builds to other replicas) and its
    telemetry loop (alert evaluation, retention)."""
    platform = Platform(data_dir, database_url)
    settings = build_settings or BuildSettings()
    telemetry_settings = telemetry_settings or TelemetrySettings()
    if telemetry_settings.otlp_endpoint:
        platform.otlp = OtlpExport(telemetry_settings.otlp_endpoint)
    housekeeping = TelemetryLoop(platform, telemetry_settings)
    measured = SelfMetrics(platform)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        to_thread.current_default_thread_limiter().total_tokens = API_THREADS
        sys.setswitchinterval(SWITCH_INTERVAL)
        # What exists now (modules, routes, models, mappers) lives as long as the process: kept out of the
        # collector's full passes, which otherwise stop every thread for 100 ms and more every few seconds. And a
        # full pass after 100 collections of the middle generation rather than 10: under load they came every
        # second or two, 10-40 ms each, and what they find (cycles that outlived two younger passes) is rare.
        gc.freeze()
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, 100)
        workers = None
        if settings.workers > 0:
            workers = BuildWorkers(platform.store, data_dir, settings, platform.keyring)
            workers.start()
            app.state.build_workers = workers
        housekeeping.start()
        yield
        await housekeeping.stop()
        if workers is not None:
            await workers.stop()
        platform.close()

    app = FastAPI(title="Cellplane control plane", version=__version__, lifespan=lifespan,
                  description="Organizations, projects (cells), components, environments and pipelines.")
    app.state.platform = platform
    app.state.build_settings = settings
    app.state.telemetry_settings = telemetry_settings
    errors.install(app)
    app.add_middleware(TextGuard, stream_types=builds.ARCHIVE_TYPES)

    meta = api_router(tags=["meta"])

    @meta.get("/version", response_model=schemas.VersionInfo, response_model_exclude_unset=True)
    def version() -> dict[str, Any]:
        return {"version": __version__, "apiVersion": API_VERSION, "database": platform.store.backend}

    add_routes(app, [meta, resources.router, imports.router, config.router, identity.router, builds.router,
                     webhooks.router, deployments.router, releases.router, dataplanes.router, telemetry.router,
                     observe.router, alerts.router, scaling.router])
    add_routes(app, [identityproviders.router])  # single sign-on's providers (docs/console.md)
    app.add_route("/metrics", measured.endpoint, include_in_schema=False)
    app.add_middleware(Measured, metrics=measured)

    @app.get("/healthz", tags=["meta"], response_model=schemas.Health, response_model_exclude_unset=True)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    console.mount(app)  # the web console under /console/ (its routes after the API's)

    return app
