"""The one place where a face becomes classifier input.

Training, evaluation and inference all call :func:`crop_face` and :func:`to_model_input`, so a face
seen at inference time is cut and scaled exactly like the faces the classifier learnt from. Pixel
scaling (MobileNetV2's ``[-1, 1]``) is a layer inside the model itself, so it cannot be forgotten:
model input is RGB ``float32`` in ``[0, 255]``, shape ``(N, size, size, 3)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

#: Margin added around a detected face box, as a fraction of its width/height on each side.
from maskwatch.defaults import MARGIN as DEFAULT_MARGIN  # noqa: E402


def crop_face(image: np.ndarray, box: Sequence[float], margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """Cut the face ``box`` (x1, y1, x2, y2) out of ``image`` with ``margin`` around it, as a square.

    The crop is made square around the box centre (the classifier sees undistorted faces) and is
    clipped to the image; a box that falls wholly outside gives a 1x1 crop rather than failing.
    """
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    side = max(x2 - x1, y2 - y1) * (1 + 2 * margin)
    half = side / 2
    ix1 = int(np.clip(round(cx - half), 0, w - 1))
    iy1 = int(np.clip(round(cy - half), 0, h - 1))
    ix2 = int(np.clip(round(cx + half), ix1 + 1, w))
    iy2 = int(np.clip(round(cy + half), iy1 + 1, h))
    return image[iy1:iy2, ix1:ix2]


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """Resize to ``size x size`` with the interpolation suited to the direction (area down, linear up)."""
    h, w = image.shape[:2]
    interp = cv2.INTER_AREA if h * w > size * size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interp)


def to_model_input(crops_bgr: Sequence[np.ndarray], size: int) -> np.ndarray:
    """Stack BGR crops into the model's input: RGB ``float32`` ``(N, size, size, 3)`` in ``[0, 255]``."""
    batch = np.empty((len(crops_bgr), size, size, 3), dtype=np.float32)
    for i, crop in enumerate(crops_bgr):
        batch[i] = resize_square(crop, size)[:, :, ::-1]
    return batch
