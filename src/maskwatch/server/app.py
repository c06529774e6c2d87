"""The web page and HTTP API of ``maskwatch serve`` (FastAPI).

:func:`create_app` builds the application; the engine (classifier and face detector) loads once,
in the lifespan, unless one is handed in. Every upload is read into memory with a size and time
limit, sniffed (its declared type is not trusted; only JPEG, PNG, WebP, BMP, TIFF and GIF count),
its header checked against the request's pixel budget, and decoded (large images reduced where the
model does not need their full size); nothing is written to disk. Detection runs in a small pool of
workers that share the classifier, off the event loop, behind a bounded queue (503 with
``Retry-After`` when full); work whose client has gone is dropped. :mod:`maskwatch.server.guard`
adds header limits, the Host check and security headers, and drains unread bodies.

Endpoints:

* ``GET /`` - the web page (photo upload and live webcam mode), ``/static/*`` its assets.
* ``GET /docs`` - offline API documentation rendered from ``GET /openapi.json``.
* ``POST /v1/detect`` - one image (multipart file or raw body) -> :meth:`FrameResult.to_dict` JSON,
  or the annotated image with ``?format=jpeg|png``.
* ``POST /v1/classify`` - face crops -> a list of :meth:`CropResult.to_dict` objects.
* ``GET /health`` and ``GET /v1/model`` - model name, version, detector backend; the model card.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import ctypes
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

import maskwatch
from maskwatch.annotate import annotate
from maskwatch.defaults import MAX_UPLOAD_MB
from maskwatch.engine import MaskDetector
from maskwatch.errors import ImageTooLargeError, InputError, MaskwatchError
from maskwatch.faces.detector import DETECTOR_BACKENDS, DetectorSettings
from maskwatch.io.images import ImageInfo, decode_image_with_size, encode_image, probe_image
from maskwatch.results import FrameResult
from maskwatch.server import is_loopback
from maskwatch.server.admission import UploadSlots, client_key
from maskwatch.server.guard import RequestGuard
from maskwatch.server.jobs import router as jobs_router
from maskwatch.server.live import router as live_router
from maskwatch.server.uploads import ClientGone, Upload, UploadError, read_uploads, require_image

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
T = TypeVar("T")

MB = 1 << 20


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


def _env_number(env: Mapping[str, str], key: str, kind: type, default: Any) -> Any:
    raw = env.get(key)
    if raw is None or raw.strip() == "":
        return default
    try:
        return kind(raw)
    except ValueError:
        raise InputError(f"environment variable {key}={raw!r} is not a valid {kind.__name__}") from None


def _env_flag(env: Mapping[str, str], key: str, default: bool) -> bool:
    raw = (env.get(key) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise InputError(f"environment variable {key}={raw!r} is not a yes/no value; use 1 or 0")


LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


@dataclass
class ServerSettings:
    """Everything ``maskwatch serve`` can be told; :meth:`from_env` reads ``MASKWATCH_*`` variables.

    Attributes:
        host / port: where to listen (``MASKWATCH_HOST``, ``MASKWATCH_PORT``).
        model: maskwatch ``.onnx`` classifier, ``None`` for the bundled one (``MASKWATCH_MODEL``).
        detector: face-detector backend ``auto|yunet|yuface`` (``MASKWATCH_DETECTOR``).
        detector_model: YuNet file or folder (``MASKWATCH_DETECTOR_MODEL``; the engine also
            searches ``MASKWATCH_MODELS``).
        max_upload_mb: request body limit in MB (of 2**20 bytes), 413 above (``MASKWATCH_MAX_UPLOAD_MB``).
        max_pixels: pixel budget of one request: the sizes (width x height, from the image headers,
            before decoding) of all its images added up, 413 above; the decompression-bomb guard and
            the bound on a request's memory (``MASKWATCH_MAX_PIXELS``).
        max_frame_pixels: pixel limit of one video frame: every frame of a video job (the stream's
            header is checked before the first frame is decoded) and every ``/v1/live`` frame (its
            image header, before decoding); 413 above (``MASKWATCH_MAX_FRAME_PIXELS``).
        workers: images processed at once; they share one classifier (``MASKWATCH_WORKERS``).
        max_queue: requests whose body has arrived that may wait for a worker beyond the ``workers``
            being processed; more get 503 with ``Retry-After`` (``MASKWATCH_MAX_QUEUE``).
        max_uploads / max_uploads_per_client: request bodies that may be arriving at once, overall and
            from one client address; more get 503 (``MASKWATCH_MAX_UPLOADS``,
            ``MASKWATCH_MAX_UPLOADS_PER_CLIENT``). Slow uploads hold these, never a queue place.
        max_live_sessions / max_live_sessions_per_client: live camera sessions open at once, overall
            (503 beyond) and from one client address (429 beyond) (``MASKWATCH_MAX_LIVE_SESSIONS``,
            ``MASKWATCH_MAX_LIVE_SESSIONS_PER_CLIENT``).
        upload_timeout_s: seconds a request body may take to arrive, 408 after
            (``MASKWATCH_UPLOAD_TIMEOUT``).
        live_detect_size: face-detection size (long side, px) for ``?live=true`` video frames
            (``MASKWATCH_LIVE_DETECT_SIZE``); photos use the engine's own size.
        max_crops: most face crops in one ``/v1/classify`` request (``MASKWATCH_MAX_CROPS``).
        log_level: uvicorn / maskwatch log level (``MASKWATCH_LOG_LEVEL``).
        db: SQLite event log that live sessions and video jobs are recorded in (``--db``, ``MASKWATCH_DB``).
        jobs_dir: the jobs folder; ``None`` for ``~/.cache/maskwatch/jobs`` (``MASKWATCH_JOBS_DIR``).
        detector_settings: face-detector thresholds and sizes (the ``--face-threshold``,
            ``--detect-size``, ``--min-face`` options every command shares); ``None`` for the defaults.
        mirror_photos: classify photo faces with their mirror image too, as the CLI does (``--mirror``,
            ``MASKWATCH_MIRROR=1``); off by default here, for latency under load; live video frames never are.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    model: str | None = None
    detector: str = "auto"
    detector_model: str | None = None
    max_upload_mb: float = MAX_UPLOAD_MB
    max_pixels: int = 50_000_000
    max_frame_pixels: int = 4096 * 4096
    workers: int = max(1, min(2, os.cpu_count() or 1))
    max_queue: int = 32
    max_uploads: int = 64
    max_uploads_per_client: int = 8
    max_live_sessions: int = 32
    max_live_sessions_per_client: int = 4
    upload_timeout_s: float = 30.0
    live_detect_size: int = 480
    max_crops: int = 64
    log_level: str = "warning"
    db: str | None = None
    jobs_dir: str | None = None
    detector_settings: DetectorSettings | None = None
    # Off in the server: with 8 clients on 2 cores the second classifier pass took photo latency from
    # 864 to 1206 ms p95 (benchmarks/serve_load.py), over the 1 s the web app must keep.
    mirror_photos: bool = False

    def __post_init__(self) -> None:
        if self.max_upload_mb <= 0:
            raise InputError(f"the upload limit must be > 0 MB, got {self.max_upload_mb}")
        if self.max_pixels < 1:
            raise InputError(f"the pixel limit must be >= 1, got {self.max_pixels}")
        if self.max_frame_pixels < 1:
            raise InputError(f"the frame pixel limit must be >= 1, got {self.max_frame_pixels}")
        if not 1 <= self.workers <= 64:
            raise InputError(f"workers must be between 1 and 64, got {self.workers}")
        if self.max_queue < 0:
            raise InputError(f"the queue limit must be >= 0, got {self.max_queue}")
        if self.max_uploads < 1 or self.max_uploads_per_client < 1:
            raise InputError(f"the upload limits must be >= 1, got {self.max_uploads} and {self.max_uploads_per_client}")
        if self.upload_timeout_s <= 0:
            raise InputError(f"the upload timeout must be > 0 s, got {self.upload_timeout_s}")
        if not 64 <= self.live_detect_size <= 4096:
            raise InputError(f"the live detection size must be 64..4096 px, got {self.live_detect_size}")
        if self.max_crops < 1:
            raise InputError(f"max crops must be >= 1, got {self.max_crops}")
        if self.detector not in DETECTOR_BACKENDS:
            raise InputError(
                f"unknown face detector {self.detector!r}; choose one of {', '.join(DETECTOR_BACKENDS)}"
            )
        if self.log_level.lower() not in LOG_LEVELS:
            raise InputError(f"unknown log level {self.log_level!r}; choose one of {', '.join(LOG_LEVELS)}")
        self.log_level = self.log_level.lower()
        if not 0 < self.port < 65536:
            raise InputError(f"port must be 1..65535, got {self.port}")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MB)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ServerSettings:
        """Settings from ``MASKWATCH_*`` environment variables; ``overrides`` that are not ``None`` win."""
        env = os.environ if environ is None else environ
        d = cls.__dataclass_fields__
        values: dict[str, Any] = {
            "host": env.get("MASKWATCH_HOST") or d["host"].default,
            "port": _env_number(env, "MASKWATCH_PORT", int, d["port"].default),
            "model": env.get("MASKWATCH_MODEL") or None,
            "detector": env.get("MASKWATCH_DETECTOR") or d["detector"].default,
            "detector_model": env.get("MASKWATCH_DETECTOR_MODEL") or None,
            "max_upload_mb": _env_number(env, "MASKWATCH_MAX_UPLOAD_MB", float, d["max_upload_mb"].default),
            "max_pixels": _env_number(env, "MASKWATCH_MAX_PIXELS", int, d["max_pixels"].default),
            "max_frame_pixels": _env_number(env, "MASKWATCH_MAX_FRAME_PIXELS", int, d["max_frame_pixels"].default),
            "workers": _env_number(env, "MASKWATCH_WORKERS", int, d["workers"].default),
            "max_queue": _env_number(env, "MASKWATCH_MAX_QUEUE", int, d["max_queue"].default),
            "max_live_sessions": _env_number(env, "MASKWATCH_MAX_LIVE_SESSIONS", int, d["max_live_sessions"].default),
            "max_live_sessions_per_client": _env_number(env, "MASKWATCH_MAX_LIVE_SESSIONS_PER_CLIENT", int,
                                                        d["max_live_sessions_per_client"].default),
            "max_uploads": _env_number(env, "MASKWATCH_MAX_UPLOADS", int, d["max_uploads"].default),
            "max_uploads_per_client": _env_number(env, "MASKWATCH_MAX_UPLOADS_PER_CLIENT", int,
                                                  d["max_uploads_per_client"].default),
            "upload_timeout_s": _env_number(env, "MASKWATCH_UPLOAD_TIMEOUT", float, d["upload_timeout_s"].default),
            "live_detect_size": _env_number(env, "MASKWATCH_LIVE_DETECT_SIZE", int, d["live_detect_size"].default),
            "max_crops": _env_number(env, "MASKWATCH_MAX_CROPS", int, d["max_crops"].default),
            "log_level": env.get("MASKWATCH_LOG_LEVEL") or d["log_level"].default,
            "db": env.get("MASKWATCH_DB") or None,
            "jobs_dir": env.get("MASKWATCH_JOBS_DIR") or None,
            "detector_settings": None,
            "mirror_photos": _env_flag(env, "MASKWATCH_MIRROR", d["mirror_photos"].default),
        }
        unknown = set(overrides) - set(values)
        if unknown:
            raise TypeError(f"unknown server settings: {', '.join(sorted(unknown))}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        if values["model"] is not None:
            values["model"] = str(values["model"])
        for key in ("db", "jobs_dir"):
            if values[key] is not None:
                values[key] = str(values[key])
        if values["detector_model"] is not None:
            values["detector_model"] = str(values["detector_model"])
        return cls(**values)


def load_engine(settings: ServerSettings) -> MaskDetector:
    """Load the classifier and face detector named by ``settings`` (raises :class:`ModelError` etc.)."""
    return MaskDetector(
        model=settings.model,
        detector=settings.detector,
        detector_model=settings.detector_model,
        settings=settings.detector_settings,
        threads=1,
        max_pixels=settings.max_pixels,
        mirror_photos=settings.mirror_photos,
    )


# --------------------------------------------------------------------------------------------
# Worker pool
# --------------------------------------------------------------------------------------------


@dataclass
class _Worker:
    photo: MaskDetector
    live: MaskDetector
    thread: ThreadPoolExecutor


class EnginePool:
    """The engine loaded once, and ``workers`` face detectors that share its classifier.

    A face detector keeps per-call state (OpenCV's YuNet holds its input size), so each worker has
    its own; ONNX Runtime sessions are safe to run from several threads, so the classifier is
    shared. Each worker also has a detector for video frames (``live``) that detects at
    ``live_detect_size`` instead of enlarging small frames to the photo size.

    Each worker runs on its own thread, always the same one: at most ``workers`` images are decoded
    and processed at once, and the native allocators (glibc's per-thread arenas, ONNX Runtime's
    arena) settle to a fixed size instead of growing with every new thread. :meth:`warm_up` runs
    the largest classifier batch on every worker at start-up so memory reaches that size at once.
    """

    def __init__(self, engine: MaskDetector, settings: ServerSettings) -> None:
        self.engine = engine
        self.settings = settings
        self.size = settings.workers
        self._workers = [
            _Worker(
                photo=self._clone(engine, None, new_detector=i > 0),
                live=self._clone(engine, settings.live_detect_size),
                thread=ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"maskwatch-worker-{i}"),
            )
            for i in range(settings.workers)
        ]
        self._queue: asyncio.Queue[_Worker] | None = None
        #: bodies arriving now (a slow client holds one of these, not a place in the queue)
        self.uploads = UploadSlots(settings.max_uploads, settings.max_uploads_per_client,
                                   settings.max_upload_bytes * (settings.workers + settings.max_queue))
        #: requests admitted now (body arrived: waiting for a worker or being processed)
        self.active = 0
        self.max_active = settings.workers + settings.max_queue
        #: requests refused because the queue was full / dropped because their client had gone
        self.refused = 0
        self.dropped = 0

    def _clone(self, engine: MaskDetector, detect_size: int | None, new_detector: bool = True) -> MaskDetector:
        """A shallow copy of ``engine`` (same classifier) with its own face detector and our pixel limit."""
        clone = copy.copy(engine)
        clone.max_pixels = self.settings.max_pixels
        if not new_detector:
            return clone
        fd = engine.face_detector
        det_settings = copy.deepcopy(fd.settings)
        if detect_size is not None:
            det_settings = dataclasses.replace(det_settings, detect_size=detect_size)
        if hasattr(fd, "with_settings"):
            clone.face_detector = fd.with_settings(det_settings)
        else:  # a custom detector: share it (it must then be thread-safe)
            log.warning("face detector %r is shared between workers", fd.name)
        return clone

    @contextlib.contextmanager
    def admit(self):  # type: ignore[no-untyped-def]
        """Count a request whose body has arrived in until it is answered; 503 (``Retry-After``) when
        ``workers + max_queue`` are in."""
        if self.active >= self.max_active:
            self.refused += 1
            raise UploadError(
                503, f"the server is busy: {self.active} requests are queued or being processed, the "
                f"limit is {self.max_active} ({self.size} workers + a queue of {self.settings.max_queue}); "
                "retry in a moment (see Retry-After) or raise MASKWATCH_MAX_QUEUE / MASKWATCH_WORKERS.",
                headers={"Retry-After": "1"},
            )
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1

    async def receive(self, request: Request, *, max_parts: int = 256, limit: int | None = None) -> list[Upload]:
        """The request's uploads, read while it holds an upload slot (:class:`UploadSlots`), not a queue place."""
        s = self.settings
        with self.uploads.hold(client_key(request.scope.get("client"))) as ticket:
            return await read_uploads(request, s.max_upload_bytes if limit is None else limit, max_parts=max_parts,
                                      timeout_s=s.upload_timeout_s, on_chunk=ticket.take)

    async def run(self, fn: Callable[[_Worker], T], request: Request | None = None) -> T:
        """Run ``fn(worker)`` on a free worker's thread.

        With ``request``, the wait for a worker ends early when the client disconnects (then
        :class:`ClientGone` is raised and ``fn`` never runs): work nobody waits for is dropped.
        """
        if self._queue is None:
            self._queue = asyncio.Queue()
            for w in self._workers:
                self._queue.put_nowait(w)
        worker = await self._acquire(request)
        if worker is None:
            self.dropped += 1
            raise ClientGone("the client disconnected while its request waited for a worker; dropped")
        try:
            # If the request is cancelled the call still runs to its end on the worker's single
            # thread, and the worker's next call queues behind it there: never two at once.
            return await asyncio.get_running_loop().run_in_executor(worker.thread, fn, worker)
        finally:
            self._queue.put_nowait(worker)

    async def _acquire(self, request: Request | None) -> _Worker | None:
        """A free worker, or ``None`` when the client of ``request`` disconnects first."""
        assert self._queue is not None
        if request is None:
            return await self._queue.get()
        get = asyncio.ensure_future(self._queue.get())
        gone = asyncio.ensure_future(_disconnected(request))
        completed = False
        try:
            await asyncio.wait([get, gone], return_when=asyncio.FIRST_COMPLETED)
            completed = True
        finally:
            for task in (get, gone):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            worker = get.result() if get.done() and not get.cancelled() else None
            client_left = gone.done() and not gone.cancelled() and gone.exception() is None
            if worker is not None and (client_left or not completed):
                self._queue.put_nowait(worker)  # back to the pool: nobody will use it here
                worker = None
        return worker

    async def warm_up(self) -> None:
        """Run every worker once (largest classifier batch, both detectors), all at the same time."""
        import numpy as np

        batch = 32  # the largest batch MaskClassifier.predict runs

        def warm(worker: _Worker) -> None:
            crop = np.full((64, 64, 3), 128, np.uint8)
            worker.photo.classifier.predict([crop] * batch)
            worker.photo.detect(np.zeros((480, 640, 3), np.uint8))
            side = self.settings.live_detect_size
            worker.live.detect(np.zeros((side * 9 // 16, side, 3), np.uint8))

        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(w.thread, warm, w) for w in self._workers))

    def close(self) -> None:
        for w in self._workers:
            w.thread.shutdown(wait=True, cancel_futures=True)


async def _disconnected(request: Request) -> None:
    """Return when the client of ``request`` (whose body has been read) disconnects."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def _find_malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim  # glibc
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _find_malloc_trim()
#: After a request that decoded more pixels than this, freed memory is handed back to the system.
_TRIM_ABOVE_PIXELS = 4_000_000


def give_memory_back(pixels: int) -> None:
    """glibc keeps freed blocks in its per-thread arenas; after a large image, return them (RSS falls)."""
    if _MALLOC_TRIM is not None and pixels > _TRIM_ABOVE_PIXELS:
        _MALLOC_TRIM(0)


# --------------------------------------------------------------------------------------------
# OpenAPI documentation models (the responses themselves come from the result classes)
# --------------------------------------------------------------------------------------------


class FaceModel(BaseModel):
    """One face."""

    box: list[int] = Field(description="x1, y1, x2, y2 in pixels of the image as shown (EXIF orientation applied)")
    face_score: float = Field(description="face detector confidence, 0..1")
    label: str = Field(description="most probable class: with_mask or without_mask")
    score: float = Field(description="probability of `label`, 0..1")
    probs: dict[str, float] = Field(description="probability of every class")
    track_id: int | None = Field(None, description="video face track; always null for an uploaded image")


class FrameResultModel(BaseModel):
    """The result for one image: the same object as one line of `maskwatch detect --json`."""

    source: str = Field(description="the uploaded file name, or `<upload>` for a raw body")
    frame: int | None = Field(description="always null for an uploaded image")
    time_s: float | None = Field(description="always null for an uploaded image")
    width: int
    height: int
    faces: list[FaceModel]


class CropResultModel(BaseModel):
    """The classifier's verdict on one face crop (same object as `maskwatch classify --json`)."""

    source: str
    label: str
    score: float
    probs: dict[str, float]


class HealthModel(BaseModel):
    status: str = Field(description="`ok` once the model is loaded")
    version: str = Field(description="maskwatch version")
    model: str = Field(description="classifier model name")
    classes: list[str]
    detector: str = Field(description="face detector backend: yunet or yuface")
    workers: int
    max_queue: int
    max_upload_bytes: int
    max_pixels: int
    live_detect_size: int


class ErrorModel(BaseModel):
    detail: str = Field(description="what went wrong and what to do about it")


def _image_body(multi: bool) -> dict[str, Any]:
    file_schema = {"type": "string", "format": "binary"}
    form = (
        {"type": "object", "properties": {"files": {"type": "array", "items": file_schema}}}
        if multi else
        {"type": "object", "properties": {"file": file_schema}, "required": ["file"]}
    )
    return {
        "requestBody": {
            "required": True,
            "description": (
                "The image as a multipart/form-data file field (`curl -F file=@photo.jpg`), or the raw "
                "image bytes as the body (`curl --data-binary @photo.jpg -H 'Content-Type: image/jpeg'`). "
                "The format is judged from the bytes, not the declared type."
                + (" Several file fields give several crops." if multi else "")
            ),
            "content": {
                "multipart/form-data": {"schema": form},
                "image/jpeg": {"schema": file_schema},
                "image/png": {"schema": file_schema},
                "application/octet-stream": {"schema": file_schema},
            },
        }
    }


_ERRORS: dict[int | str, dict[str, Any]] = {
    408: {"model": ErrorModel, "description": "the upload did not arrive in time (MASKWATCH_UPLOAD_TIMEOUT)"},
    413: {"model": ErrorModel, "description": "upload over the size limit, or images over the request's pixel budget"},
    415: {"model": ErrorModel, "description": "the body is not a JPEG, PNG, WebP, BMP, TIFF or GIF image (judged "
          "from its bytes; EPS, PDF, SVG are never decoded)"},
    422: {"model": ErrorModel, "description": "corrupt or truncated image, empty body, malformed form, bad parameter"},
    431: {"model": ErrorModel, "description": "too many or too large request headers"},
    503: {"model": ErrorModel, "description": "the queue is full; retry after the `Retry-After` header's seconds"},
}


# --------------------------------------------------------------------------------------------
# Error handling
# --------------------------------------------------------------------------------------------


def _error(status: int, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": detail, **extra}, status_code=status)


def _status_for(exc: MaskwatchError) -> int:
    if isinstance(exc, ImageTooLargeError):
        return 413
    if isinstance(exc, InputError):
        return 422
    return 500


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(UploadError)
    async def _upload_error(request: Request, exc: UploadError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers or None)

    @app.exception_handler(ClientGone)
    @app.exception_handler(ClientDisconnect)
    async def _client_gone(request: Request, exc: Exception) -> JSONResponse:
        # Nobody will read this answer: one quiet line, no traceback.
        log.info("%s %s: client went away (%s)", request.method, request.url.path, exc or "disconnected")
        return _error(400, "the client disconnected before the request was complete.")

    @app.exception_handler(MaskwatchError)
    async def _maskwatch_error(request: Request, exc: MaskwatchError) -> JSONResponse:
        status = _status_for(exc)
        if status >= 500:
            log.error("%s: %s", type(exc).__name__, exc)
        return _error(status, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        msgs = []
        for err in exc.errors():
            where = " ".join(str(p) for p in err.get("loc", ()))
            msgs.append(f"{where}: {err.get('msg', 'invalid')}")
        detail = "invalid request: " + "; ".join(msgs) + ". See /docs for the parameters."
        return _error(422, detail, errors=jsonable_errors(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail
        if exc.status_code == 404:
            detail = f"no such page or endpoint: {request.url.path}. The API is documented at /docs."
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}. See /docs for the methods."
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return _error(500, f"internal server error ({type(exc).__name__}); the server log has the details.")


def jsonable_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """The validation errors with only JSON-safe values."""
    out = []
    for err in exc.errors():
        item: dict[str, Any] = {"loc": [str(p) for p in err.get("loc", ())], "msg": str(err.get("msg", ""))}
        if "type" in err:
            item["type"] = str(err["type"])
        if isinstance(err.get("input"), (str, int, float, bool)):
            item["input"] = err["input"]
        out.append(item)
    return out


# --------------------------------------------------------------------------------------------
# Routes
# --------------------------------------------------------------------------------------------


def _pool(request: Request) -> EnginePool:
    return request.app.state.pool


def _settings(request: Request) -> ServerSettings:
    return request.app.state.settings


def _result_headers(result: FrameResult) -> dict[str, str]:
    counts = result.counts()
    timing = ", ".join(f"{k};dur={v:.1f}" for k, v in result.timings_ms.items())
    return {
        "X-Faces-Total": str(counts.get("total", 0)),
        "X-Faces-With-Mask": str(counts.get("with_mask", 0)),
        "X-Faces-Without-Mask": str(counts.get("without_mask", 0)),
        "X-Faces-Mask-Incorrect": str(counts.get("mask_incorrect", 0)),
        "X-Faces-Uncertain": str(counts.get("uncertain", 0)),
        "Server-Timing": timing,
    }


def _one_upload(uploads: list[Upload]) -> Upload:
    if len(uploads) != 1:
        names = ", ".join(u.label for u in uploads)
        raise UploadError(
            422, f"send one image per request to /v1/detect, got {len(uploads)} files ({names}); "
            "use /v1/classify for several face crops."
        )
    return uploads[0]


api = APIRouter()


@api.post(
    "/v1/detect",
    summary="Find every face in an image and label it with_mask / without_mask",
    description=(
        "Upload one image (JPEG, PNG, WebP, BMP, TIFF, GIF) as a multipart file field or as the raw body. "
        "Returns the same JSON object as one line of `maskwatch detect --json`, or with `format=jpeg|png` "
        "the annotated image (counts in the `X-Faces-*` headers). Per-stage times are in the "
        "`Server-Timing` header. Nothing is written to disk. A photo with a long side of 5120 px or more (four "
        "times the detection size) is decoded reduced by an integer factor that keeps it at 2560 px or more: "
        "boxes are still in its full pixels; the annotated image comes back at the reduced size."
    ),
    openapi_extra=_image_body(multi=False),
    responses={
        200: {
            "model": FrameResultModel,
            "description": "the faces found (JSON), or the annotated image",
            "content": {"image/jpeg": {}, "image/png": {}},
        },
        **_ERRORS,
    },
    tags=["detection"],
)
async def detect(
    request: Request,
    fmt: Literal["json", "jpeg", "png"] = Query(
        "json", alias="format", description="`json`: the result object; `jpeg` / `png`: the annotated image"
    ),
    banner: bool = Query(False, description="with format=jpeg|png: draw the face counts in a banner"),
    live: bool = Query(
        False, description="video-frame mode (the web page's live camera): detect faces at the server's live "
        "detection size instead of enlarging small images; faster for small frames"
    ),
) -> Response:
    settings = _settings(request)
    pool = _pool(request)
    uploads = await pool.receive(request)
    with pool.admit():
        upload = _one_upload(uploads)
        require_image(upload)
        source = upload.filename or "<upload>"
        (info,) = _within_budget([upload], [source], settings)
        want_image = fmt != "json"

        def work(worker: _Worker) -> tuple[FrameResult, bytes | None]:
            engine = worker.live if live else worker.photo
            detect_size = getattr(getattr(engine.face_detector, "settings", None), "detect_size", None)
            try:
                t0 = time.perf_counter()
                # The detector sees the image at `detect_size`: decode no larger than twice that.
                image, full = decode_image_with_size(
                    upload.data, name=source, max_pixels=settings.max_pixels,
                    reduce_to=2 * detect_size if detect_size else None,
                )
                decode_ms = (time.perf_counter() - t0) * 1e3
                result = engine.detect(image, source=source, keep_image=want_image)
                del image
                result.timings_ms = {"decode": decode_ms, **result.timings_ms}
                body = None
                if want_image and result.image is not None:  # drawn at the decoded size
                    body = encode_image(annotate(result.image, result.faces, counts=banner), fmt)
                result.image = None
                to_full_size(result, full)
                return result, body
            finally:
                give_memory_back(info.pixels)

        result, image = await pool.run(work, request)
    headers = _result_headers(result)
    if image is not None:
        return Response(image, media_type=f"image/{fmt}", headers=headers)
    return Response(result.to_json(), media_type="application/json", headers=headers)


@api.post(
    "/v1/classify",
    summary="Label face crops with_mask / without_mask (no face detection)",
    description=(
        "Each uploaded image is taken as one whole face crop. Send several multipart file fields for "
        "several crops, or one crop as the raw body. Returns a JSON array with one object per crop, in "
        "upload order: the same objects as `maskwatch classify --json`. The crops of one request share "
        "its pixel budget; large crops are decoded reduced (the model sees them at its input size)."
    ),
    openapi_extra=_image_body(multi=True),
    responses={200: {"model": list[CropResultModel], "description": "one verdict per crop"}, **_ERRORS},
    tags=["detection"],
)
async def classify(request: Request) -> Response:
    settings = _settings(request)
    pool = _pool(request)
    uploads = await pool.receive(request, max_parts=settings.max_crops + 16)
    with pool.admit():
        if len(uploads) > settings.max_crops:
            raise UploadError(
                413, f"{len(uploads)} crops in one request is over the limit of {settings.max_crops}; "
                "split them over several requests."
            )
        for up in uploads:
            require_image(up)
        names = [up.filename or ("<upload>" if len(uploads) == 1 else f"<crop {i}>") for i, up in enumerate(uploads)]
        infos = _within_budget(uploads, names, settings)
        reduce_to = 2 * pool.engine.classifier.input_size

        def work(worker: _Worker) -> list[dict[str, Any]]:
            try:
                crops = [
                    decode_image_with_size(up.data, name=name, max_pixels=settings.max_pixels, reduce_to=reduce_to)[0]
                    for up, name in zip(uploads, names)
                ]
                return [r.to_dict() for r in worker.photo.classify(crops, names)]
            finally:
                give_memory_back(sum(i.pixels for i in infos))

        return JSONResponse(await pool.run(work, request))


def _within_budget(uploads: list[Upload], names: list[str], settings: ServerSettings) -> list[ImageInfo]:
    """The header sizes of the uploads; 413 when together they are over the request's pixel budget.

    Read from the image headers only: nothing is decoded before the request is known to fit.
    """
    infos = [probe_image(up.data, name=name) for up, name in zip(uploads, names)]
    total = sum(i.pixels for i in infos)
    budget = settings.max_pixels
    if total > budget:
        if len(infos) == 1:
            i = infos[0]
            detail = (
                f"{names[0]}: {i.width}x{i.height} pixels is too large: over the limit of {budget:,} pixels per "
                "request. Shrink the image first (or start the server with a higher MASKWATCH_MAX_PIXELS)."
            )
        else:
            k = max(range(len(infos)), key=lambda j: infos[j].pixels)
            detail = (
                f"the {len(infos)} images of this request add up to {total:,} pixels, too large for the budget of "
                f"{budget:,} pixels per request (the largest, {names[k]}, is {infos[k].width}x{infos[k].height}). "
                "Send smaller crops, or fewer per request."
            )
        raise UploadError(413, detail)
    return infos


def to_full_size(result: FrameResult, full: tuple[int, int]) -> None:
    """Map a result computed on a reduced image back to the full image's pixels (boxes, width, height)."""
    w, h = full
    if (result.width, result.height) == (w, h):
        return
    sx, sy = w / result.width, h / result.height
    result.faces = [
        dataclasses.replace(f, box=(
            min(w, max(0, round(f.box[0] * sx))), min(h, max(0, round(f.box[1] * sy))),
            min(w, max(0, round(f.box[2] * sx))), min(h, max(0, round(f.box[3] * sy))),
        ))
        for f in result.faces
    ]
    result.width, result.height = w, h


@api.get("/health", summary="Is the server up; which model and detector", response_model=HealthModel, tags=["info"])
async def health(request: Request) -> dict[str, Any]:
    pool = _pool(request)
    s = _settings(request)
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


@api.get(
    "/v1/model",
    summary="The model card: classes, input, preprocessing, training recipe, data summary, test metrics",
    responses={200: {"content": {"application/json": {"schema": {"type": "object"}}}}},
    tags=["info"],
)
async def model_card(request: Request) -> JSONResponse:
    return JSONResponse(_pool(request).engine.classifier.describe())


pages = APIRouter(include_in_schema=False)


@pages.get("/")
async def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


@pages.get("/docs")
async def docs() -> FileResponse:
    return FileResponse(STATIC_DIR / "docs.html", media_type="text/html")


# --------------------------------------------------------------------------------------------
# Application
# --------------------------------------------------------------------------------------------


def create_app(settings: ServerSettings | None = None, engine: MaskDetector | None = None) -> FastAPI:
    """Build the FastAPI application.

    Args:
        settings: server settings; default :meth:`ServerSettings.from_env`.
        engine: an already loaded engine; ``None`` loads one from ``settings`` at start-up (lifespan).

    Usable as a uvicorn factory: ``uvicorn --factory maskwatch.server.app:create_app``.
    """
    settings = settings or ServerSettings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        eng = engine if engine is not None else await run_in_threadpool(load_engine, settings)
        pool = EnginePool(eng, settings)
        await pool.warm_up()
        app.state.pool = pool
        log.info(
            "model %s, face detector %s, %d workers", eng.classifier.info.name, eng.face_detector.name,
            settings.workers,
        )
        try:
            yield
        finally:
            for part in ("jobs", "live_sessions"):  # video jobs, live sessions (server/jobs.py, live.py)
                if getattr(app.state, part, None) is not None:
                    getattr(app.state, part).close()
            pool.close()

    app = FastAPI(
        title="maskwatch",
        version=maskwatch.__version__,
        summary="Find every face in an image and tell with_mask from without_mask.",
        description=(
            "Errors answer with a JSON object whose `detail` says what went wrong and what to do: 413 over "
            f"the upload limit ({settings.max_upload_mb:g} MB here) or the pixel limit, 415 when the body "
            "is not an image, 422 for a corrupt image or a bad parameter."
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
    )
    _install_error_handlers(app)
    app.include_router(api)
    app.include_router(jobs_router)
    app.include_router(live_router)
    app.include_router(pages)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


__all__ = ["EnginePool", "ServerSettings", "create_app", "load_engine"]
