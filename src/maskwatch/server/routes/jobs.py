"""Video job routes: ``POST /v1/jobs``, ``GET /v1/jobs/{id}``, ``GET /v1/jobs/{id}/files/{name}``,
``DELETE /v1/jobs/{id}``; the work is done by :class:`maskwatch.server.jobs.JobManager`."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from maskwatch.server import lazy_state
from maskwatch.server.errors import HTTPError
from maskwatch.server.jobs import JOB_FILES, JobManager
from maskwatch.server.schemas import ErrorModel

router = APIRouter(tags=["video jobs"])

_ERRORS = {
    404: {"model": ErrorModel, "description": "no such job (finished jobs are removed after MASKWATCH_JOB_TTL_S)"},
}


def manager(request: Request) -> JobManager:
    """The app's job manager, started on first use."""
    return lazy_state(request.app, "jobs",
                      lambda: JobManager(request.app.state.pool.engine, request.app.state.settings))


@router.post("/v1/jobs", status_code=202, summary="Start a video job (the video is the request body)",
             responses={
                 408: {"model": ErrorModel, "description": "the upload paused longer than MASKWATCH_UPLOAD_TIMEOUT"},
                 413: {"model": ErrorModel, "description": "over the size, duration or frame pixel limit"},
                 415: {"model": ErrorModel, "description": "not a video container"},
                 422: {"model": ErrorModel, "description": "empty, undecodable, or a bad parameter"},
                 429: {"model": ErrorModel, "description": "this address holds half of MASKWATCH_MAX_JOBS already"},
                 503: {"model": ErrorModel, "description": "MASKWATCH_MAX_JOBS jobs are uploading, waiting or running"},
             },
             openapi_extra={"requestBody": {"required": True, "content": {
                 "video/mp4": {"schema": {"type": "string", "format": "binary"}},
                 "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
async def create_job(request: Request, name: str = Query("video.mp4", max_length=200),
                     blur: str = Query("none", description="blur faces in the annotated video: "
                                                           "none | all | without_mask | with_mask")) -> JSONResponse:
    """Queue a video (MP4, MOV, WebM, MKV, AVI): 202 with the job; poll ``GET /v1/jobs/{id}``."""
    job = await manager(request).create(request, name, blur)
    return JSONResponse(job.to_dict(), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})


@router.get("/v1/jobs/{job_id}", summary="A video job's state, progress and (when done) results", responses=_ERRORS)
async def get_job(request: Request, job_id: str) -> JSONResponse:
    return JSONResponse(manager(request).get(job_id).to_dict())


@router.get("/v1/jobs/{job_id}/files/{name}", summary="A file a finished (or failed part-way) video job made",
            responses=_ERRORS)
async def job_file(request: Request, job_id: str, name: str) -> FileResponse:
    job = manager(request).get(job_id)
    path = job.folder / name
    if name not in JOB_FILES or not path.is_file() or job.result is None or job.status == "running":
        raise HTTPError(404, f"job {job_id} has no file {name!r} (yet); files: {', '.join(JOB_FILES)}")
    download = f"{Path(job.name).stem}-{name}"
    return FileResponse(path, media_type=JOB_FILES[name],
                        content_disposition_type="inline" if name.endswith((".mp4", ".png")) else "attachment",
                        filename=download)


@router.delete("/v1/jobs/{job_id}", status_code=204, summary="Cancel a video job and delete its files",
               responses=_ERRORS)
async def delete_job(request: Request, job_id: str) -> Response:
    manager(request).delete(job_id)
    return Response(status_code=204)


__all__ = ["manager", "router"]
