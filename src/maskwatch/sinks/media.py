"""Media sinks: annotated images and videos in a folder, and a live window.

Annotated videos are H.264 MP4 (PyAV's libx264; they play in every browser) at the source's frame
rate divided by the stride; without PyAV, VP8 WebM through OpenCV. Media files never overwrite: a
name that exists gets a new one.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import cv2

from maskwatch.annotate import BoxAnnotator
from maskwatch.errors import InputError
from maskwatch.results import FrameResult
from maskwatch.runs import unique_path
from maskwatch.sinks.base import Sink, StopRun

log = logging.getLogger(__name__)

#: Frame rate of saved videos whose source does not say (cameras, some streams).
FALLBACK_FPS = 25.0


class VideoWriter:
    """An annotated video file that browsers play: H.264 in MP4 through PyAV (libx264), or VP8 in
    WebM through OpenCV when PyAV is missing. ``path``'s suffix is replaced to match (see ``.path``).

    Odd frame sizes are padded by one pixel (H.264 needs even sizes). :meth:`close` finishes the file
    (the MP4 index is written then: a file not closed does not play).
    """

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int]) -> None:
        self.width, self.height = size
        self._pad = (self.height % 2, self.width % 2)
        fps = float(fps) if fps and fps > 0 else FALLBACK_FPS
        try:
            import av
        except ImportError:
            av = None
        if av is not None:
            from fractions import Fraction

            self.path = unique_path(Path(path).with_suffix(".mp4"))
            self._container = av.open(str(self.path), "w", options={"movflags": "+faststart"})
            rate = Fraction(fps).limit_denominator(1001)
            self._stream = self._container.add_stream("libx264", rate=rate)
            self._stream.width = self.width + self._pad[1]
            self._stream.height = self.height + self._pad[0]
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = {"preset": "veryfast", "crf": "23"}
            self._stream.thread_count = 1
            self._cv = None
        else:
            log.warning("PyAV is not installed: saving WebM (VP8) through OpenCV; pip install av for MP4")
            self.path = unique_path(Path(path).with_suffix(".webm"))
            self._container = None
            self._cv = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"VP80"), fps, size)
            if not self._cv.isOpened():
                raise InputError(f"{self.path}: cannot write a video here (no VP8 encoder in this OpenCV and "
                                 "no PyAV); pip install av.")
        self.frames = 0

    def write(self, frame_bgr) -> None:
        if self._cv is not None:
            self._cv.write(frame_bgr)
        else:
            import av

            if any(self._pad):
                frame_bgr = cv2.copyMakeBorder(frame_bgr, 0, self._pad[0], 0, self._pad[1], cv2.BORDER_REPLICATE)
            for packet in self._stream.encode(av.VideoFrame.from_ndarray(frame_bgr, format="bgr24")):
                self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self._cv is not None:
            self._cv.release()
            self._cv = None
        elif self._container is not None:
            try:
                for packet in self._stream.encode():
                    self._container.mux(packet)
            finally:
                self._container.close()
                self._container = None


class MediaSaver(Sink):
    """Save annotated images (same name, into ``folder``) and annotated videos (``<name>.mp4``).

    Videos keep the source's frame rate divided by the stride (from the result's
    :class:`~maskwatch.results.SourceInfo`); ``blur`` (``"all"``, ``"without_mask"``, ``"with_mask"``,
    ``"none"``) blurs those faces before the boxes are drawn.
    """

    needs_image = True

    def __init__(self, folder: str | Path, annotator: BoxAnnotator | None = None, blur: str = "none") -> None:
        from maskwatch.privacy import check_blur

        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.annotator = annotator or BoxAnnotator()
        self.blur = check_blur(blur)
        self._videos: dict[str, VideoWriter] = {}
        self.saved: list[Path] = []

    def _name(self, source: str) -> str:
        if source.startswith("camera:"):
            return "camera" + source.split(":", 1)[1]
        name = Path(source.split("?")[0]).name or "stream"
        return name

    def write(self, result: FrameResult, fps: float | None = None) -> None:
        from maskwatch.privacy import blur_faces

        if result.image is None:
            raise ValueError("MediaSaver needs results made with keep_image=True")
        image = blur_faces(result.image, result.faces, self.blur)
        frame = self.annotator.annotate(image, result.faces, counts=result.frame is not None)
        if result.frame is None:
            target = unique_path(self.folder / self._name(result.source))
            if target.suffix.lower() not in (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"):
                target = unique_path(target.with_suffix(".png"))
            if not cv2.imwrite(str(target), frame):
                target = unique_path(target.with_suffix(".png"))
                cv2.imwrite(str(target), frame)
            self.saved.append(target)
            return
        writer = self._videos.get(result.source)
        if writer is None:
            for old in list(self._videos):  # one open video at a time
                self._videos.pop(old).close()
            if fps is None:
                info = result.source_info
                fps = info.output_fps if info is not None else None
            writer = VideoWriter(self.folder / (Path(self._name(result.source)).stem + ".mp4"),
                                 fps or FALLBACK_FPS, (result.width, result.height))
            self._videos[result.source] = writer
            self.saved.append(writer.path)
        writer.write(frame)

    def close(self) -> None:
        errors = []
        for writer in self._videos.values():
            try:
                writer.close()
            except Exception as exc:  # noqa: BLE001 - close the others, then report
                errors.append(exc)
        self._videos.clear()
        if errors:
            raise errors[0]


class LiveWindow(Sink):
    """An OpenCV window showing annotated frames; ``q`` or Esc stops. Needs a display and GUI OpenCV."""

    def __init__(self, title: str = "maskwatch") -> None:
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise InputError("--show needs a display, and none is available (DISPLAY is not set); "
                             "use --save to write annotated files instead.")
        self.title = title
        self.annotator = BoxAnnotator()
        try:
            cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)
        except cv2.error as exc:
            raise InputError("--show needs OpenCV with GUI support: pip uninstall opencv-python-headless && "
                             "pip install opencv-python; or use --save instead.") from exc

    needs_image = True

    def show(self, result: FrameResult) -> bool:
        """Show one frame; returns ``False`` when the user asked to stop."""
        cv2.imshow(self.title, self.annotator.annotate(result.image, result.faces, counts=True))
        key = cv2.waitKey(1) & 0xFF
        return key not in (ord("q"), 27)

    def write(self, result: FrameResult) -> None:
        """Sink protocol: show the frame; ``q`` or Esc ends the run (:class:`~maskwatch.sinks.StopRun`)."""
        if not self.show(result):
            raise StopRun("live window closed")

    def close(self) -> None:
        try:
            cv2.destroyWindow(self.title)
        except cv2.error:
            pass


__all__ = ["FALLBACK_FPS", "LiveWindow", "MediaSaver", "VideoWriter"]
