"""Live camera sessions: the page's webcam frames tracked over time, with running totals.

``POST /v1/live?session=ID`` takes one video frame (as ``/v1/detect``) and answers the same JSON
object plus ``session``: people so far (face tracks seen on at least 3 frames) by label, the
compliance rate with its 95% interval, a timeline of people per time bucket and the recent
unmasked alerts. Faces are tracked across the session's frames as in a video file, so labels are
steadied and each person is counted once. ``DELETE /v1/live?session=ID`` ends a session. Sessions
idle for ``idle_s`` are ended; at most ``max_sessions`` live at once (503 beyond). Frames stay in
memory; with an event log (``maskwatch serve --db PATH``, ``MASKWATCH_DB``) each session's track
events are recorded there as a source ``live:<id>`` (times, boxes, labels; never an image).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from maskwatch.defaults import MIN_TRACK_FRAMES
from maskwatch.report import ComplianceReport
from maskwatch.server import lazy_state

SESSION_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"


class LiveSession:
    """One browser's camera: its face tracker, timeline and recent alerts."""

    def __init__(self, session_id: str, engine, event_log=None, client: str = "?") -> None:
        self.id = session_id
        self.client = client
        self.event_log = event_log
        self._size = (0, 0)
        self.name = f"live:{session_id}"  # the whole id: sessions that share a prefix stay apart
        self.tracker = engine.new_tracker(self.name)
        self.report = ComplianceReport(MIN_TRACK_FRAMES, bucket_s=5)
        self.alerts: deque[dict[str, Any]] = deque(maxlen=10)
        self.lock = threading.Lock()
        self.frames = 0
        self.started = time.monotonic()
        self.last_used = time.monotonic()

    def add(self, engine, image, boxes, timings_ms) -> Any:
        """Label one frame's faces on this session's tracker (one frame at a time per session)."""
        from maskwatch.alerts import alert_payload

        with self.lock:
            result = engine.label_faces(image, boxes, source=self.name, frame=self.frames, time_s=None,
                                        tracker=self.tracker, timings_ms=timings_ms)
            self.frames += 1
            self.last_used = time.monotonic()
            self._size = (result.width, result.height)
            if self.event_log is not None:
                from maskwatch.results import SourceInfo

                result.source_info = SourceInfo("camera", self.name, result.width, result.height)
                self.event_log.write(result)
            self.report.write(result)
            for ev in result.events:
                if ev.kind == "unmasked_alert":
                    self.alerts.appendleft(alert_payload(ev, result))
            return result, self.totals()

    def end(self) -> None:
        """Close the session's open tracks (recorded in the event log, if any)."""
        with self.lock:
            events = self.tracker.close()
            if self.event_log is not None and events:
                from maskwatch.results import FrameResult, SourceInfo

                w, h = self._size
                self.event_log.write(FrameResult(self.name, w, h, frame=self.frames, events=events,
                                                 source_info=SourceInfo("camera", self.name, w, h)))

    def totals(self) -> dict[str, Any]:
        classes = self.tracker.classes
        tracks = [t.summary(classes) for t in self.tracker.all_tracks()]
        block = self.report.people_block(tracks)
        timeline = self.report.timeline(self.name)[-60:] if self.report.sources else []
        for row in timeline:
            row.pop("source", None)
        return {"id": self.id, "frames": self.frames, "elapsed_s": round(time.monotonic() - self.started, 1),
                **block, "timeline": timeline, "alerts": list(self.alerts)}


