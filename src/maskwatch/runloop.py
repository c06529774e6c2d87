"""The one frame loop for every front: frames in, results out to sinks, closed properly whatever happens.

:class:`FrameLoop` is the loop itself, push-style: a driver ``begin()``s a source, ``push()``es its
frames and ends it; the loop runs the engine, keeps one face tracker per video source (closing it,
with its ``track_ended`` events on the source's last frame), and drives the sinks through their
lifecycle (:mod:`maskwatch.sinks`). Every front drives the same loop:

- :func:`run` (``maskwatch detect``, video jobs, batch actors, each camera of ``maskwatch watch``)
  pulls frames from files, folders, cameras and streams, decoded and face-detected one step ahead in
  a background thread, and stops cleanly on Ctrl-C, ``SIGTERM``, ``SIGHUP`` or a ``stop`` event (the
  frame in hand is finished, open tracks are closed, files are completed);
- the server's live sessions push the browser's frames one request at a time;
- :func:`label_stream` (``MaskDetector.process``) yields the results instead of writing them.

Example::

    import maskwatch
    from maskwatch.io.writers import JsonlWriter
    from maskwatch.analytics import VideoStats

    stats = VideoStats()
    summary = maskwatch.run(["clip.mp4"], [JsonlWriter("frames.jsonl"), stats])
    print(summary.frames, stats.summary())
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maskwatch.errors import MaskwatchError
from maskwatch.results import FrameResult, SourceInfo
from maskwatch.sinks.base import Sink as _Sink, Sinks, StopRun as _StopRun

log = logging.getLogger(__name__)

#: Signals that end a run cleanly (the first one; a second one interrupts at once).
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


#: The sink protocol lives in :mod:`maskwatch.sinks`; these names stay importable from here.
Sink = _Sink
StopRun = _StopRun


@dataclass
class RunSummary:
    """What a run did: frames processed, time taken, inputs skipped, and why it stopped early (if it did)."""

    frames: int = 0
    elapsed_s: float = 0.0
    failures: list[str] = field(default_factory=list)
    signal: int | None = None
    stopped_by_sink: bool = False

    @property
    def fps(self) -> float:
        return self.frames / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def signal_name(self) -> str | None:
        return None if self.signal is None else signal.Signals(self.signal).name


class _Signals:
    """Turn the first stop signal into a request to stop after the current frame; a second one
    interrupts at once (``KeyboardInterrupt``). Installed only in the main thread; restored on exit."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.received: int | None = None
        self._old: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:  # noqa: ARG002
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum
        self.stop.set()

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                try:
                    self._old[sig] = signal.signal(sig, self._handle)
                except (ValueError, OSError):  # not settable here
                    pass
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class FrameLoop:
    """The frame loop: one engine, one source at a time, results into sinks.

    Args:
        engine: a :class:`~maskwatch.engine.MaskDetector`.
        sinks: where results go (:mod:`maskwatch.sinks`); started on the first :meth:`begin`.
        track: follow faces across video frames (steadied labels, per-person events).
        tracker_options: overrides for :class:`~maskwatch.track.FaceTracker` (default: the engine spec's).
        keep_image: keep decoded images on results (default: when a sink ``needs_image``).

    Each result reaches the sinks one frame late, so that the last frame of a video source can carry
    the ``track_ended`` events of the tracks still open when the source ends (:meth:`end_source`).
    :meth:`push` returns the result at once (a live session answers with it).
    """

    def __init__(self, engine, sinks: Sequence[Any] | Sinks = (), *, track: bool = True,
                 tracker_options: dict | None = None, keep_image: bool | None = None) -> None:
        self.engine = engine
        self.sinks = sinks if isinstance(sinks, Sinks) else Sinks(sinks)
        self.track = track
        self.tracker_options = dict(tracker_options or {})
        self.keep_image = self.sinks.need_image if keep_image is None else bool(keep_image)
        #: results written to the sinks so far
        self.frames = 0
        self.tracker = None
        self._held: FrameResult | None = None
        self._source: str | None = None
        self._info: SourceInfo | None = None
        self._video = False

    @property
    def source(self) -> str | None:
        """The source being processed (``None`` between sources)."""
        return self._source

    def begin(self, source: str, *, video: bool, info: SourceInfo | None = None) -> None:
        """Start a source (ending the one before): a new face tracker for a video, camera or stream."""
        self.end_source()
        self.sinks.start()
        self._source, self._video, self._info = source, video, info
        self.tracker = (self.engine.new_tracker(source, **self.tracker_options) if self.track and video else None)

    def set_info(self, info: SourceInfo | None) -> None:
        """Describe the current source (e.g. once a live camera's first frame tells its size)."""
        self._info = info

    def push(self, image, *, frame: int | None = None, time_s: float | None = None, boxes=None,
             timings_ms: dict[str, float] | None = None) -> FrameResult:
        """Label one frame of the current source (``boxes``: faces already found, e.g. by a prefetch
        thread) and hand the frame before it to the sinks. Returns this frame's result."""
        if self._source is None:
            raise RuntimeError("FrameLoop.push() before begin(): name the source first")
        timings = dict(timings_ms or {})
        if boxes is None:
            t0 = time.perf_counter()
            boxes = self.engine.find_faces(image, video=self._video)
            timings["detect"] = (time.perf_counter() - t0) * 1e3
        result = self.engine.label_faces(image, boxes, source=self._source, frame=frame, time_s=time_s,
                                         keep_image=self.keep_image, tracker=self.tracker, video=self._video,
                                         timings_ms=timings)
        result.source_info = self._info
        held, self._held = self._held, result
        if held is not None:
            self._write(held)
        return result

    def end_source(self) -> None:
        """End the current source: close its tracker (``track_ended`` events on its last frame) and
        hand that frame to the sinks."""
        held, tracker = self._held, self.tracker
        self._held, self.tracker, self._source = None, None, None
        if tracker is not None:
            events = tracker.close()
            if held is not None:
                held.events.extend(events)
        if held is not None:
            self._write(held)

    def _write(self, result: FrameResult) -> None:
        self.frames += 1
        self.sinks.write(result)

    def end(self, summary: Any = None, error: BaseException | None = None) -> BaseException | None:
        """End the run: the current source (unless it failed), then every sink's ``finish(summary)`` or
        ``failed(error)`` and ``close()``. Returns the first exception raised while ending (a sink's, or
        the last frame's own)."""
        last_frame_error: BaseException | None = None
        if error is None:
            try:
                self.end_source()
            except _StopRun:
                pass
            except BaseException as exc:  # noqa: BLE001 - the sinks must still be closed
                error = last_frame_error = exc
        return self.sinks.end(summary, error) or last_frame_error


