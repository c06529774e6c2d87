"""Video jobs for the web page and API: upload a clip, follow its progress, fetch the results.

``POST /v1/jobs`` (the video as the raw request body; ``?name=clip.mp4``, ``?blur=...``) queues a job
and answers 202 with its id; ``GET /v1/jobs/{id}`` tells its state and progress and, when done, the
compliance summary, the tracks, the alerts and links to the files (annotated H.264 MP4, JSON Lines,
CSV, ``summary.json``, ``timeline.csv``, ``timeline.png``) under ``GET /v1/jobs/{id}/files/{name}``.
``DELETE /v1/jobs/{id}`` cancels a job and deletes its files.

Unlike photos and live frames, a video must be on disk to be decoded: each job has a private folder
(mode 700) in this server's own folder under the jobs folder (``MASKWATCH_JOBS_DIR``, default
``~/.cache/maskwatch/jobs``), removed with the job: ``job_ttl_s`` after it finished (a timer sweeps
them), on DELETE, or when the server stops. A server killed without stopping (``kill -9``) leaves
its folder behind; the next server to start sweeps every folder whose server is gone (each server
holds a lock on its own folder while it runs). A job whose video breaks off (a truncated file) ends
``failed`` and keeps the results of the frames it decoded, as ``maskwatch detect`` does.
Limits: ``max_video_mb`` (413 while the body streams in), ``max_video_s`` of
video (413), bytes that are no video container (415) or do not decode (422), an upload that sends
nothing for the server's upload timeout (408; it is a pause, not a total, as videos are large), at most ``max_jobs``
waiting or running (503 with ``Retry-After``). Jobs run one at a time on their own thread, with
their own face detector, beside the photo and live workers.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import re
import shutil
import threading
import time
import uuid
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.requests import Request

from maskwatch.errors import MaskwatchError
from maskwatch.server.admission import client_key
from maskwatch.server.errors import HTTPError
from maskwatch.server.settings import ServerSettings

log = logging.getLogger(__name__)

MB = 1 << 20

#: Files a finished job offers, by name (the only names ``/files/{name}`` serves).
JOB_FILES = {
    "video.mp4": "video/mp4",
    "frames.jsonl": "application/x-ndjson",
    "faces.csv": "text/csv",
    "summary.json": "application/json",
    "timeline.csv": "text/csv",
    "timeline.png": "image/png",
}

#: First bytes of video containers OpenCV / FFmpeg decode (MP4 / MOV: 'ftyp' at offset 4).
_VIDEO_MAGIC = ((4, b"ftyp"), (0, b"\x1a\x45\xdf\xa3"), (0, b"RIFF"), (0, b"\x00\x00\x01\xba"), (0, b"FLV"),
                (0, b"0&\xb2u\x8ef\xcf\x11"))


def looks_like_video(head: bytes) -> bool:
    """Whether the first bytes are those of a video container (MP4/MOV, WebM/MKV, AVI, MPEG-PS, FLV, WMV)."""
    return any(head[off:off + len(magic)] == magic for off, magic in _VIDEO_MAGIC)


def default_jobs_dir() -> Path:
    """``$XDG_CACHE_HOME/maskwatch/jobs`` (``~/.cache/maskwatch/jobs``)."""
    from maskwatch.faces.models import cache_dir

    return cache_dir() / "jobs"


def sweep_leftovers(base: Path) -> int:
    """Remove the ``server-*`` folders under ``base`` whose server is gone (their lock is free); how many."""
    base = Path(base).expanduser()
    if not base.is_dir():
        return 0
    swept = 0
    names = {p.name.removesuffix(".lock") for p in base.glob("server-*")}
    for name in sorted(names):
        folder, lock = base / name, base / f"{name}.lock"
        if folder.is_symlink() or lock.is_symlink():
            continue
        try:
            with open(lock, "a") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: its server is gone
                if folder.is_dir():
                    shutil.rmtree(folder, ignore_errors=True)
                    swept += 1
                lock.unlink(missing_ok=True)
        except OSError:  # BlockingIOError: a running server's folder
            continue
    if swept:
        log.info("removed %d jobs folders left behind by servers that stopped without cleaning up", swept)
    return swept


class JobsFolder:
    """This server's folder under the jobs folder, locked while it runs; start-up sweeps dead servers' folders.

    Each server holds an exclusive ``flock`` on ``server-ID.lock`` beside its folder ``server-ID``
    for as long as it runs; the kernel releases it when the process ends, however it ends. A folder
    whose lock can be taken belongs to a server that is gone.
    """

    def __init__(self, base: Path) -> None:
        self.base = Path(base).expanduser()
        try:
            self.base.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.swept = self.sweep_leftovers()
            name = f"server-{uuid.uuid4().hex[:12]}"
            self._lock = open(self.base / f"{name}.lock", "w")  # noqa: SIM115 - held for the server's life
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self.path = self.base / name
            self.path.mkdir(mode=0o700)
        except OSError as exc:
            raise MaskwatchError(f"cannot use the jobs folder {self.base} ({exc.strerror or exc}); choose a "
                                 "writable folder with MASKWATCH_JOBS_DIR.") from exc

    def sweep_leftovers(self) -> int:
        """Remove the folders of servers that are no longer running; how many."""
        return sweep_leftovers(self.base)

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        Path(self._lock.name).unlink(missing_ok=True)
        self._lock.close()


def not_a_video(name: str, head: bytes) -> str:
    """Why an upload to ``/v1/jobs`` is refused, naming the endpoint that takes what it is."""
    from maskwatch.server.uploads import describe_bytes, sniff_format

    if sniff_format(head + b"\x00" * 16) is not None:
        return (f"{name} is a photo, not a video: video jobs (POST /v1/jobs) take MP4, MOV, WebM, MKV or AVI files; "
                "send photos to the Photo tab (POST /v1/detect).")
    return (f"{name} is not a video file (it starts with {describe_bytes(head)}): video jobs (POST /v1/jobs) take "
            "MP4, MOV, WebM, MKV or AVI files.")


@dataclass
class Job:
    id: str
    name: str
    folder: Path
    blur: str = "none"
    status: str = "queued"  # queued | running | done | failed | cancelled
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    frames: int = 0
    total_frames: int | None = None
    fps: float | None = None
    duration_s: float | None = None
    error: str | None = None
    result: dict[str, Any] | None = None
    upload: Path | None = None
    client: str = "?"
    cancel: threading.Event = field(default_factory=threading.Event)

    def to_dict(self) -> dict[str, Any]:
        progress = None
        if self.status == "done":
            progress = 1.0
        elif self.total_frames:
            progress = round(min(1.0, self.frames / self.total_frames), 4)
        now = self.finished or time.time()
        d = {
            "id": self.id, "name": self.name, "status": self.status, "progress": progress,
            "frames": self.frames, "total_frames": self.total_frames, "fps": self.fps, "duration_s": self.duration_s,
            "queued_s": round((self.started or now) - self.created, 3),
            "elapsed_s": None if self.started is None else round(now - self.started, 3),
            "error": self.error, "blur": self.blur,
        }
        if self.result is not None:
            d["result"] = self.result
            d["files"] = {n: f"/v1/jobs/{self.id}/files/{n}" for n in JOB_FILES if (self.folder / n).is_file()}
        return d


class _Progress:
    """First sink: counts frames for the job's progress, stops the run when the job is cancelled, and
    names results and events after the uploaded file rather than the server's temporary path."""

    def __init__(self, job: Job) -> None:
        self.job = job

    def write(self, result) -> None:
        self.job.frames += 1
        result.source = self.job.name
        for ev in result.events:
            ev.source = self.job.name
        if self.job.cancel.is_set():
            from maskwatch.runloop import StopRun

            raise StopRun("cancelled")

    def close(self) -> None:
        pass


