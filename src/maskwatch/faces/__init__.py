"""Face detection: find every face box in a BGR image."""

from maskwatch.faces.detector import (
    FaceBoxes,
    FaceDetector,
    YuFaceDetector,
    YuNetDetector,
    create_face_detector,
)
from maskwatch.faces.models import YUNET_FILENAME, YUNET_SHA256, fetch_yunet, find_yunet

__all__ = [
    "FaceBoxes", "FaceDetector", "YuFaceDetector", "YuNetDetector", "create_face_detector",
    "YUNET_FILENAME", "YUNET_SHA256", "find_yunet", "fetch_yunet",
]
