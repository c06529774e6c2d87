"""Camera readers that keep only the latest frame and come back after a stream drops.

A :class:`FrameReader` runs one thread per camera. It decodes frames as they arrive (a file is
paced to its own frame rate and looped, as a camera would play it) and keeps only the newest one:
the consumer takes the latest frame when it is ready for one, and every frame it did not take is
counted as dropped. So a slow consumer never falls behind real time; it just analyses fewer frames.

When a stream cannot be opened or stops delivering frames, the reader waits (exponential backoff
from ``reconnect_min_s`` to ``reconnect_max_s``) and tries again, for ever, until closed. Each gap
is reported through ``on_status`` callbacks (``"lost"`` / ``"restored"`` / ``"unavailable"``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from maskwatch.watch.config import CameraConfig

log = logging.getLogger(__name__)

#: Seconds OpenCV waits to open a stream / for the next packet before giving up (then we reconnect).
STREAM_TIMEOUT_S = 5.0


@dataclass
class Captured:
    """One decoded frame: the image, its number since the camera first connected, and when it arrived."""

    image: np.ndarray
    seq: int
    monotonic: float


def _open(cam: CameraConfig):
    """An opened ``cv2.VideoCapture`` for the camera, or ``None`` (with the reason logged)."""
    import cv2

    from maskwatch.faces.detector import quiet_opencv

    quiet_opencv()
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    # RTSP over TCP: a server that goes away closes the connection (seen at once), where UDP goes quiet.
    os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
    if cam.kind == "camera":
        index = cam.source.split(":")[-1]
        cap = cv2.VideoCapture(int(index))
    elif cam.kind == "stream":
        # RTSP over TCP: over UDP a busy machine loses packets and FFmpeg's stream probe waits for more,
        # inside OpenCV's open, which holds a lock every other camera's open waits on. A user's own
        # OPENCV_FFMPEG_CAPTURE_OPTIONS wins.
        os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
        ms = int(STREAM_TIMEOUT_S * 1000)
        cap = cv2.VideoCapture(cam.source, cv2.CAP_FFMPEG,
                               [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
    else:
        cap = cv2.VideoCapture(cam.source)
    if not cap.isOpened():
        cap.release()
        return None
    return cap


class FrameReader:
    """Read one camera in a background thread, keeping only its latest frame (see module doc).

    Args:
        cam: the camera's configuration (source, kind, loop, backoff).
        on_status: called from the reader thread with ``("connected" | "lost" | "restored" |
            "unavailable", detail)``; ``detail`` is the gap in seconds for ``"restored"``, the
            reason otherwise.
        opener: how to open the source (tests replace it); returns a capture or ``None``.
    """

    def __init__(self, cam: CameraConfig, on_status: Callable[[str, object], None] | None = None,
                 opener: Callable[[CameraConfig], object] = _open) -> None:
        self.cam = cam
        self.on_status = on_status or (lambda kind, detail: None)
        self.opener = opener
        self.connected = False
        self.ever_connected = False
        self.frames_read = 0
        self.frames_taken = 0
        self.reconnects = 0
        self.source_fps: float | None = None
        self.width: int | None = None
        self.height: int | None = None
        self.last_error: str | None = None
        self._latest: Captured | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name=f"maskwatch-read-{cam.name}", daemon=True)

    @property
    def dropped(self) -> int:
        """Frames decoded but never taken (a newer frame replaced them)."""
        with self._cond:
            pending = 1 if self._latest is not None else 0
            return max(0, self.frames_read - self.frames_taken - pending)

    def start(self) -> FrameReader:
        self._thread.start()
        return self

    def latest(self, after_seq: int, timeout: float) -> Captured | None:
        """The newest frame with ``seq > after_seq``, waiting up to ``timeout`` s; ``None`` if none came."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._latest is None or self._latest.seq <= after_seq:
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    return None
                self._cond.wait(left)
            got, self._latest = self._latest, None
            self.frames_taken += 1
            return got

    def close(self, timeout: float = 10.0) -> None:
        """Stop reading and release the source."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # ------------------------------------------------------------------ the reader thread
    def _work(self) -> None:
        delay = self.cam.reconnect_min_s
        lost_at: float | None = None
        reported_unavailable = False
        while not self._stop.is_set():
            cap = self.opener(self.cam)
            if cap is None:
                self.last_error = f"cannot open {self.cam.source}"
                if not self.ever_connected and not reported_unavailable:
                    log.warning("camera %s: %s; retrying in the background", self.cam.name, self.last_error)
                    self.on_status("unavailable", self.last_error)
                    reported_unavailable = True
                if self._stop.wait(delay):
                    break
                delay = min(delay * 2, self.cam.reconnect_max_s)
                continue
            delay = self.cam.reconnect_min_s
            self.connected = True
            if lost_at is not None:
                self.reconnects += 1
                gap = time.monotonic() - lost_at
                log.warning("camera %s: stream restored after %.1f s", self.cam.name, gap)
                self.on_status("restored", gap)
                lost_at = None
            else:
                self.on_status("connected", None)
            self.ever_connected = True
            self.last_error = None
            try:
                reason = self._read_all(cap)
            finally:
                cap.release()
                self.connected = False
            if self._stop.is_set():
                break
            self.last_error = reason
            lost_at = time.monotonic()
            log.warning("camera %s: stream lost (%s); reconnecting", self.cam.name, reason)
            self.on_status("lost", reason)
            if self._stop.wait(delay):
                break
            delay = min(delay * 2, self.cam.reconnect_max_s)

    def _read_all(self, cap) -> str:
        """Read until the source fails or we are closed; returns why it ended."""
        import cv2

        fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
        self.source_fps = fps if 0 < fps < 1000 else None
        paced = self.cam.kind == "file"
        period = 1.0 / (self.source_fps or 25.0)
        t_start = time.monotonic()
        n_since_start = 0
        while not self._stop.is_set():
            ok, image = cap.read()
            if not ok or image is None:
                if self.cam.kind == "file" and self.cam.loop and n_since_start > 0:
                    cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    ok, image = cap.read()
                    if not ok or image is None:  # a container that cannot seek: opened again by the caller
                        return "the file could not be rewound"
                    t_start, n_since_start = time.monotonic(), 0
                else:
                    return "end of file" if self.cam.kind == "file" else "no frame arrived"
            if paced:  # a file plays in real time, as a camera would deliver it
                wait = t_start + n_since_start * period - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    break
                if wait < -1.0:  # fell behind (machine busy): skip ahead instead of catching up
                    t_start = time.monotonic() - n_since_start * period
            n_since_start += 1
            if image.ndim == 2:
                image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
            self.height, self.width = image.shape[:2]
            with self._cond:
                self.frames_read += 1
                self._latest = Captured(image, self.frames_read, time.monotonic())
                self._cond.notify_all()
        return "closed"
