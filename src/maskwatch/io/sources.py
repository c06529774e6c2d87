"""Turn what a user typed (files, folders, globs, videos, camera indices, URLs) into frames.

:func:`resolve_sources` checks every argument up front, so a typo fails before any work starts;
:func:`iter_frames` decodes one source into :class:`Frame` objects.
"""

from __future__ import annotations

import glob
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maskwatch.errors import ImageTooLargeError, InputError, MaskwatchError
from maskwatch.io.images import DEFAULT_MAX_PIXELS, decode_image, is_image_path
from maskwatch.results import SourceInfo

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"})
STREAM_PREFIXES = ("rtsp://", "rtmp://", "http://", "https://", "udp://", "tcp://")


@dataclass(frozen=True)
class Source:
    kind: str  # "image" | "video" | "camera" | "stream"
    target: str

    @property
    def name(self) -> str:
        return f"camera:{self.target}" if self.kind == "camera" else self.target


@dataclass
class Frame:
    image: np.ndarray
    source: str
    index: int | None
    time_s: float | None
    decode_ms: float
    info: SourceInfo | None = None


#: ``cam:0`` names camera 0 even where a file called ``0`` exists.
CAMERA_PREFIX = "cam:"
#: Highest camera index accepted (OpenCV's backends take small indices; larger numbers are typos).
MAX_CAMERA_INDEX = 9999


def _camera_index(spec: str) -> str | None:
    """The camera index named by ``spec`` (``"0"``, ``"cam:1"``), ``None`` when it names none.

    Only ASCII digits count ("²" is a digit to Python but no camera); an index over
    :data:`MAX_CAMERA_INDEX` is refused with a clear message.
    """
    text = spec[len(CAMERA_PREFIX):] if spec.lower().startswith(CAMERA_PREFIX) else spec
    if not (text.isascii() and text.isdigit()):
        if spec.lower().startswith(CAMERA_PREFIX):
            raise InputError(f"{spec}: expected a camera index after 'cam:' (cam:0, cam:1, ...).")
        return None
    if int(text) > MAX_CAMERA_INDEX:
        if spec.lower().startswith(CAMERA_PREFIX) or not Path(spec).exists():
            raise InputError(f"{spec}: camera index out of range; cameras are numbered 0..{MAX_CAMERA_INDEX} "
                             "(usually 0 or 1).")
        return None
    return str(int(text))


def _media_in(folder: Path) -> list[Path]:
    """Images and videos under ``folder``, sorted; an unreadable folder raises :class:`InputError`."""
    import os

    if not os.access(folder, os.R_OK | os.X_OK):
        raise InputError(f"{folder}: permission denied; this folder cannot be read (check its permissions).")
    found: list[Path] = []
    denied: list[str] = []
    for root, dirs, files in os.walk(folder, onerror=lambda e: denied.append(e.filename)):
        dirs.sort()
        for f in files:
            p = Path(root) / f
            if (is_image_path(p) or p.suffix.lower() in VIDEO_EXTENSIONS) and p.is_file():
                found.append(p)
    if denied and not found:
        raise InputError(f"{folder}: permission denied on {denied[0]}; no readable images or videos found.")
    for d in denied:
        log.warning("skipped %s: permission denied", d)
    return sorted(found)


def _kind_of(spec: str) -> str | None:
    """``"dir"``, ``"file"`` (a regular file) or ``None`` (nothing there); one clear error for what cannot be
    looked at (a folder on the way without permission) or read as media (a FIFO, socket or device: reading
    one would wait forever)."""
    import stat

    try:
        mode = Path(spec).stat().st_mode
    except PermissionError:
        raise InputError(f"{spec}: permission denied; a folder on the way cannot be read (check its "
                         "permissions).") from None
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise InputError(f"{spec}: cannot be read ({exc.strerror or exc}).") from None
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    what = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
    raise InputError(f"{spec}: is {what}, not a regular file; maskwatch reads image and video files (save the "
                     "data to a file first, or give a camera index or stream URL).")


def _from_path(p: Path) -> Source:
    if p.suffix.lower() in VIDEO_EXTENSIONS:
        return Source("video", str(p))
    return Source("image", str(p))


def resolve_sources(specs: Sequence[str | Path | Source]) -> list[Source]:
    """Expand and check source arguments; raises :class:`InputError` naming the first bad one.

    Already resolved :class:`Source` objects pass through unchanged.
    """
    if not specs:
        raise InputError("no source given; pass an image, folder, glob, video file, camera index or URL.")
    out: list[Source] = []
    for spec in specs:
        if isinstance(spec, Source):
            out.append(spec)
            continue
        spec = str(spec)
        camera = _camera_index(spec)
        if spec.lower().startswith(STREAM_PREFIXES):
            out.append(Source("stream", spec))
            continue
        kind = None if spec.lower().startswith(CAMERA_PREFIX) else _kind_of(spec)
        if camera is not None and kind is None:
            # A bare number is a camera unless a file or folder of that name exists here ("2024/");
            # "cam:N" is always a camera.
            out.append(Source("camera", camera))
        elif kind == "dir":
            media = _media_in(Path(spec))
            if not media:
                raise InputError(f"{spec}: folder has no images or videos (.jpg, .png, .mp4, ...).")
            out.extend(_from_path(p) for p in media)
        elif kind == "file":
            out.append(_from_path(Path(spec)))
        elif glob.has_magic(spec):
            matches = sorted(Path(m) for m in glob.glob(spec, recursive=True))
            media = [m for m in matches if m.is_file() and (is_image_path(m) or m.suffix.lower() in VIDEO_EXTENSIONS)]
            if not media:
                raise InputError(f"{spec}: pattern matches no images or videos.")
            out.extend(_from_path(p) for p in media)
        else:
            raise InputError(f"{spec}: no such file or folder; expected an image, folder, glob, video, "
                             "camera index (0 or cam:0) or stream URL.")
    return out


