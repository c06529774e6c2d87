"""Alerts: someone without a mask for ``--alert-after`` seconds, told to a webhook and the log.

The tracker raises one ``unmasked_alert`` event per track (see :mod:`maskwatch.track`).
:class:`Alerts` is the sink that passes them on: a line in the log, and with a webhook URL a JSON
POST from a background sender that has a timeout, retries with backoff and a bounded queue, so a
slow or dead receiver never slows or stops detection (alerts beyond the queue are counted as
dropped). The end of a run does not wait for a receiver either: what is still queued is sent for
at most ``grace`` seconds (1 s), and not at all once a request has gone unanswered for ``stall_s``
(0.5 s); the rest is counted as dropped. Face thumbnails are sent only when asked for
(``thumbnails=True``).
"""

from __future__ import annotations

import base64
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import cv2

from maskwatch.errors import InputError
from maskwatch.preprocess import crop_face

log = logging.getLogger(__name__)

_STOP = object()


def check_webhook_url(url: str) -> str:
    """``--alert-webhook``: an ``http://`` or ``https://`` URL with a host and, if given, a port from 1 to 65535."""
    problem = None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # a port out of range or not a number
        parts, port, problem = None, None, str(exc)
    if parts is not None:
        if parts.scheme.lower() not in ("http", "https"):
            problem = "not http:// or https://"
        elif not parts.hostname:
            problem = "no host"
        elif port == 0:
            problem = "port 0"
    if problem:
        raise InputError(f"--alert-webhook {url!r}: expected an http:// or https:// URL with a host and a port from 1 "
                         f"to 65535, e.g. http://alerts.example:8080/hook ({problem}).")
    return url


def alert_payload(event, result, thumbnails: bool = False) -> dict[str, Any]:
    """The JSON an alert carries: source, UTC time, source time, track, box, scores (+ a JPEG thumbnail)."""
    d = {
        "kind": "unmasked_alert",
        "source": event.source,
        "at": event.at.isoformat(timespec="milliseconds"),
        "time_s": round(float(event.time_s), 3),
        "frame": event.frame,
        "track_id": event.track_id,
        "label": event.label,
        "box": None if event.box is None else list(event.box),
        "probs": None if event.probs is None else {k: round(v, 4) for k, v in event.probs.items()},
        "width": result.width,
        "height": result.height,
    }
    if thumbnails and result.image is not None and event.box is not None:
        crop = crop_face(result.image, event.box, 0.2)
        scale = 128 / max(crop.shape[:2])
        if scale < 1:
            crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        ok, jpg = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 85])
        if ok:
            d["thumbnail_jpeg_base64"] = base64.b64encode(jpg.tobytes()).decode("ascii")
    return d


