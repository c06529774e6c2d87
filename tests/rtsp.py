"""A real RTSP server on 127.0.0.1 for tests and benchmarks (GStreamer's gst-rtsp-server).

The server runs as a separate process under the system Python, where Debian's ``python3-gi``
lives (the venv cannot import it): see ``tests/rtsp_server.py``. It serves frames of a shared clip
(JPEG files written here once), looped, as H.264 over RTSP. :class:`RtspServer` starts and stops it,
and can be stopped and started again on the same port to prove that readers reconnect.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SYSTEM_PYTHON = os.environ.get("MASKWATCH_GI_PYTHON", "/usr/bin/python3")
RTSP_INSTALL = ("apt-get install -y python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp "
                "gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly")
_CHECK = """
import gi
gi.require_version("Gst", "1.0"); gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer
Gst.init(None)
needed = ("multifilesrc", "jpegdec", "videoconvert", "x264enc", "rtph264pay")
missing = [e for e in needed if Gst.ElementFactory.find(e) is None]
print(" ".join(missing))
"""


def rtsp_missing() -> str | None:
    """Why no RTSP server can run here (with the install command), or ``None`` when it can."""
    if not Path(SYSTEM_PYTHON).is_file():
        return f"{SYSTEM_PYTHON} is missing: {RTSP_INSTALL}"
    try:
        proc = subprocess.run([SYSTEM_PYTHON, "-c", _CHECK], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"GStreamer check failed ({exc}): {RTSP_INSTALL}"
    if proc.returncode != 0:
        return f"GStreamer's RTSP server is not importable by {SYSTEM_PYTHON}: {RTSP_INSTALL}"
    if proc.stdout.strip():
        return f"GStreamer elements missing ({proc.stdout.strip()}): {RTSP_INSTALL}"
    return None


def write_frames(video: Path, out: Path, max_frames: int = 250) -> Path:
    """The first ``max_frames`` frames of ``video`` as ``out/00000.jpg`` ... (the server's input)."""
    import cv2

    out.mkdir(parents=True, exist_ok=True)
    cap = cv2.VideoCapture(str(video))
    n = 0
    try:
        while n < max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            cv2.imwrite(str(out / f"{n:05d}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 85])
            n += 1
    finally:
        cap.release()
    if n == 0:
        raise RuntimeError(f"{video}: no frame decoded")
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RtspServer:
    """``rtsp://127.0.0.1:PORT/cam`` from a folder of JPEG frames; ``start`` / ``stop`` as often as needed."""

    def __init__(self, frames: Path, port: int | None = None, fps: int = 25) -> None:
        self.frames = Path(frames)
        self.port = port or free_port()
        self.fps = fps
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/cam"

    def start(self, timeout: float = 30.0) -> RtspServer:
        self.proc = subprocess.Popen(
            [SYSTEM_PYTHON, str(HERE / "rtsp_server.py"), str(self.port), str(self.frames), str(self.fps)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + timeout
        line = self.proc.stdout.readline()  # "READY" once listening
        if line.strip() != "READY":
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""
            self.stop()
            raise RuntimeError(f"the RTSP server did not start: {line!r} {err}")
        while time.monotonic() < deadline:  # listening?
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("the RTSP server does not accept connections")

    def stop(self, kill: bool = True) -> None:
        """Stop the server (``kill``: SIGKILL, as a crash or power cut; else SIGTERM)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill() if kill else self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        self.proc = None

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
