"""The web page and HTTP API of ``maskwatch serve``: the FastAPI application factory.

The parts live beside this module: :mod:`~maskwatch.server.settings` (one settings object,
validated at start), :mod:`~maskwatch.server.pool` (the engine, loaded once, and its workers),
:mod:`~maskwatch.server.admission` and :mod:`~maskwatch.server.uploads` (who may upload, reading
bodies), :mod:`~maskwatch.server.errors` (one HTTP error type and its handlers),
:mod:`~maskwatch.server.guard` (header limits, Host check, security headers, access log) and the
routes, one module per resource under :mod:`maskwatch.server.routes` (photo, jobs, live, info).
docs/server.md describes the API, every setting and the limits.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

import maskwatch
from maskwatch.engine import MaskDetector
from maskwatch.server import is_loopback, jobs
from maskwatch.server.errors import install_error_handlers
from maskwatch.server.guard import RequestGuard
from maskwatch.server.pool import EnginePool, give_memory_back, load_engine
from maskwatch.server.routes import ROUTERS
from maskwatch.server.routes.info import STATIC_DIR
from maskwatch.server.routes.photo import to_full_size
from maskwatch.server.settings import MB, ServerSettings

log = logging.getLogger("maskwatch.server")


def create_app(
    settings: ServerSettings | None = None,
    engine: MaskDetector | None = None,
    routers: Iterable[APIRouter] = (),
) -> FastAPI:
    """Build the FastAPI application.

    Args:
        settings: server settings; default :meth:`ServerSettings.from_env`.
        engine: an already loaded engine; ``None`` loads one from ``settings`` at start-up (lifespan).
        routers: more routers to mount (a dashboard, say), after the built-in ones; they reach the
            engine pool and settings as ``request.app.state.pool`` / ``.settings``. ``app.include_router``
            on the returned app works as well.

    Usable as a uvicorn factory: ``uvicorn --factory maskwatch.server.app:create_app``.
    """
    settings = settings or ServerSettings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        # What a killed server left in the jobs folder goes now, not when the jobs API is first used.
        folder = Path(settings.jobs_dir) if settings.jobs_dir else jobs.default_jobs_dir()
        await run_in_threadpool(jobs.sweep_leftovers, folder)
        eng = engine if engine is not None else await run_in_threadpool(load_engine, settings)
        pool = EnginePool(eng, settings)
        await pool.warm_up()
        app.state.pool = pool
        log.info("model %s, face detector %s, %d workers", eng.classifier.info.name, eng.face_detector.name,
                 settings.workers)
        try:
            yield
        finally:
            for part in ("jobs", "live_sessions"):  # made on first use (routes/jobs.py, routes/live.py)
                if getattr(app.state, part, None) is not None:
                    getattr(app.state, part).close()
            pool.close()

    app = FastAPI(
        title="maskwatch",
        version=maskwatch.__version__,
        summary="Find every face in an image and tell with_mask from without_mask (and mask_incorrect).",
        description=(
            "Errors answer with a JSON object whose `detail` says what went wrong and what to do: 413 over "
            f"the upload limit ({settings.max_upload_mb:g} MB here) or the pixel limit, 415 when the body "
            "is not an image, 422 for a corrupt image or a bad parameter, 429 / 503 (with `Retry-After`) when "
            "a limit on uploads, sessions or the queue is reached."
        ),
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.add_middleware(
        RequestGuard,
        loopback_only=is_loopback(settings.host),
        drain_bytes=max(64 * MB, 2 * settings.max_upload_bytes),
        access_log=settings.access_log,
    )
    install_error_handlers(app)
    for router in (*ROUTERS, *routers):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


__all__ = ["EnginePool", "STATIC_DIR", "ServerSettings", "create_app", "give_memory_back", "load_engine",
           "to_full_size"]
