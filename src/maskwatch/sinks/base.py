"""The sink protocol: where results go, told when a run starts, each result, and how it ended.

A sink is any object with ``write(result)``; the frame loop (:mod:`maskwatch.runloop`) also calls,
when the sink has them:

- ``start()`` once, before the first result;
- ``write(result)`` once per :class:`~maskwatch.results.FrameResult`, in order (``result.events``
  holds what happened to face tracks on that frame);
- ``finish(summary)`` when the run ended well (all inputs done, or stopped cleanly by a signal or a
  sink), with the :class:`~maskwatch.runloop.RunSummary`; **or** ``failed(error)`` when it ended with
  an error — never both, so a sink never has to guess from a bare ``close()`` whether to commit;
- ``close()`` once, last, whatever happened (release files, windows, threads).

A sink that needs the decoded image (annotated media, thumbnails) sets ``needs_image = True``. A sink
raises :class:`StopRun` to end the run cleanly (``q`` in the live window). Subclassing :class:`Sink`
gives no-op defaults for all but ``write``. A whole sink, counting faces per label::

    from collections import Counter
    from maskwatch.sinks import Sink

    class LabelCounter(Sink):
        def start(self):
            self.counts = Counter()

        def write(self, result):
            self.counts.update(f.label for f in result.faces)

        def finish(self, summary):
            print(dict(self.counts), "in", summary.frames, "frames")
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)


class StopRun(Exception):  # noqa: N818 - a request, not an error
    """Raised by a sink to end the run cleanly (e.g. ``q`` in the live window)."""


class Sink:
    """Base class with the whole lifecycle; only :meth:`write` must be overridden."""

    #: Set to ``True`` when :meth:`write` needs ``result.image`` (the decoded BGR frame).
    needs_image: bool = False

    def start(self) -> None:
        """Called once before the first result."""

    def write(self, result: Any) -> None:  # pragma: no cover - abstract
        """Called once per result, in order."""
        raise NotImplementedError

    def finish(self, summary: Any) -> None:
        """The run ended well: commit, flush, print."""

    def failed(self, error: BaseException) -> None:
        """The run ended with ``error``: clean up or mark the output incomplete."""

    def close(self) -> None:
        """Called last, always: release what the sink holds."""


class Sinks:
    """A list of sinks driven through their lifecycle together (what the frame loop uses).

    Every sink gets ``close()`` even when another one fails; the first failure is raised after all
    were closed.
    """

    def __init__(self, sinks: Sequence[Any] = ()) -> None:
        self.sinks = list(sinks)
        self._started = False

    @property
    def need_image(self) -> bool:
        return any(getattr(s, "needs_image", False) for s in self.sinks)

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        for sink in self.sinks:
            start = getattr(sink, "start", None)
            if start is not None:
                start()

    def write(self, result: Any) -> None:
        """Hand one result to every sink; :class:`StopRun` from one still lets the others have it."""
        stop = None
        for sink in self.sinks:
            try:
                sink.write(result)
            except StopRun as exc:
                stop = exc
        if stop is not None:
            raise stop

    def end(self, summary: Any = None, error: BaseException | None = None) -> BaseException | None:
        """``finish(summary)`` (or ``failed(error)``) then ``close()`` on every sink; returns the first
        exception any of them raised (closing matters more than reporting, so all are called)."""
        first: BaseException | None = None
        for sink in self.sinks:
            hook = getattr(sink, "failed" if error is not None else "finish", None)
            if hook is not None:
                try:
                    hook(error if error is not None else summary)
                except Exception as exc:  # noqa: BLE001 - every sink must still be closed
                    log.debug("%s of %r failed: %s", "failed()" if error is not None else "finish()", sink, exc)
                    first = first or exc
        for sink in self.sinks:
            try:
                sink.close()
            except BaseException as exc:  # noqa: BLE001 - close the rest first
                log.debug("closing %r failed: %s", sink, exc)
                first = first or exc
        return first
