"""The dashboard's HTTP side: an ``APIRouter`` and a static mount for a :class:`~maskwatch.watch.Monitor`.

:func:`mount` adds everything to an existing FastAPI app: ``watch --serve`` mounts it on the server's
app (built by the launcher, ``maskwatch.cli``: this package never imports the server front).

Routes:

* ``GET /watch``: the dashboard page (tiles, charts, recent alerts); static files under ``/watch/static``.
* ``GET /v1/watch``: the site now (JSON: cameras, health, people, compliance, recent alerts).
* ``GET /v1/watch/timeline?camera=NAME&since=EPOCH``: per-second points ``[t, people, compliance]``
  (the whole site without ``camera``).
* ``GET /v1/watch/cameras/{name}/thumbnail.jpg``: the camera's latest annotated frame.
* ``GET /metrics``: Prometheus text format. ``GET /healthz``: the process answers.
  ``GET /readyz``: 200 once a camera has analysed a frame, else 503.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Query
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"


def _not_found(name: str, monitor) -> JSONResponse:
    # A JSON answer of our own: the app's handler turns a bare 404 into "no such page".
    return JSONResponse({"detail": f"no camera named {name!r}; the site has {', '.join(monitor.cameras) or 'none'}"},
                        404)


def build_router(monitor) -> APIRouter:
    """The dashboard's and operations' routes for ``monitor`` (see module doc)."""
    router = APIRouter()

    @router.get("/watch", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "watch.html", media_type="text/html")

    @router.get("/v1/watch", tags=["watch"], summary="The watched site now: cameras, health, counts, alerts")
    def site() -> dict:
        return monitor.snapshot()

    @router.get("/v1/watch/timeline", tags=["watch"], summary="Per-second people and compliance")
    def timeline(camera: str | None = Query(None, description="a camera's name; none: the whole site"),
                 since: float | None = Query(None, description="only points at or after this Unix time")):  # noqa: ANN201
        if camera is not None and camera not in monitor.cameras:
            return _not_found(camera, monitor)
        return monitor.timeline(camera, since)

    @router.get("/v1/watch/cameras/{name}/thumbnail.jpg", tags=["watch"], summary="Latest annotated frame",
                response_class=Response)
    def thumbnail(name: str):  # noqa: ANN202 - JPEG or a JSON error
        cam = monitor.cameras.get(name)
        if cam is None:
            return _not_found(name, monitor)
        if cam.thumbnail is None:
            return JSONResponse({"detail": f"camera {name!r} has no frame yet ({cam.status}); try again shortly"},
                                404)
        return Response(cam.thumbnail, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @router.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        monitor.metrics.queue_depth.set(monitor.classifier.queue_depth)
        return Response(monitor.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @router.get("/healthz", include_in_schema=False)
    def healthz() -> dict:
        return {"status": "ok"}

    @router.get("/readyz", include_in_schema=False)
    def readyz() -> JSONResponse:
        if monitor.ready:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "starting", "detail": "no camera has delivered a frame yet"}, 503)

    return router


def mount(app: FastAPI, monitor) -> FastAPI:
    """Add the dashboard's routes and static files to ``app``."""
    app.include_router(build_router(monitor))
    app.mount("/watch/static", StaticFiles(directory=STATIC_DIR), name="watch-static")
    return app

