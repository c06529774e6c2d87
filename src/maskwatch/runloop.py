"""One run loop for every front: sources in, results out to sinks, closed properly whatever happens.

:func:`run` resolves the sources, runs the engine frame by frame, hands every
:class:`~maskwatch.results.FrameResult` to each sink, shows a progress bar, and closes every sink at
the end, on an error, on Ctrl-C, ``SIGTERM`` or ``SIGHUP`` (the frame in hand is finished, open face
tracks are closed with their last time, files are completed), so outputs are always valid files.
``maskwatch detect`` is this function plus option parsing and printing.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from maskwatch.errors import MaskwatchError
from maskwatch.results import FrameResult

log = logging.getLogger(__name__)

#: Signals that end a run cleanly (the first one; a second one interrupts at once).
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


class StopRun(Exception):  # noqa: N818 - a request, not an error
    """Raised by a sink to end the run cleanly (e.g. ``q`` in the live window)."""


@runtime_checkable
class Sink(Protocol):
    """Where results go. ``write`` is called once per frame (in order), ``close`` once at the end.

    A sink that needs the decoded image (annotated media, thumbnails) sets ``needs_image = True``.
    ``result.events`` holds what happened to face tracks on that frame. A sink may also have
    ``finish(summary)``, called with the :class:`RunSummary` just before ``close``.
    """

    def write(self, result: FrameResult) -> None: ...

    def close(self) -> None: ...


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
) -> RunSummary:
    """Run the detector over ``sources`` and hand every result to every sink; close them all at the end.

    Args:
        sources: images, folders, globs, video files, cameras (``0``), stream URLs (as for ``detect``).
        sinks: objects with ``write(result)`` and ``close()`` (:class:`Sink`); closed even on errors.
        detector: a :class:`~maskwatch.engine.MaskDetector` (default: a new one with default settings).
        vid_stride: use every N-th video frame.
        track: follow faces across video frames (labels steadied, per-person events).
        tracker_options: passed to :class:`~maskwatch.track.FaceTracker` (``alert_after_s``, ...).
        keep_image: keep decoded images on results (default: when a sink sets ``needs_image``).
        skip_bad_inputs: skip unreadable inputs instead of stopping (default: when more than one source).
        on_error: called with each skipped input's error.
        progress: show a progress bar on stderr (default: when stderr is a terminal and a video is run).
        handle_signals: stop cleanly on SIGINT / SIGTERM / SIGHUP (main thread only).

    Returns:
        a :class:`RunSummary`; ``signal`` is set when a signal stopped the run (outputs are complete
        up to the last frame written).
    """
    from maskwatch.engine import MaskDetector, label_stream
    from maskwatch.io.sources import resolve_sources

    resolved = resolve_sources(sources)
    engine = detector if detector is not None else MaskDetector()
    if keep_image is None:
        keep_image = any(getattr(s, "needs_image", False) for s in sinks)
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

    bar = tqdm(unit="frame", disable=not progress, leave=False, file=sys.stderr)
    stop = threading.Event()
    t0 = time.perf_counter()
    error: BaseException | None = None
    signals = _Signals(stop)
    if handle_signals:
        signals.__enter__()  # kept until every sink is closed: a signal while closing only asks to stop
    try:
        stream = label_stream(engine, resolved, vid_stride=vid_stride, keep_image=keep_image,
                              on_error=skipped if skip_bad_inputs else None, track=track,
                              tracker_options=tracker_options, stop=stop)
        try:
            for result in stream:
                summary.frames += 1
                bar.update()
                try:
                    for sink in sinks:
                        sink.write(result)
                except StopRun:
                    summary.stopped_by_sink = True
                    stop.set()
        finally:
            stream.close()
    except BaseException as exc:
        error = exc
        raise
    finally:
        try:
            bar.close()
            summary.elapsed_s = time.perf_counter() - t0
            summary.signal = signals.received
            for sink in sinks:
                finish = getattr(sink, "finish", None)
                if finish is not None:
                    try:
                        finish(summary)
                    except Exception as exc:  # noqa: BLE001 - closing matters more
                        log.debug("finish(%r) failed: %s", sink, exc)
            close_error = _close_all(sinks)
        finally:
            if handle_signals:
                signals.__exit__(None, None, None)
        if close_error is not None and error is None:
            raise close_error
    return summary


def _close_all(sinks: Sequence[Sink]) -> BaseException | None:
    """Close every sink, even when one fails; return the first failure."""
    first = None
    for sink in sinks:
        try:
            sink.close()
        except BaseException as exc:  # noqa: BLE001 - close the rest first
            log.debug("closing %r failed: %s", sink, exc)
            first = first or exc
    return first
