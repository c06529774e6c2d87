"""One classifier for every camera: crops from several camera threads classified in shared batches.

:class:`BatchingClassifier` has the classifier's interface (``predict``, ``classes``,
``calibration``, ``info``, ...), so an engine uses it as its ``classifier``. Each ``predict`` call
puts its crops on a queue and waits; one worker thread takes everything queued (waiting up to
``max_wait_ms`` for more cameras to join), runs the real classifier once on all crops, and hands
each caller its rows. One model in memory, fewer and fuller batches.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future

import numpy as np

log = logging.getLogger(__name__)

_STOP = object()


class BatchingClassifier:
    """Share ``classifier`` between threads through a batching queue (see module doc).

    Args:
        classifier: a :class:`~maskwatch.classify.model.MaskClassifier` (anything with ``predict``).
        max_batch: crops gathered for one classifier call at most (a single larger request goes alone).
        max_wait_ms: how long the worker waits for more requests once it has one.
    """

    def __init__(self, classifier, max_batch: int = 32, max_wait_ms: float = 2.0) -> None:
        self.inner = classifier
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self._q: queue.Queue = queue.Queue()
        self.batches = 0
        self.crops = 0
        self.requests = 0
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="maskwatch-classifier", daemon=True)
        self._thread.start()

    def __getattr__(self, name: str):
        # classes, calibration, info, input_size, ...: the wrapped classifier's
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    def queue_depth(self) -> int:
        """Requests waiting for the classifier now."""
        return self._q.qsize()

    def predict(self, crops_bgr: Sequence[np.ndarray], batch_size: int = 8, mirror: bool = False) -> np.ndarray:
        """Class probabilities ``(N, n_classes)`` for BGR face crops, classified with other cameras' crops."""
        if len(crops_bgr) == 0:
            return np.zeros((0, len(self.inner.classes)), np.float32)
        if self._closed:
            return self.inner.predict(crops_bgr, batch_size=batch_size, mirror=mirror)
        fut: Future = Future()
        self._q.put((list(crops_bgr), bool(mirror), fut))
        return fut.result()

    def close(self) -> None:
        """Stop the worker (later calls classify directly in the caller's thread)."""
        self._closed = True
        self._q.put(_STOP)
        self._thread.join(10)
        while True:  # a request that slipped in after the stop: answered here
            try:
                item = self._q.get_nowait()
            except queue.Empty:
                return
            if item is not _STOP:
                self._run([item], item[1])

    def _work(self) -> None:
        while True:
            item = self._q.get()
            if item is _STOP:
                return
            group = [item]
            n = len(item[0])
            stop = False
            while n < self.max_batch:
                try:
                    more = self._q.get(timeout=self.max_wait_s)
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                    break
                group.append(more)
                n += len(more[0])
            for mirror in (False, True):
                part = [g for g in group if g[1] == mirror]
                if part:
                    self._run(part, mirror)
            if stop:
                return

    def _run(self, group: list, mirror: bool) -> None:
        crops = [c for g in group for c in g[0]]
        try:
            # the model still runs in chunks of 8 (the classifier's own default, for its working memory)
            probs = self.inner.predict(crops, mirror=mirror)
        except BaseException as exc:  # noqa: BLE001 - every caller gets the error
            for _, _, fut in group:
                fut.set_exception(exc)
            return
        self.batches += 1
        self.crops += len(crops)
        self.requests += len(group)
        start = 0
        for c, _, fut in group:
            fut.set_result(probs[start:start + len(c)])
            start += len(c)