def drive(loop: FrameLoop, sources, *, vid_stride: int = 1, on_error=None, stop: threading.Event | None = None,
          start: int = 0, end: int | None = None) -> Iterator[FrameResult]:
    """Push every frame of resolved ``sources`` through ``loop``; yields each result as it is labelled.

    Decoding and face detection of the next frames run in a background thread while the classifier
    works on the current one (both release the GIL), so two cores are both used. ``start``/``end``:
    only these frame numbers of each video (batch chunks). ``stop`` (set by a signal, a sink or
    another thread) ends the stream after the frame in hand.
    """
    current = None
    for k, fr, boxes, detect_ms in _prefetch(loop.engine, sources, vid_stride, on_error, start=start, end=end):
        if k != current:
            current = k
            loop.begin(fr.source, video=sources[k].kind != "image", info=getattr(fr, "info", None))
        yield loop.push(fr.image, frame=fr.index, time_s=fr.time_s, boxes=boxes,
                        timings_ms={"decode": fr.decode_ms, "detect": detect_ms})
        if stop is not None and stop.is_set():
            break
    loop.end_source()


def label_stream(engine, sources, vid_stride: int = 1, keep_image: bool = False, on_error=None, track: bool = True,
                 tracker_options: dict | None = None, stop: threading.Event | None = None) -> Iterator[FrameResult]:
    """Results of already resolved sources, as :func:`run` would hand them to its sinks (the last frame of
    each video carries the ``track_ended`` events of its open tracks)."""
    out: deque[FrameResult] = deque()

    class _Collect(_Sink):
        def write(self, result: FrameResult) -> None:
            out.append(result)

    loop = FrameLoop(engine, [_Collect()], track=track, tracker_options=tracker_options, keep_image=keep_image)
    for _ in drive(loop, sources, vid_stride=vid_stride, on_error=on_error, stop=stop):
        while out:
            yield out.popleft()
    while out:
        yield out.popleft()


_DONE = object()


