"""Small OpenCV helpers shared by every layer (no maskwatch imports): keep OpenCV's native log quiet."""

from __future__ import annotations

import contextlib

import cv2


def quiet_opencv() -> None:
    """Show OpenCV's own errors only: its DNN warnings are not actionable for users."""
    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:  # pragma: no cover - builds without the logging module
        pass


@contextlib.contextmanager
def opencv_silent():
    """OpenCV's native log off for the duration (errors still raise ``cv2.error``)."""
    try:
        previous = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    except AttributeError:  # pragma: no cover - builds without the logging module
        yield
        return
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(previous)

