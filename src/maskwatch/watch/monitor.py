"""A watched site: every camera in one process, one classifier shared through a batching queue.

Example::

    from maskwatch.watch import Monitor, load_site

    with Monitor(load_site("examples/site.toml"), db="events.db") as mon:
        time.sleep(30)
        print(mon.snapshot()["cameras"])
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any

from maskwatch.watch.batching import BatchingClassifier
from maskwatch.watch.camera import Camera
from maskwatch.watch.config import SiteConfig
from maskwatch.watch.metrics import WatchMetrics

log = logging.getLogger(__name__)

#: Alerts and stream gaps kept for the dashboard's "recent alerts" list.
RECENT_EVENTS = 200


class _LockedSink:
    """One sink written from several camera threads, one write at a time."""

    def __init__(self, sink) -> None:
        self.sink = sink
        self._lock = threading.Lock()

    def write(self, result) -> None:
        with self._lock:
            self.sink.write(result)


def camera_engine(engine, classifier):
    """A per-camera engine: ``engine``'s spec and ``classifier`` (the shared batching one); face
    detectors are per thread in every engine (:meth:`~maskwatch.engine.MaskDetector.fork`)."""
    return engine.fork(classifier=classifier)


class Monitor:
    """Watch every camera of ``site`` (see module doc); use as a context manager or call start/close.

    Args:
        site: the checked site file (:func:`~maskwatch.watch.config.load_site`).
        engine: a loaded :class:`~maskwatch.engine.MaskDetector` (default: one with ``site.detector``).
        db: the event log file (default: ``site.db``; ``None`` for none).
        command: stored with the run in the event log.
        opener: how readers open sources (tests).
    """

    def __init__(self, site: SiteConfig, engine=None, db: str | None = None, command: str = "watch",
                 opener=None) -> None:
        from maskwatch.engine import MaskDetector
        from maskwatch.spec import EngineSpec

        self.site = site
        # The engine spec (defaults, then MASKWATCH_* variables), with the site file's face detector.
        self.engine = engine if engine is not None else MaskDetector(spec=EngineSpec.from_env(), detector=site.detector)
        self.metrics = WatchMetrics()
        self.classifier = BatchingClassifier(self.engine.classifier)
        self.db = db if db is not None else site.db
        self.event_log = None
        sinks = []
        if self.db:
            from maskwatch.events import EventLog

            self.event_log = EventLog(self.db, command=command)
            sinks.append(_LockedSink(self.event_log))
        self.recent: collections.deque = collections.deque(maxlen=RECENT_EVENTS)
        self._recent_lock = threading.Lock()
        self.cameras: dict[str, Camera] = {}
        for cfg in site.cameras:
            self.metrics.add_camera(cfg.name)
            self.cameras[cfg.name] = Camera(cfg, camera_engine(self.engine, self.classifier), sinks, self.metrics,
                                            on_event=self._on_event, opener=opener)
        self.started_at: float | None = None
        self._closed = False

    def _on_event(self, camera: str, ev) -> None:
        with self._recent_lock:
            self.recent.appendleft({"camera": camera, "kind": ev.kind, "at": ev.at.isoformat(timespec="seconds"),
                                    "track_id": ev.track_id, "detail": ev.label if ev.kind == "stream_restored"
                                    else ev.previous if ev.kind.startswith("stream_") else None})

    def start(self) -> Monitor:
        """Start every camera (each in its own threads); returns at once."""
        self.started_at = time.time()
        for cam in self.cameras.values():
            cam.start()
        log.debug("watching %d cameras of %s", len(self.cameras), self.site.name)
        return self

    def close(self, signum: int | None = None) -> None:
        """Stop every camera, finish their tracks, close the event log (idempotent).

        ``signum``: the signal that asked to stop (recorded as the run's status in the event log).
        """
        if self._closed:
            return
        self._closed = True
        for cam in self.cameras.values():
            cam.stop()
        for cam in self.cameras.values():
            cam.join()
        self.classifier.close()
        if self.event_log is not None:
            from maskwatch.runloop import RunSummary

            self.event_log.finish(RunSummary(frames=sum(c.frames for c in self.cameras.values()), signal=signum,
                                             elapsed_s=time.time() - (self.started_at or time.time())))
            self.event_log.close()
        log.debug("stopped watching %s", self.site.name)

    def __enter__(self) -> Monitor:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ what fronts read
    @property
    def ready(self) -> bool:
        """Started, and at least one camera has analysed a frame."""
        return self.started_at is not None and not self._closed and any(c.frames for c in self.cameras.values())

    def snapshot(self) -> dict[str, Any]:
        """The site now: per camera tiles, site totals, recent alerts and gaps."""
        cams = [c.snapshot() for c in self.cameras.values()]
        self.metrics.queue_depth.set(self.classifier.queue_depth)
        today = [c.today for c in self.cameras.values()]
        compliant = sum(t[1] for t in today)
        sure = sum(t[2] for t in today)
        with self._recent_lock:
            recent = list(self.recent)[:50]
        return {
            "site": self.site.name,
            "started_at": self.started_at,
            "cameras": cams,
            "people": sum(c["people"] for c in cams),
            "connected": sum(bool(c["connected"]) for c in cams),
            "compliance_today": round(compliant / sure, 4) if sure else None,
            "alerts": sum(c["alerts"] for c in cams),
            "queue_depth": self.classifier.queue_depth,
            "recent": recent,
        }

    def timeline(self, camera: str | None = None, since: float | None = None) -> dict[str, Any]:
        """Per-second points ``[t, people, compliance]``; the site's sums people and pools compliance."""
        if camera is not None:
            cam = self.cameras[camera]
            with cam._lock:
                pts = cam.timeline.series(since)
            return {"camera": camera, "points": pts}
        people: dict[int, float] = {}
        comp: dict[int, list[float]] = {}
        for cam in self.cameras.values():
            with cam._lock:
                series = cam.timeline.series(since)
            for t, p, c in series:
                if p is not None:
                    people[t] = people.get(t, 0.0) + p
                if c is not None:
                    comp.setdefault(t, []).append(c)
        ts = sorted(set(people) | set(comp))
        return {"camera": None, "points": [(t, round(people.get(t, 0.0), 2),
                                            round(sum(comp[t]) / len(comp[t]), 4) if t in comp else None)
                                           for t in ts]}