class LiveSessions:
    """The live sessions of one app, and the event log they write to (``db``: an SQLite path)."""

    def __init__(self, max_sessions: int = 32, idle_s: float = 120.0, db: str | None = None,
                 per_client: int = 4) -> None:
        self.max_sessions, self.idle_s, self.per_client = max_sessions, idle_s, per_client
        self.sessions: dict[str, LiveSession] = {}
        self._lock = threading.Lock()
        self.event_log = None
        if db:
            from maskwatch.events import EventLog

            self.event_log = EventLog(db, command="maskwatch serve (live camera sessions)")

    def get(self, session_id: str, engine, client: str = "?") -> LiveSession:
        """The session ``session_id`` (a new one if needed), or :class:`UploadError` 503 / 429 when
        all sessions, or all of ``client``'s, are taken."""
        from maskwatch.server.uploads import UploadError

        now = time.monotonic()
        with self._lock:
            idle = [self.sessions.pop(s) for s, v in list(self.sessions.items()) if now - v.last_used > self.idle_s]
            sess = self.sessions.get(session_id)
            if sess is None:
                mine = sum(v.client == client for v in self.sessions.values())
                if mine >= self.per_client:
                    error = UploadError(
                        429, f"your address has {mine} live camera sessions open, the limit is {self.per_client} "
                        f"(MASKWATCH_MAX_LIVE_SESSIONS_PER_CLIENT); end one (DELETE /v1/live?session=ID) or wait "
                        f"{self.idle_s:g} s for an idle one to close.", headers={"Retry-After": "60"})
                elif len(self.sessions) >= self.max_sessions:
                    error = UploadError(
                        503, f"too many live camera sessions at once ({self.max_sessions}); try again in a minute.",
                        headers={"Retry-After": "60"})
                else:
                    error = None
                    sess = self.sessions[session_id] = LiveSession(session_id, engine, self.event_log, client)
            if sess is not None:
                sess.last_used = now
        for old in idle:
            old.end()
        if sess is None:
            raise error
        return sess

    def end(self, session_id: str) -> bool:
        with self._lock:
            sess = self.sessions.pop(session_id, None)
        if sess is not None:
            sess.end()
        return sess is not None

    def close(self) -> None:
        """End every session and close the event log (the server is stopping)."""
        with self._lock:
            sessions, self.sessions = list(self.sessions.values()), {}
        for sess in sessions:
            sess.end()
        if self.event_log is not None:
            self.event_log.close()


router = APIRouter(tags=["live"])


def _sessions(request: Request) -> LiveSessions:
    def make() -> LiveSessions:
        s = request.app.state.settings
        return LiveSessions(max_sessions=getattr(s, "max_live_sessions", 32), db=s.db,
                            per_client=getattr(s, "max_live_sessions_per_client", 4))

    return lazy_state(request.app, "live_sessions", make)


@router.post("/v1/live", summary="One live camera frame, tracked within a session, with running totals")
async def live_frame(request: Request, session: str = Query(..., pattern=SESSION_PATTERN,
                                                             description="the browser's session id (8-64 of A-Z a-z 0-9 _ -)")):
    from maskwatch.io.images import decode_image_with_size, probe_image
    from maskwatch.server.admission import client_key
    from maskwatch.server.app import give_memory_back, to_full_size
    from maskwatch.server.uploads import UploadError, require_image

    settings = request.app.state.settings
    pool = request.app.state.pool
    uploads = await pool.receive(request)  # an upload slot while the frame arrives
    with pool.admit():  # then the same bounded queue as /v1/detect (503 when full)
        if len(uploads) != 1:
            raise UploadError(422, f"send one frame per request to /v1/live, got {len(uploads)} files.")
        upload = uploads[0]
        require_image(upload)
        sess = _sessions(request).get(session, pool.engine, client_key(request.scope.get("client")))

        info = probe_image(upload.data, name="frame")  # the header, before anything is decoded
        if info.pixels > settings.max_frame_pixels:
            raise UploadError(413, f"the frame is {info.width}x{info.height} pixels, over the limit of "
                                   f"{settings.max_frame_pixels:,} pixels per live frame; send smaller frames "
                                   "(the page sends at most 1280 px wide).")

        def work(worker):
            try:
                t0 = time.perf_counter()
                # The detector sees the frame at the live detection size: decode no larger than twice that.
                image, full = decode_image_with_size(upload.data, name="frame", max_pixels=settings.max_frame_pixels,
                                                     reduce_to=2 * settings.live_detect_size)
                t1 = time.perf_counter()
                boxes = worker.live.find_faces(image)  # the worker's own detector at the live detection size
                t2 = time.perf_counter()
                out = sess.add(worker.live, image, boxes, {"decode": (t1 - t0) * 1e3, "detect": (t2 - t1) * 1e3})
                del image
                to_full_size(out[0], full)
                return out
            finally:
                give_memory_back(info.pixels)

        result, totals = await pool.run(work, request)  # dropped if the browser has gone meanwhile
    body = result.to_dict()
    body["session"] = totals
    timing = ", ".join(f"{k};dur={v:.1f}" for k, v in result.timings_ms.items())
    return JSONResponse(body, headers={"Server-Timing": timing})


@router.delete("/v1/live", status_code=204, summary="End a live camera session")
async def end_live(request: Request, session: str = Query(..., pattern=SESSION_PATTERN)):
    _sessions(request).end(session)
    return Response(status_code=204)
