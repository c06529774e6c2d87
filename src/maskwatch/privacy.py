"""Privacy: blur faces in saved images and videos, keep face thumbnails only when asked.

``blur`` names which faces are blurred: ``"all"``, ``"without_mask"``, ``"with_mask"`` or ``"none"``.
Blurring is strong (the box and a margin around it shrunk to 2-6 pixels across, enlarged back and
smoothed), so a face cannot be recognised, while the box and label drawn afterwards still show what was found.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from maskwatch.errors import InputError
from maskwatch.results import Face

BLUR_CHOICES = ("none", "all", "without_mask", "with_mask")


def check_blur(blur: str) -> str:
    """Return ``blur`` if it is one of :data:`BLUR_CHOICES`, else raise :class:`InputError`."""
    if blur not in BLUR_CHOICES:
        raise InputError(f"blur must be one of {', '.join(BLUR_CHOICES)}; got {blur!r}")
    return blur


def should_blur(face: Face, blur: str) -> bool:
    if blur == "all":
        return True
    if blur == "none":
        return False
    return face.label == blur


def blur_faces(image_bgr: np.ndarray, faces: Sequence[Face], blur: str = "none", margin: float = 0.15) -> np.ndarray:
    """A copy of ``image_bgr`` with the chosen faces pixelated (``image_bgr`` itself when none is)."""
    chosen = [f for f in faces if should_blur(f, blur)]
    if not chosen:
        return image_bgr
    out = image_bgr.copy()
    h, w = out.shape[:2]
    for f in chosen:
        x1, y1, x2, y2 = f.box
        mx, my = int((x2 - x1) * margin), int((y2 - y1) * margin)
        x1, y1, x2, y2 = max(0, x1 - mx), max(0, y1 - my), min(w, x2 + mx), min(h, y2 + my)
        if x2 - x1 < 2 or y2 - y1 < 2:
            continue
        roi = out[y1:y2, x1:x2]
        cells = int(np.clip((x2 - x1) // 8, 2, 6))  # small faces: fewer cells, so as unrecognisable
        small = cv2.resize(roi, (cells, max(2, cells * (y2 - y1) // max(x2 - x1, 1))), interpolation=cv2.INTER_AREA)
        smooth = cv2.resize(small, (x2 - x1, y2 - y1), interpolation=cv2.INTER_LINEAR)
        out[y1:y2, x1:x2] = cv2.GaussianBlur(smooth, (0, 0), max(1.5, (x2 - x1) / 10))
    return out
