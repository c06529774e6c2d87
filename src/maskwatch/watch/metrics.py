"""Prometheus metrics of a watched site (``/metrics``), one series per camera.

Each :class:`~maskwatch.watch.monitor.Monitor` has its own registry, so two monitors in one
process (tests) never clash. Needs ``prometheus-client`` (the ``watch`` extra).
"""

from __future__ import annotations

from maskwatch.errors import DependencyError


class WatchMetrics:
    """The site's counters and gauges (names start with ``maskwatch_watch_``)."""

    def __init__(self) -> None:
        try:
            from prometheus_client import CollectorRegistry, Counter, Gauge
        except ImportError as exc:  # pragma: no cover - the extra is part of CI
            raise DependencyError("watch needs prometheus-client: pip install 'maskwatch[watch]'") from exc
        self.registry = CollectorRegistry()
        r = self.registry
        cam = ["camera"]
        self.frames = Counter("maskwatch_watch_frames", "Frames analysed", cam, registry=r)
        self.dropped = Counter("maskwatch_watch_frames_dropped", "Frames decoded but not analysed "
                               "(a newer frame replaced them: fps cap or busy CPU)", cam, registry=r)
        self.faces = Counter("maskwatch_watch_faces", "Faces seen on analysed frames, by label "
                             "(uncertain apart)", ["camera", "label"], registry=r)
        self.people = Gauge("maskwatch_watch_people", "Faces on the camera's latest analysed frame", cam, registry=r)
        self.compliance = Gauge("maskwatch_watch_compliance", "Share of faces with a mask on the latest frame "
                                "(NaN when no face is sure)", cam, registry=r)
        self.alerts = Counter("maskwatch_watch_alerts", "Unmasked alerts raised", cam, registry=r)
        self.reconnects = Counter("maskwatch_watch_reconnects", "Streams restored after a gap", cam, registry=r)
        self.connected = Gauge("maskwatch_watch_connected", "1 while the camera delivers frames", cam, registry=r)
        self.lag = Gauge("maskwatch_watch_lag_seconds", "From a frame's arrival to its results", cam, registry=r)
        self.fps = Gauge("maskwatch_watch_fps", "Frames analysed per second (last seconds)", cam, registry=r)
        self.queue_depth = Gauge("maskwatch_watch_classifier_queue_depth",
                                 "Requests waiting for the shared classifier", registry=r)

    def add_camera(self, name: str) -> None:
        """Create the camera's series at zero, so a camera that never connects is visible too."""
        for metric in (self.frames, self.dropped, self.alerts, self.reconnects, self.people, self.connected,
                       self.lag, self.fps):
            metric.labels(name)
        self.compliance.labels(name).set(float("nan"))

    def render(self) -> bytes:
        """The registry in Prometheus' text format."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)
