"""maskwatch: find every face in photos, videos and cameras: ``with_mask``, ``without_mask``, ``mask_incorrect``
or ``uncertain``.

Quick use::

    import maskwatch
    det = maskwatch.MaskDetector()              # bundled classifier + YuNet/yuface face detector
    result = det.detect_file("street.jpg")      # -> maskwatch.FrameResult
    for face in result.faces:
        print(face.box, face.label, face.score)

Inference imports only NumPy, OpenCV, Pillow and ONNX Runtime (never TensorFlow); names below are
imported lazily so ``import maskwatch`` stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from maskwatch._version import __version__

_EXPORTS = {
    "MaskDetector": "maskwatch.engine",
    "MaskClassifier": "maskwatch.classify.model",
    "Face": "maskwatch.results",
    "FrameResult": "maskwatch.results",
    "CropResult": "maskwatch.results",
    "DetectorSettings": "maskwatch.faces.detector",
    "create_face_detector": "maskwatch.faces.detector",
    "decode_image": "maskwatch.io.images",
    "annotate": "maskwatch.annotate",
    "summarize": "maskwatch.analytics",
    "MaskwatchError": "maskwatch.errors",
    "SourceInfo": "maskwatch.results",
    "run": "maskwatch.runloop",
    "Sink": "maskwatch.runloop",
    "RunSummary": "maskwatch.runloop",
}

__all__ = [*_EXPORTS, "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from maskwatch.analytics import summarize
    from maskwatch.annotate import annotate
    from maskwatch.classify.model import MaskClassifier
    from maskwatch.engine import MaskDetector
    from maskwatch.errors import MaskwatchError
    from maskwatch.faces.detector import DetectorSettings, create_face_detector
    from maskwatch.io.images import decode_image
    from maskwatch.results import CropResult, Face, FrameResult, SourceInfo
    from maskwatch.runloop import RunSummary, Sink, run


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'maskwatch' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
