"""Info routes: ``GET /health``, ``GET /v1/model`` (the model card), ``GET /v1/info`` (the effective
settings), and the pages (``/``, ``/docs``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse

import maskwatch
from maskwatch.server.schemas import HealthModel
from maskwatch.server.settings import ENV_NAMES

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"

router = APIRouter(tags=["info"])


@router.get("/health", summary="Is the server up; which model and detector", response_model=HealthModel)
async def health(request: Request) -> dict[str, Any]:
    pool = request.app.state.pool
    s = request.app.state.settings
    engine = pool.engine
    return {
        "status": "ok",
        "version": maskwatch.__version__,
        "model": engine.classifier.info.name,
        "classes": list(engine.classes),
        "detector": engine.face_detector.name,
        "workers": pool.size,
        "max_queue": s.max_queue,
        "max_upload_bytes": s.max_upload_bytes,
        "max_pixels": s.max_pixels,
        "live_detect_size": s.live_detect_size,
    }


@router.get(
    "/v1/model",
    summary="The model card: classes, input, preprocessing, training recipe, data summary, test metrics",
    responses={200: {"content": {"application/json": {"schema": {"type": "object"}}}}},
)
async def model_card(request: Request) -> JSONResponse:
    return JSONResponse(request.app.state.pool.engine.classifier.describe())


@router.get(
    "/v1/info",
    summary="The server's effective settings (every MASKWATCH_* value in force) and its engine",
    responses={200: {"content": {"application/json": {"schema": {"type": "object"}}}}},
)
async def info(request: Request) -> JSONResponse:
    s = request.app.state.settings
    engine = request.app.state.pool.engine
    settings = {name: getattr(s, name) for name in ENV_NAMES if name not in ("db", "jobs_dir")}
    settings["event_log"] = s.db is not None  # whether there is one; paths on the server stay private
    det = getattr(engine.face_detector, "settings", None)
    return JSONResponse({
        "version": maskwatch.__version__,
        "settings": settings,
        "environment": {name: ENV_NAMES[name] for name in settings if name in ENV_NAMES},
        "engine": {"model": engine.classifier.info.name, "classes": list(engine.classes),
                   "detector": engine.face_detector.name, "mirror_photos": engine.mirror_photos,
                   "detect_size": getattr(det, "detect_size", None), "live_detect_size": s.live_detect_size,
                   # the effective engine spec (maskwatch.spec.EngineSpec), file paths kept private
                   "spec": {k: (None if v is not None and k in ("model", "detector_model") else v)
                            for k, v in engine.spec.to_dict().items()}},
    })


pages = APIRouter(include_in_schema=False)


@pages.get("/")
async def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


@pages.get("/docs")
async def docs() -> FileResponse:
    return FileResponse(STATIC_DIR / "docs.html", media_type="text/html")


__all__ = ["STATIC_DIR", "pages", "router"]
