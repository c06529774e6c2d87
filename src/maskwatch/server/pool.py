"""The engine loaded once and a small pool of workers that share its classifier (see :class:`EnginePool`).

Also the memory helpers: :func:`give_memory_back` (glibc ``malloc_trim`` after a large image).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from starlette.requests import Request

from maskwatch.engine import MaskDetector
from maskwatch.server.admission import UploadSlots, client_key
from maskwatch.server.errors import ClientGone, HTTPError
from maskwatch.server.settings import ServerSettings
from maskwatch.server.uploads import Upload, read_uploads

log = logging.getLogger("maskwatch.server")
T = TypeVar("T")


def load_engine(settings: ServerSettings) -> MaskDetector:
    """Load the classifier and face detector named by ``settings`` (raises :class:`ModelError` etc.).

    The engine is the spec's (:meth:`ServerSettings.engine_spec`): defaults, ``MASKWATCH_*``, then settings."""
    return MaskDetector(spec=settings.engine_spec())


@dataclass
class Worker:
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
            Worker(
                photo=self._clone(engine, None, new_detector=i > 0),
                live=self._clone(engine, settings.live_detect_size),
                thread=ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"maskwatch-worker-{i}"),
            )
            for i in range(settings.workers)
        ]
        self._queue: asyncio.Queue[Worker] | None = None
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
        """``engine`` with our pixel limit (and ``detect_size``), sharing its classifier (:meth:`MaskDetector.fork`)."""
        del new_detector  # every thread has its own face detectors now
        sizes = {} if detect_size is None else {"detect_size": detect_size}
        return engine.fork(max_pixels=self.settings.max_pixels, **sizes)

    @contextlib.contextmanager
    def admit(self):  # type: ignore[no-untyped-def]
        """Count a request whose body has arrived in until it is answered; 503 (``Retry-After``) when
        ``workers + max_queue`` are in."""
        if self.active >= self.max_active:
            self.refused += 1
            raise HTTPError(
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

    async def run(self, fn: Callable[[Worker], T], request: Request | None = None) -> T:
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

    async def _acquire(self, request: Request | None) -> Worker | None:
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

        def warm(worker: Worker) -> None:
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


__all__ = ["EnginePool", "Worker", "give_memory_back", "load_engine"]