def _prefetch(engine, sources, vid_stride: int, on_error, depth: int = 4, start: int = 0, end: int | None = None):
    """Yield ``(source index, frame, boxes, detect ms)`` decoded and detected by a background thread."""
    import queue

    from maskwatch.io.sources import iter_frames

    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for k, src in enumerate(sources):
                for fr in iter_frames(src, vid_stride=vid_stride, max_pixels=engine.max_pixels, on_error=on_error,
                                      start=start, end=end):
                    t0 = time.perf_counter()
                    boxes = engine.find_faces(fr.image, video=src.kind != "image")
                    if not put((k, fr, boxes, (time.perf_counter() - t0) * 1e3)):
                        return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, re-raised there
            put(exc)
            return
        put(_DONE)

    thread = threading.Thread(target=work, name="maskwatch-decode-detect", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def run(
    sources: Sequence[str | Path],
    sinks: Sequence[Sink] = (),
    detector=None,
    *,
    vid_stride: int = 1,
    track: bool = True,
    tracker_options: dict | None = None,
    keep_image: bool | None = None,
    skip_bad_inputs: bool | None = None,
    on_error: Callable[[MaskwatchError], None] | None = None,
    progress: bool | None = None,
    handle_signals: bool = True,
    stop: threading.Event | None = None,
    start_frame: int = 0,
    end_frame: int | None = None,
) -> RunSummary:
    """Run the detector over ``sources`` and hand every result to every sink; close them all at the end.

    Args:
        sources: images, folders, globs, video files, cameras (``0``), stream URLs (as for ``detect``).
        sinks: where results go (:mod:`maskwatch.sinks`); each is told ``finish(summary)`` or
            ``failed(error)`` and closed, whatever happens.
        detector: a :class:`~maskwatch.engine.MaskDetector` (default: a new one with default settings).
        vid_stride: use every N-th video frame.
        track: follow faces across video frames (labels steadied, per-person events).
        tracker_options: passed to :class:`~maskwatch.track.FaceTracker` (``alert_after_s``, ...).
        keep_image: keep decoded images on results (default: when a sink sets ``needs_image``).
        skip_bad_inputs: skip unreadable inputs instead of stopping (default: when more than one source).
        on_error: called with each skipped input's error.
        progress: show a progress bar on stderr (default: when stderr is a terminal and a video is run).
        handle_signals: stop cleanly on SIGINT / SIGTERM / SIGHUP (main thread only).
        stop: an event another thread sets to end the run cleanly after the frame in hand.
        start_frame / end_frame: only frames ``[start_frame, end_frame)`` of each video (batch chunks).

    Returns:
        a :class:`RunSummary`; ``signal`` is set when a signal stopped the run (outputs are complete
        up to the last frame written).
    """
    from maskwatch.engine import MaskDetector
    from maskwatch.io.sources import resolve_sources

    resolved = resolve_sources(sources)
    engine = detector if detector is not None else MaskDetector()
    if skip_bad_inputs is None:
        skip_bad_inputs = len(resolved) > 1
    summary = RunSummary()

    def skipped(exc: MaskwatchError) -> None:
        summary.failures.append(str(exc))
        if on_error is not None:
            on_error(exc)
        else:
            log.warning("skipped %s", exc)

    if progress is None:
        progress = sys.stderr.isatty() and any(s.kind != "image" for s in resolved)
    from tqdm import tqdm

    loop = FrameLoop(engine, sinks, track=track, tracker_options=tracker_options, keep_image=keep_image)
    bar = tqdm(unit="frame", disable=not progress, leave=False, file=sys.stderr)
    stop = stop if stop is not None else threading.Event()
    t0 = time.perf_counter()
    signals = _Signals(stop)
    if handle_signals:
        signals.__enter__()  # kept until every sink is closed: a signal while closing only asks to stop
    error: BaseException | None = None
    try:
        _consume(drive(loop, resolved, vid_stride=vid_stride, on_error=skipped if skip_bad_inputs else None,
                       stop=stop, start=start_frame, end=end_frame), summary, stop, bar)
    except BaseException as exc:
        error = exc
        raise
    finally:
        try:
            bar.close()
            summary.elapsed_s = time.perf_counter() - t0
            summary.signal = signals.received
            close_error = _end(loop, summary, error)
        finally:
            if handle_signals:
                signals.__exit__(None, None, None)
        if close_error is not None and error is None:
            raise close_error
    return summary


def _consume(stream: Iterator[FrameResult], summary: RunSummary, stop: threading.Event, bar) -> None:
    """Run ``stream`` to its end; a sink's :class:`StopRun` ends it cleanly after the frame in hand."""
    try:
        while True:
            try:
                next(stream)
            except StopIteration:
                return
            except StopRun:
                summary.stopped_by_sink = True
                stop.set()
            bar.update()
    finally:
        stream.close()


def _end(loop: FrameLoop, summary: RunSummary, error: BaseException | None) -> BaseException | None:
    """The last frame (with its ``track_ended`` events) unless the run failed, then every sink's end."""
    if error is None:
        try:
            loop.end_source()
        except StopRun:
            summary.stopped_by_sink = True
    summary.frames = loop.frames
    return loop.sinks.end(summary if error is None else None, error)