class WebhookSender:
    """POST JSON payloads to ``url`` from a background thread.

    Args:
        url: ``http://`` or ``https://`` address of the receiver.
        timeout: seconds per attempt.
        retries: further attempts after a failed one, waiting ``backoff * 2**k`` seconds between them.
        max_queue: payloads waiting at most; a full queue drops new alerts (counted in ``dropped``).
        grace: at :meth:`close`, seconds to go on sending what is queued, at most.
        stall_s: at :meth:`close`, give up at once when a request has gone unanswered this long.
    """

    def __init__(self, url: str, timeout: float = 3.0, retries: int = 3, backoff: float = 0.5,
                 max_queue: int = 100, grace: float = 1.0, stall_s: float = 0.5) -> None:
        check_webhook_url(url)
        self.url, self.timeout, self.retries, self.backoff = url, timeout, retries, backoff
        self.grace, self.stall_s = grace, stall_s
        self._in_flight_since: float | None = None
        self._q: queue.Queue = queue.Queue(maxsize=max_queue)
        self.sent = self.failed = self.dropped = 0
        self.accepted = 0  # queued; each ends sent, failed, or (left at close) dropped
        self.failing = False  # the last attempt failed: the receiver looks down
        self._count_lock = threading.Lock()
        self._final = False
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._work, name="maskwatch-webhook", daemon=True)
        self._thread.start()

    def send(self, payload: dict[str, Any]) -> None:
        """Queue one payload; never blocks."""
        try:
            self._q.put_nowait(payload)
            self.accepted += 1
        except queue.Full:
            self.dropped += 1

    def _post(self, body: bytes) -> None:
        req = urllib.request.Request(self.url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "maskwatch"})
        self._in_flight_since = time.monotonic()
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - the user's URL
                resp.read(1024)
        finally:
            self._in_flight_since = None

    def _work(self) -> None:
        while True:
            item = self._q.get()
            if item is _STOP:
                return
            if self._closing.is_set():
                continue  # counted as dropped by close()
            body = json.dumps(item).encode()
            for attempt in range(self.retries + 1):
                try:
                    self._post(body)
                    self._settle("sent")
                    self.failing = False
                    break
                except (urllib.error.URLError, OSError, ValueError) as exc:
                    self.failing = True
                    if attempt == self.retries or self._closing.is_set():
                        self._settle("failed")
                        log.warning("alert webhook %s failed: %s", self.url, getattr(exc, "reason", exc))
                        break
                    if self._closing.wait(self.backoff * 2 ** attempt):
                        self._settle("failed")
                        break

    def _settle(self, outcome: str) -> None:
        with self._count_lock:
            if not self._final:  # after close() every unsettled alert was counted as dropped
                setattr(self, outcome, getattr(self, outcome) + 1)

    def close(self, grace: float | None = None) -> None:
        """Send what is queued for up to ``grace`` seconds (default: the constructor's), but stop at
        once when the receiver is failing or a request has gone unanswered for ``stall_s``: a dead or
        silent receiver must not hold up the end of a run. What is left is counted as dropped; a
        request still in flight is left to its daemon thread."""
        grace = self.grace if grace is None else grace
        deadline = time.monotonic() + grace
        if self.failing:
            self._closing.set()
        else:
            try:
                self._q.put_nowait(_STOP)
            except queue.Full:
                self._closing.set()  # drains the queue without sending; then the marker fits
        while self._thread.is_alive() and not self._closing.is_set():
            now = time.monotonic()
            since = self._in_flight_since
            if now >= deadline or self.failing or (since is not None and now - since > self.stall_s):
                self._closing.set()
                break
            self._thread.join(0.02)
        if self._thread.is_alive():
            try:
                self._q.put_nowait(_STOP)
            except queue.Full:
                pass
            self._thread.join(0.05)
        with self._count_lock:
            self._final = True
            self.dropped += self.accepted - self.sent - self.failed
        if self.failed or self.dropped:
            log.warning("alert webhook: %d sent, %d failed, %d dropped", self.sent, self.failed, self.dropped)


class Alerts:
    """Sink: each ``unmasked_alert`` goes to the log (and ``on_alert``), and to a webhook if given.

    Args:
        webhook: URL to POST each alert to (``None``: none).
        thumbnails: include a small JPEG of the face in each alert (off unless asked: privacy).
        on_alert: called with each alert's payload (e.g. to print it).
    """

    def __init__(self, webhook: str | None = None, thumbnails: bool = False, on_alert=None, **sender_options) -> None:
        self.thumbnails = thumbnails
        self.needs_image = thumbnails
        self.on_alert = on_alert
        self.sender = WebhookSender(webhook, **sender_options) if webhook else None
        self.alerts: list[dict[str, Any]] = []

    def write(self, result) -> None:
        for ev in result.events:
            if ev.kind != "unmasked_alert":
                continue
            payload = alert_payload(ev, result, self.thumbnails)
            self.alerts.append({k: v for k, v in payload.items() if k != "thumbnail_jpeg_base64"})
            log.info("alert: %s track %s without a mask at %.1f s", ev.source, ev.track_id, ev.time_s)
            if self.on_alert is not None:
                self.on_alert(payload)
            if self.sender is not None:
                self.sender.send(payload)

    def close(self) -> None:
        if self.sender is not None:
            self.sender.close()

