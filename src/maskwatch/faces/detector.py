"""Face detectors behind one small interface: ``detect(image_bgr) -> FaceBoxes``.

This module gathers the face stage's public names in one import; the code lives in
:mod:`maskwatch.faces.base` (types, settings, base class), :mod:`maskwatch.faces.yunet` (YuNet through
OpenCV or yuface), :mod:`maskwatch.faces.centerface`, :mod:`maskwatch.faces.fusion`, and
:mod:`maskwatch.faces.registry` (backend names -> builders; :func:`create_face_detector`).
"""

from __future__ import annotations

from maskwatch.cvutil import opencv_silent, quiet_opencv
from maskwatch.faces.base import BaseDetector, DetectorSettings, FaceBoxes, FaceDetector, _BaseDetector, calibrate_boxes
from maskwatch.faces.registry import backend_names, create_face_detector, register_backend
from maskwatch.faces.yunet import YUFACE_OMP_THREADS, YuFaceDetector, YuNetDetector

_opencv_silent = opencv_silent


def __getattr__(name: str):
    if name == "DETECTOR_BACKENDS":  # the registry's names, as they are now
        return backend_names()
    raise AttributeError(name)


__all__ = ["BaseDetector", "DetectorSettings", "FaceBoxes", "FaceDetector", "YuFaceDetector", "YuNetDetector",
           "calibrate_boxes", "create_face_detector", "quiet_opencv", "register_backend", "backend_names",
           "YUFACE_OMP_THREADS", "_BaseDetector"]
