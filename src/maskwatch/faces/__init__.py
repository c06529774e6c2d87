"""Face detection: find every face box in a BGR image (backends in :mod:`maskwatch.faces.registry`)."""

from maskwatch.faces.base import BaseDetector, DetectorSettings, FaceBoxes, FaceDetector
from maskwatch.faces.models import YUNET_FILENAME, YUNET_SHA256, fetch_yunet, find_yunet
from maskwatch.faces.registry import backend_names, create_face_detector, register_backend
from maskwatch.faces.yunet import YuFaceDetector, YuNetDetector

__all__ = [
    "BaseDetector", "DetectorSettings", "FaceBoxes", "FaceDetector", "YuFaceDetector", "YuNetDetector",
    "create_face_detector", "register_backend", "backend_names",
    "YUNET_FILENAME", "YUNET_SHA256", "find_yunet", "fetch_yunet",
]
