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

from maskwatch.defaults import MIN_TRACK_FRAMES
from maskwatch.report import ComplianceReport
from maskwatch.results import SourceInfo
from maskwatch.runloop import FrameLoop
from maskwatch.sinks.base import Sink

SESSION_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"


class _Shared(Sink):
    """The app's one event log as a session's sink: it gets the session's frames, but the session's end
    does not close it (the app closes it when it stops)."""

    def __init__(self, event_log) -> None:
        self.event_log = event_log

    def write(self, result) -> None:
        self.event_log.write(result)


class LiveSession:
    """One browser's camera, pushed through the one frame loop: its tracker, timeline and recent alerts."""

    def __init__(self, session_id: str, engine, event_log=None, client: str = "?") -> None:
        self.id = session_id
        self.client = client
        self.event_log = event_log
        self.name = f"live:{session_id}"  # the whole id: sessions that share a prefix stay apart
        self.report = ComplianceReport(MIN_TRACK_FRAMES, bucket_s=5)
        sinks = [self.report] + ([_Shared(event_log)] if event_log is not None else [])
        self.loop = FrameLoop(engine, sinks)
        self.loop.begin(self.name, video=True, info=SourceInfo("camera", self.name, 0, 0))
        self.alerts: deque[dict[str, Any]] = deque(maxlen=10)
        self.lock = threading.Lock()
        self.frames = 0
        self.started = time.monotonic()
        self.last_used = time.monotonic()

    @property
    def tracker(self):
        return self.loop.tracker

    def add(self, engine, image, boxes, timings_ms) -> Any:
        """Label one frame's faces on this session's tracker (one frame at a time per session);
        ``boxes`` were found by the calling worker's ``engine`` at the live detection size."""
        from maskwatch.alerts import alert_payload

        del engine  # the session's loop labels with the classifier every worker shares
        with self.lock:
            if self.frames == 0:
                self.loop.set_info(SourceInfo("camera", self.name, image.shape[1], image.shape[0]))
            result = self.loop.push(image, frame=self.frames, boxes=boxes, timings_ms=timings_ms)
            self.frames += 1
            self.last_used = time.monotonic()
            for ev in result.events:
                if ev.kind == "unmasked_alert":
                    self.alerts.appendleft(alert_payload(ev, result))
            return result, self.totals()

    def end(self) -> None:
        """Close the session's open tracks: its last frame, with their ``track_ended`` events, reaches the
        event log (if any) and the report."""
        with self.lock:
            self.loop.end()

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
        from maskwatch.server.errors import HTTPError

        now = time.monotonic()
        with self._lock:
            idle = [self.sessions.pop(s) for s, v in list(self.sessions.items()) if now - v.last_used > self.idle_s]
            sess = self.sessions.get(session_id)
            if sess is None:
                mine = sum(v.client == client for v in self.sessions.values())
                if mine >= self.per_client:
                    error = HTTPError(
                        429, f"your address has {mine} live camera sessions open, the limit is {self.per_client} "
                        f"(MASKWATCH_MAX_LIVE_SESSIONS_PER_CLIENT); end one (DELETE /v1/live?session=ID) or wait "
                        f"{self.idle_s:g} s for an idle one to close.", headers={"Retry-After": "60"})
                elif len(self.sessions) >= self.max_sessions:
                    error = HTTPError(
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


__all__ = ["LiveSession", "LiveSessions", "SESSION_PATTERN"]
