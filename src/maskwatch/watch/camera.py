"""One camera of a watched site: its reader, its own tracker and face detector, and what it shows now.

:class:`Camera` runs a thread that takes the reader's latest frame (never more often than the
camera's ``fps``) and pushes it through the one frame loop (:class:`~maskwatch.runloop.FrameLoop`):
the camera's own face detector, the shared classifier, the camera's own tracker, and the sinks
(event log, alerts). The engine and the loop do all the work; this module only paces them and keeps
the numbers the dashboard shows.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from datetime import date

import cv2
import numpy as np

from maskwatch.events.backends import redact
from maskwatch.results import FrameResult, SourceInfo
from maskwatch.sinks.base import Sink
from maskwatch.track import COMPLIANT_LABELS, TrackEvent
from maskwatch.watch.config import CameraConfig
from maskwatch.watch.reader import FrameReader

log = logging.getLogger(__name__)

#: Seconds of per-second timeline points kept per camera (the dashboard's charts).
TIMELINE_S = 2 * 3600
#: Width of the dashboard thumbnail, and how often it is redrawn.
THUMB_WIDTH = 480
THUMB_EVERY_S = 0.5
#: An alert badge stays on this long after the camera's last alert.
ALERT_BADGE_S = 30.0


def compliance_of(faces) -> tuple[int, int]:
    """``(compliant, sure)``: faces with a mask and faces whose label is sure (uncertain ones are left out)."""
    sure = [f for f in faces if not f.uncertain]
    return sum(f.label in COMPLIANT_LABELS for f in sure), len(sure)


class Timeline:
    """Per-second points: time, people (mean over the second's frames), compliance (``None``: no sure face).

    A second without an analysed frame has no point; the dashboard breaks its lines at holes longer
    than a few seconds (a stream gap). Written by the camera's worker thread only, so the times
    always increase.
    """

    def __init__(self, keep_s: int = TIMELINE_S) -> None:
        self.points: collections.deque = collections.deque(maxlen=keep_s)
        self._sec: int | None = None
        self._acc = [0, 0, 0, 0]  # people sum, frames, compliant, sure

    def add(self, t: float, people: int, compliant: int, sure: int) -> None:
        sec = int(t)
        if self._sec is not None and sec != self._sec:
            self._flush()
        self._sec = sec
        a = self._acc
        a[0] += people
        a[1] += 1
        a[2] += compliant
        a[3] += sure

    def _flush(self) -> None:
        p, n, c, s = self._acc
        if n:
            self.points.append((self._sec, round(p / n, 2), round(c / s, 4) if s else None))
        self._acc = [0, 0, 0, 0]

    def series(self, since: float | None = None) -> list[tuple]:
        pts = list(self.points)
        if self._sec is not None and self._acc[1]:
            p, n, c, s = self._acc
            pts.append((self._sec, round(p / n, 2), round(c / s, 4) if s else None))
        if since is not None:
            pts = [x for x in pts if x[0] >= since]
        return pts


class _Guarded(Sink):
    """A site-wide sink (the event log) as one camera's sink: its errors are logged, never stop the camera,
    and the camera's end does not close it (the monitor does)."""

    def __init__(self, camera: str, sink) -> None:
        self.camera, self.sink = camera, sink

    def write(self, result) -> None:
        try:
            self.sink.write(result)
        except Exception as exc:  # noqa: BLE001 - one broken sink must not stop the camera
            log.error("camera %s: sink %r failed: %s", self.camera, self.sink, exc)


class Camera:
    """One camera's worker thread and live state (see module doc).

    Args:
        cfg: the camera's configuration.
        engine: this camera's own :class:`~maskwatch.engine.MaskDetector` (own face detector;
            its classifier may be shared).
        sinks: objects with ``write(result)`` (thread-safe), e.g. the site's event log.
        metrics: the site's :class:`~maskwatch.watch.metrics.WatchMetrics` (or ``None``).
        on_event: called with ``(camera name, event)`` for alerts and stream gaps (recent-alerts list).
    """

    def __init__(self, cfg: CameraConfig, engine, sinks=(), metrics=None, on_event=None, opener=None) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.engine = engine
        self.sinks = list(sinks)
        self.metrics = metrics
        self.on_event = on_event or (lambda name, ev: None)
        kw = {"opener": opener} if opener is not None else {}
        self.reader = FrameReader(cfg, on_status=self._status, **kw)
        self.stop_event = threading.Event()
        self._thread = threading.Thread(target=self._work, name=f"maskwatch-camera-{cfg.name}", daemon=True)
        self._t0 = time.monotonic()
        self._lock = threading.Lock()
        self._new_tracker = False
        self.timeline = Timeline()
        self.frames = 0
        self.faces_total = 0
        self.alerts = 0
        self.last_alert_at: float | None = None
        self.people = 0
        self.compliance_now: float | None = None
        self.today = [date.today(), 0, 0]  # day, compliant, sure
        self.lag_s: float | None = None
        self.fps = 0.0
        self._fps_window: collections.deque = collections.deque(maxlen=50)
        self.thumbnail: bytes | None = None
        self._thumb_at = 0.0
        self.status = "connecting"
        self.error: str | None = None
        self._dropped_seen = 0
        self.crashed: str | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Camera:
        self._t0 = time.monotonic()
        self.reader.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the camera to stop (returns at once); :meth:`join` waits for it."""
        self.stop_event.set()
        self.reader.close(timeout=0)

    def join(self, timeout: float = 15.0) -> None:
        self.reader.close(timeout)
        if self._thread.ident is not None:  # started
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # ------------------------------------------------------------------ stream status (reader thread)
    def _status(self, kind: str, detail) -> None:
        now = time.monotonic()
        if kind == "connected":
            self.status, self.error = "connected", None
            if self.metrics:
                self.metrics.connected.labels(self.name).set(1)
            return
        if kind == "unavailable":
            self.status, self.error = "unavailable", str(detail)
            ev_kind = "stream_unavailable"
        elif kind == "lost":
            self.status, self.error = "reconnecting", str(detail)
            self._new_tracker = True
            ev_kind = "stream_lost"
        else:  # restored
            self.status, self.error = "connected", None
            ev_kind = "stream_restored"
            if self.metrics:
                self.metrics.reconnects.labels(self.name).inc()
        if self.metrics:
            self.metrics.connected.labels(self.name).set(1 if self.status == "connected" else 0)
        ev = TrackEvent(kind=ev_kind, source=self.name, track_id=None, frame=None,  # type: ignore[arg-type]
                        time_s=now - self._t0,
                        label=f"gap {detail:.1f} s" if kind == "restored" else None,
                        previous=None if kind == "restored" else str(detail))
        self._emit(FrameResult(source=self.name, width=self.reader.width or 0, height=self.reader.height or 0,
                               events=[ev], source_info=self._info()))
        self.on_event(self.name, ev)

    def _info(self) -> SourceInfo:
        kind = {"file": "video", "stream": "stream", "camera": "camera"}[self.cfg.kind]
        return SourceInfo(kind, self.cfg.source, self.reader.width or 0, self.reader.height or 0,
                          self.reader.source_fps, None, 0, 1)

    def _emit(self, result: FrameResult) -> None:
        for sink in self.sinks:
            try:
                sink.write(result)
            except Exception as exc:  # noqa: BLE001 - one broken sink must not stop the camera
                log.error("camera %s: sink %r failed: %s", self.name, sink, exc)

    # ------------------------------------------------------------------ the camera thread
    def _work(self) -> None:
        """The camera thread: the latest frame at the camera's rate, pushed through the one frame loop
        (:class:`~maskwatch.runloop.FrameLoop`): a source per connection, so a gap ends the old tracks."""
        from maskwatch.alerts import Alerts
        from maskwatch.runloop import FrameLoop

        alerts = Alerts(webhook=self.cfg.webhook)
        loop = FrameLoop(self.engine, [*(_Guarded(self.name, s) for s in self.sinks), alerts],
                         tracker_options={"alert_after_s": self.cfg.alert_after_s,
                                          "alert_cooldown_s": self.cfg.alert_cooldown_s})
        seq = 0
        period = 1.0 / self.cfg.fps
        next_due = time.monotonic()
        error: BaseException | None = None
        try:
            while not self.stop_event.is_set():
                wait = next_due - time.monotonic()
                if wait > 0 and self.stop_event.wait(wait):
                    break
                got = self.reader.latest(seq, timeout=0.5)
                if got is None:
                    continue
                seq = got.seq
                next_due = max(next_due + period, time.monotonic() - period)
                if self._new_tracker:  # after a gap the faces are other people: end the old tracks
                    self._new_tracker = False
                    loop.end_source()
                if loop.source is None:
                    loop.begin(self.name, video=True, info=self._info())
                loop.set_info(self._info())
                result = loop.push(got.image, frame=got.seq, time_s=got.monotonic - self._t0)
                self._update(result, got)
                # A camera runs for days: keep no history in memory (the event log has it). The tracker
                # keeps every ended track and the alert sink every alert, for reports at the end of a clip.
                if loop.tracker is not None:
                    loop.tracker.finished.clear()
                alerts.alerts.clear()
        except Exception as exc:  # noqa: BLE001 - reported on the dashboard; other cameras keep running
            error = exc
            self.crashed = f"{type(exc).__name__}: {exc}"
            self.status = "failed"
            log.exception("camera %s stopped", self.name)
        finally:
            loop.end(error=error)  # the last frame with its track_ended events; the alert sender closed
            self.reader.close()
            if self.metrics:
                self.metrics.connected.labels(self.name).set(0)

    def _update(self, result: FrameResult, got) -> None:
        now = time.monotonic()
        lag = now - got.monotonic
        compliant, sure = compliance_of(result.faces)
        n_alerts = sum(ev.kind == "unmasked_alert" for ev in result.events)
        with self._lock:
            self.frames += 1
            self.faces_total += len(result.faces)
            self.people = len(result.faces)
            self.compliance_now = compliant / sure if sure else None
            today = date.today()
            if self.today[0] != today:
                self.today = [today, 0, 0]
            self.today[1] += compliant
            self.today[2] += sure
            self.lag_s = lag
            self._fps_window.append(now)
            w = self._fps_window
            self.fps = (len(w) - 1) / (w[-1] - w[0]) if len(w) > 1 and w[-1] > w[0] else 0.0
            self.timeline.add(time.time(), len(result.faces), compliant, sure)
            if n_alerts:
                self.alerts += n_alerts
                self.last_alert_at = time.time()
        for ev in result.events:
            if ev.kind == "unmasked_alert":
                self.on_event(self.name, ev)
        if now - self._thumb_at >= THUMB_EVERY_S:
            self._thumb_at = now
            self.thumbnail = self._thumbnail(got.image, result)
        m = self.metrics
        if m is not None:
            m.frames.labels(self.name).inc()
            dropped = self.reader.dropped
            if dropped > self._dropped_seen:
                m.dropped.labels(self.name).inc(dropped - self._dropped_seen)
                self._dropped_seen = dropped
            for key, n in result.counts().items():
                if key != "total":
                    m.faces.labels(self.name, key).inc(n)
            m.people.labels(self.name).set(len(result.faces))
            m.compliance.labels(self.name).set(self.compliance_now if self.compliance_now is not None
                                               else float("nan"))
            if n_alerts:
                m.alerts.labels(self.name).inc(n_alerts)
            m.lag.labels(self.name).set(lag)
            m.fps.labels(self.name).set(self.fps)

    @staticmethod
    def _thumbnail(image: np.ndarray, result: FrameResult) -> bytes | None:
        from maskwatch.annotate import annotate

        drawn = annotate(image, result.faces)
        h, w = drawn.shape[:2]
        if w > THUMB_WIDTH:
            drawn = cv2.resize(drawn, (THUMB_WIDTH, round(h * THUMB_WIDTH / w)), interpolation=cv2.INTER_AREA)
        ok, jpg = cv2.imencode(".jpg", drawn, [cv2.IMWRITE_JPEG_QUALITY, 75])
        return jpg.tobytes() if ok else None

    # ------------------------------------------------------------------ what the dashboard reads
    def snapshot(self) -> dict:
        """The camera's tile: health, people, compliance now and today, alerts, drops."""
        with self._lock:
            day, c, s = self.today
            recent_alert = self.last_alert_at is not None and time.time() - self.last_alert_at < ALERT_BADGE_S
            return {
                "name": self.name,
                "source": self.cfg.source if self.cfg.kind != "stream" else redact(self.cfg.source),
                "kind": self.cfg.kind,
                "status": self.status if self.crashed is None else "failed",
                "error": self.crashed or self.error,
                "connected": self.reader.connected,
                "fps": round(self.fps, 2),
                "fps_target": self.cfg.fps,
                "lag_s": None if self.lag_s is None else round(self.lag_s, 3),
                "frames": self.frames,
                "frames_read": self.reader.frames_read,
                "dropped": self.reader.dropped,
                "reconnects": self.reader.reconnects,
                "people": self.people,
                "compliance_now": None if self.compliance_now is None else round(self.compliance_now, 4),
                "compliance_today": round(c / s, 4) if s else None,
                "alerts": self.alerts,
                "alert_active": recent_alert,
                "has_thumbnail": self.thumbnail is not None,
            }