class JobManager:
    """Queue and run video jobs one at a time on a background thread; see the module doc."""

    def __init__(self, engine, settings: ServerSettings) -> None:
        self.settings = settings
        self.engine = self._own_engine(engine, settings.max_frame_pixels)
        self.db = settings.db
        self.folder = JobsFolder(Path(settings.jobs_dir) if settings.jobs_dir else default_jobs_dir())
        self.root = self.folder.path
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._closed = False
        self._uploading = 0  # uploads arriving now: they hold a place in the job queue
        self._uploading_by: Counter[str] = Counter()  # ... by client address
        self._thread = threading.Thread(target=self._work, name="maskwatch-jobs", daemon=True)
        self._thread.start()

    @staticmethod
    def _own_engine(engine, max_pixels):
        """``engine`` with the jobs' pixel limit; it shares the classifier (:meth:`MaskDetector.fork`)."""
        return engine if max_pixels is None else engine.fork(max_pixels=max_pixels)

    # ------------------------------------------------------------------ bookkeeping
    def sweep(self) -> None:
        """Remove jobs that finished more than ``job_ttl_s`` ago, with their files."""
        now = time.time()
        with self._lock:
            old = [j for j in self.jobs.values() if j.finished and now - j.finished > self.settings.job_ttl_s]
            for j in old:
                del self.jobs[j.id]
        for j in old:
            shutil.rmtree(j.folder, ignore_errors=True)

    def active(self) -> int:
        return sum(j.status in ("queued", "running") for j in self.jobs.values())

    def get(self, job_id: str) -> Job:
        self.sweep()
        job = self.jobs.get(job_id)
        if job is None:
            raise HTTPError(404, f"no job {job_id!r} (jobs and their files are removed "
                                f"{self.settings.job_ttl_s:g} s after they finish).")
        return job

    def delete(self, job_id: str) -> None:
        job = self.get(job_id)
        job.cancel.set()
        with self._lock:
            self.jobs.pop(job_id, None)
            if job.status == "queued":
                job.status = "cancelled"
        if job.status != "running":
            shutil.rmtree(job.folder, ignore_errors=True)

    # ------------------------------------------------------------------ upload
    async def create(self, request: Request, name: str, blur: str) -> Job:
        from maskwatch.privacy import check_blur

        self.sweep()
        try:
            check_blur(blur)
        except MaskwatchError as exc:
            raise HTTPError(422, str(exc)) from None
        limit = int(self.settings.max_video_mb * MB)
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise HTTPError(413, f"the video is {int(declared) / MB:.1f} MB; videos up to "
                                f"{self.settings.max_video_mb:g} MB are accepted. Cut or compress it first.")
        client = client_key(request.scope.get("client"))
        per_client = max(1, self.settings.max_jobs // 2)
        with self._lock:  # a place in the job queue is taken before any byte is stored
            if self.active() + self._uploading >= self.settings.max_jobs:
                raise HTTPError(503, f"{self.settings.max_jobs} video jobs are already uploading, waiting or running; "
                                    "try again in a minute.", {"Retry-After": "30"})
            mine = self._uploading_by[client] + sum(
                j.client == client and j.status in ("queued", "running") for j in self.jobs.values())
            if mine >= per_client:
                raise HTTPError(429, f"your address has {mine} video jobs uploading, waiting or running; one address "
                                     f"may have {per_client} (half of MASKWATCH_MAX_JOBS). Wait for one to finish.",
                                {"Retry-After": "30"})
            self._uploading += 1
            self._uploading_by[client] += 1
        job = None
        try:
            job = await self._receive(request, name, blur, limit)
            job.client = client
        finally:
            with self._wake:  # the place passes to the job, or is given back, in one step
                self._uploading -= 1
                self._uploading_by[client] -= 1
                if self._uploading_by[client] <= 0:
                    del self._uploading_by[client]
                if job is not None:
                    self.jobs[job.id] = job
                    self._wake.notify()
        return job

    async def _receive(self, request: Request, name: str, blur: str, limit: int) -> Job:
        """Store the upload in a new job folder, check it is a video within the limits; the job (not queued)."""
        job_id = uuid.uuid4().hex[:12]
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name or "video").name)[:80] or "video"
        folder = self.root / job_id
        folder.mkdir(mode=0o700)
        upload = folder / ("upload" + (Path(safe).suffix.lower() or ".mp4"))
        size = 0
        head = b""
        idle = self.settings.upload_timeout_s
        chunks = request.stream().__aiter__()
        try:
            with upload.open("wb") as fh:
                while True:
                    try:  # a client that stops sending holds no upload slot for ever
                        chunk = await asyncio.wait_for(chunks.__anext__(), idle)
                    except StopAsyncIteration:
                        break
                    except TimeoutError:
                        raise HTTPError(408, f"the upload stalled: nothing arrived for {idle:g} s; send the video "
                                            "again.") from None
                    size += len(chunk)
                    if size > limit:
                        raise HTTPError(413, f"the video is over {self.settings.max_video_mb:g} MB, the limit for "
                                            "uploads; cut or compress it first.")
                    if len(head) < 16:
                        head += chunk[:16]
                    fh.write(chunk)
            if size == 0:
                raise HTTPError(422, "the request body is empty; send the video file as the body of the POST.")
            if not looks_like_video(head):
                raise HTTPError(415, not_a_video(safe, head))
            total, fps, duration = self._probe(upload)
            if duration is not None and duration > self.settings.max_video_s:
                raise HTTPError(413, f"the video lasts {duration:.0f} s; videos up to {self.settings.max_video_s:g} s "
                                    "are accepted. Cut it into parts.")
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return Job(job_id, safe, folder, blur=blur, total_frames=total, fps=fps, duration_s=duration, upload=upload)

    def _probe(self, path: Path) -> tuple[int | None, float | None, float | None]:
        import cv2

        from maskwatch.faces.detector import quiet_opencv

        quiet_opencv()
        cap = cv2.VideoCapture(str(path))
        try:
            w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
            limit = self.engine.max_pixels
            if cap.isOpened() and w * h > limit:  # from the stream header, before a frame is decoded
                raise HTTPError(413, f"the video's frames are {w}x{h} pixels, over the limit of {limit:,} pixels per "
                                    "frame (MASKWATCH_MAX_FRAME_PIXELS); scale it down first.")
            if not cap.isOpened() or not cap.grab():
                raise HTTPError(422, "the video cannot be decoded (corrupt, truncated or an unsupported codec).")
            fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
            n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        finally:
            cap.release()
        fps = fps if 0 < fps < 1000 else None
        return (n or None), fps, (n / fps if n and fps else None)

    # ------------------------------------------------------------------ the worker
    def _work(self) -> None:
        from maskwatch.server.pool import give_memory_back

        every = max(0.1, min(60.0, self.settings.job_ttl_s / 4))  # expired jobs go without anyone asking
        while True:
            self.sweep()
            with self._wake:
                if self._closed:
                    return
                job = next((j for j in self.jobs.values() if j.status == "queued"), None)
                if job is None:
                    self._wake.wait(every)
                    continue
                job.status = "running"
                job.started = time.time()
            try:
                self._run(job)
                if job.status == "running":
                    job.status = "cancelled" if job.cancel.is_set() else "done"
            except MaskwatchError as exc:
                job.status, job.error = "failed", self._public(str(exc), job)
            except Exception as exc:  # noqa: BLE001 - reported on the job, the worker goes on
                log.exception("video job %s failed", job.id)
                job.status, job.error = "failed", self._public(f"internal error: {type(exc).__name__}: {exc}", job)
            finally:
                give_memory_back(1 << 62)  # frames of up to the frame budget were decoded: hand freed memory back
                job.finished = time.time()
                if job.upload is not None:
                    job.upload.unlink(missing_ok=True)  # the uploaded video is not kept
                if job.id not in self.jobs:  # deleted while running
                    shutil.rmtree(job.folder, ignore_errors=True)

    def _public(self, message: str, job: Job) -> str:
        """``message`` with the server's folders replaced by the uploaded file's name."""
        if job.upload is not None:
            message = message.replace(str(job.upload), job.name)
        return message.replace(str(job.folder), job.name).replace(str(self.folder.base), "<jobs folder>")

    def _run(self, job: Job) -> None:
        import maskwatch
        from maskwatch.alerts import Alerts
        from maskwatch.io.writers import CsvWriter, JsonlWriter, MediaSaver
        from maskwatch.report import ComplianceReport

        media = job.folder / "media"
        saver = MediaSaver(media, blur=job.blur)
        report = ComplianceReport()
        alerts = Alerts()
        sinks = [_Progress(job), JsonlWriter(job.folder / "frames.jsonl"), CsvWriter(job.folder / "faces.csv"),
                 saver, report, alerts]
        if self.db:  # maskwatch serve --db: jobs are recorded like detect runs
            from maskwatch.events import EventLog

            sinks.append(EventLog(self.db, command=f"maskwatch serve: video job {job.id} ({job.name})"))
        failures: list[MaskwatchError] = []  # a video that breaks off: its decoded frames are kept, as the CLI does
        maskwatch.run([str(job.upload)], sinks, self.engine, handle_signals=False, progress=False,
                      skip_bad_inputs=True, on_error=failures.append)
        if failures and job.frames == 0:
            raise failures[0]
        if saver.saved:
            saver.saved[0].rename(job.folder / "video.mp4")
        shutil.rmtree(media, ignore_errors=True)
        report.save(job.folder)
        summary = json.loads((job.folder / "summary.json").read_text())
        src = next(iter(summary["sources"].values()), None)
        tracks = next(iter(summary["tracks"].values()), [])
        for t in tracks:
            t.pop("label_seconds", None)
        job.result = {"summary": src, "tracks": tracks, "alerts": alerts.alerts,
                      "timeline": report.timeline(report.sources[0]) if report.sources else []}
        for row in job.result["timeline"]:
            row.pop("source", None)
        if failures:
            job.status, job.error = "failed", self._public(str(failures[0]), job)

    def close(self) -> None:
        with self._wake:
            self._closed = True
            for j in self.jobs.values():
                j.cancel.set()
            self._wake.notify_all()
        self._thread.join(10)
        self.folder.close()


__all__ = ["Job", "JobManager", "JobsFolder", "default_jobs_dir", "looks_like_video", "sweep_leftovers"]
