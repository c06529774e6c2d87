"""Where results go: JSON Lines, CSV, annotated images and videos, a live window.

Writers never overwrite: a path that exists is refused (JSON/CSV) or given a new name (media).
``-`` means standard output for JSON Lines and CSV.
"""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path
from typing import TextIO

import cv2

from maskwatch.annotate import BoxAnnotator
from maskwatch.errors import InputError
from maskwatch.results import CSV_COLUMNS, CropResult, FrameResult
from maskwatch.runs import output_error, unique_path


def open_output(path: str | Path) -> tuple[TextIO, bool]:
    """Open a new text output (``-`` = stdout); returns the file and whether the caller must close it.

    An existing file is refused, never overwritten."""
    if str(path) == "-":
        return sys.stdout, False
    p = Path(path)
    if p.exists() or p.is_symlink():
        raise InputError(f"{p}: already exists; choose a new output file (outputs never overwrite).")
    try:
        if p.parent and not p.parent.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
        # "x": created here and now, so a file that appeared meanwhile is still never overwritten.
        return open(p, "x", encoding="utf-8", newline=""), True
    except FileExistsError as exc:
        raise InputError(f"{p}: already exists; choose a new output file (outputs never overwrite).") from exc
    except OSError as exc:
        raise output_error(p, exc) from exc


class JsonlWriter:
    """One JSON object per line per result (the public contract in :mod:`maskwatch.results`)."""

    def __init__(self, path: str | Path) -> None:
        self._fh, self._owned = open_output(path)

    def write(self, result: FrameResult | CropResult) -> None:
        self._fh.write(result.to_json() + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._owned:
            self._fh.close()


class CsvWriter:
    """One CSV row per face (:data:`~maskwatch.results.CSV_COLUMNS`); crops get source,label,score,probs."""

    def __init__(self, path: str | Path, crops: bool = False) -> None:
        self._fh, self._owned = open_output(path)
        self._csv = csv.writer(self._fh)
        self._crops = crops
        self._header_done = False

    def write(self, result: FrameResult | CropResult) -> None:
        if isinstance(result, CropResult):
            if not self._header_done:
                self._csv.writerow(["source", "label", "score", *(f"p_{c}" for c in result.probs)])
                self._header_done = True
            self._csv.writerow([result.source, result.label, round(result.score, 4),
                                *(round(v, 4) for v in result.probs.values())])
        else:
            if not self._header_done:
                self._csv.writerow(CSV_COLUMNS)
                self._header_done = True
            self._csv.writerows(result.csv_rows())
        self._fh.flush()

    def close(self) -> None:
        if self._owned:
            self._fh.close()


class MediaSaver:
    """Save annotated images (same name, into ``folder``) and annotated videos (``<name>.mp4``)."""

    def __init__(self, folder: str | Path, annotator: BoxAnnotator | None = None) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.annotator = annotator or BoxAnnotator()
        self._videos: dict[str, tuple[cv2.VideoWriter, Path]] = {}
        self.saved: list[Path] = []

    def _name(self, source: str) -> str:
        if source.startswith("camera:"):
            return "camera" + source.split(":", 1)[1]
        name = Path(source.split("?")[0]).name or "stream"
        return name

    def write(self, result: FrameResult, fps: float = 25.0) -> None:
        if result.image is None:
            raise ValueError("MediaSaver needs results made with keep_image=True")
        frame = self.annotator.annotate(result.image, result.faces, counts=result.frame is not None)
        if result.frame is None:
            target = unique_path(self.folder / self._name(result.source))
            if target.suffix.lower() not in (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"):
                target = unique_path(target.with_suffix(".png"))
            if not cv2.imwrite(str(target), frame):
                target = unique_path(target.with_suffix(".png"))
                cv2.imwrite(str(target), frame)
            self.saved.append(target)
            return
        entry = self._videos.get(result.source)
        if entry is None:
            for old, (writer, _) in list(self._videos.items()):  # one open video at a time
                writer.release()
                del self._videos[old]
            target = unique_path(self.folder / (Path(self._name(result.source)).stem + ".mp4"))
            writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                     (result.width, result.height))
            entry = self._videos[result.source] = (writer, target)
            self.saved.append(target)
        entry[0].write(frame)

    def close(self) -> None:
        for writer, _ in self._videos.values():
            writer.release()
        self._videos.clear()


class LiveWindow:
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

    def show(self, result: FrameResult) -> bool:
        """Show one frame; returns ``False`` when the user asked to stop."""
        cv2.imshow(self.title, self.annotator.annotate(result.image, result.faces, counts=True))
        key = cv2.waitKey(1) & 0xFF
        return key not in (ord("q"), 27)

    def close(self) -> None:
        try:
            cv2.destroyWindow(self.title)
        except cv2.error:
            pass


def make_writer(path: str | Path, kind: str, crops: bool = False):
    """A JSON Lines (``"json"``) or CSV (``"csv"``) writer."""
    return JsonlWriter(path) if kind == "json" else CsvWriter(path, crops=crops)


__all__ = ["CsvWriter", "JsonlWriter", "LiveWindow", "MediaSaver", "make_writer", "open_output"]