def open_capture(source: Source):
    """Open a video file, camera or stream with OpenCV, or raise :class:`InputError`."""
    import os

    import cv2

    from maskwatch.cvutil import quiet_opencv

    quiet_opencv()
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg's own notes; we report problems ourselves
    target: int | str = int(source.target) if source.kind == "camera" else source.target
    cap = cv2.VideoCapture(target)
    if not cap.isOpened():
        cap.release()
        if source.kind == "camera":
            raise InputError(f"camera {source.target} cannot be opened (no camera with that index, or it is "
                             "in use); try another index.")
        if source.kind == "stream":
            raise InputError(f"{source.target}: stream cannot be opened; check the URL and the network.")
        raise InputError(f"{source.target}: not a playable video (corrupt, truncated or unsupported codec).")
    return cap


def iter_video(source: Source, vid_stride: int = 1, max_pixels: int | None = None, start: int = 0,
               end: int | None = None) -> Iterator[Frame]:
    """Decode frames of a video, camera or stream; every ``vid_stride``-th frame is yielded.

    ``start``/``end``: only frames ``[start, end)`` (the frames before ``start`` are grabbed, not
    converted, so frame numbers are exact: OpenCV's seek lands a frame early on some files).
    ``max_pixels``: a video whose frame size (from the stream header) is over it is refused before any
    frame is decoded; a frame that turns out larger is refused too.
    """
    cap = open_capture(source)
    import cv2

    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    expected = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if source.kind == "video" else 0
    if not (0 < fps < 1000):
        fps = 0.0
    if max_pixels is not None:
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        if w * h > max_pixels:
            cap.release()
            raise _frames_too_large(source, w, h, max_pixels)
    try:
        rotation = int(cap.get(cv2.CAP_PROP_ORIENTATION_META) or 0)
    except (AttributeError, cv2.error):  # older OpenCV builds
        rotation = 0
    info: SourceInfo | None = None
    index = 0
    try:
        while end is None or index < end:
            t0 = time.perf_counter()
            ok = cap.grab()
            if not ok:
                break
            if index >= start and index % vid_stride == 0:
                ok, image = cap.retrieve()
                if not ok or image is None:
                    break
                if max_pixels is not None and image.shape[0] * image.shape[1] > max_pixels:
                    raise _frames_too_large(source, image.shape[1], image.shape[0], max_pixels)
                if image.ndim == 2:
                    image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
                ms = (time.perf_counter() - t0) * 1e3
                t = index / fps if fps and source.kind == "video" else None
                if info is None:
                    info = SourceInfo(source.kind, source.name, image.shape[1], image.shape[0], fps or None,
                                      expected or None, rotation, vid_stride)
                yield Frame(image, source.name, index, t, ms, info)
            index += 1
    finally:
        cap.release()
    if index == 0 and source.kind == "video":
        raise InputError(f"{source.target}: no frame could be decoded (corrupt, truncated or unsupported codec).")
    if end is not None and index < end:  # a chunk that should have reached `end`
        raise InputError(f"{source.target}: video ended after {index} of {expected or end} frames; the file is "
                         "truncated or corrupt (results cover the decoded frames only).")
    # Containers may misstate their length by a frame or two; a large shortfall is a cut-off file.
    if end is None and expected and index < expected - max(2, expected // 50):
        raise InputError(f"{source.target}: video ended after {index} of {expected} frames; the file is truncated "
                         "or corrupt (results cover the decoded frames only).")


def _frames_too_large(source: Source, w: int, h: int, max_pixels: int) -> ImageTooLargeError:
    return ImageTooLargeError(f"{source.name}: video frames of {w}x{h} pixels are over the limit of {max_pixels:,} "
                              "pixels per frame; scale the video down first.")


def iter_frames(
    source: Source,
    vid_stride: int = 1,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    on_error: Callable[[MaskwatchError], None] | None = None,
    start: int = 0,
    end: int | None = None,
) -> Iterator[Frame]:
    """Frames of one source. A bad still image raises, or goes to ``on_error`` when one is given."""
    if vid_stride < 1:
        raise InputError(f"video stride must be >= 1, got {vid_stride}")
    if source.kind == "image":
        t0 = time.perf_counter()
        try:
            image = decode_image(source.target, max_pixels=max_pixels)
        except MaskwatchError as exc:
            if on_error is None:
                raise
            on_error(exc)
            return
        info = SourceInfo("image", source.target, image.shape[1], image.shape[0])
        yield Frame(image, source.target, None, None, (time.perf_counter() - t0) * 1e3, info)
        return
    try:
        yield from iter_video(source, vid_stride, max_pixels=max_pixels, start=start, end=end)
    except MaskwatchError as exc:
        if on_error is None:
            raise
        on_error(exc)
