"""Crop datasets as model input: the same decoding, face cropping and resizing for training and evaluation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from maskwatch.errors import MaskwatchError
from maskwatch.io.images import decode_image
from maskwatch.preprocess import to_model_input

#: Long side (px) at which dataset photos are searched for their face.
CROP_DETECT_SIZE = 640

Cropper = Callable[[np.ndarray], tuple[np.ndarray, bool]]


def face_cropper(crop_faces: bool, margin: float, detector_backend: str = "auto",
                 detector_model: str | Path | None = None) -> Cropper:
    """``image -> (crop, found)``: the largest face with ``margin`` when ``crop_faces``, else the image itself."""
    if not crop_faces:
        return lambda img: (img, False)
    from maskwatch.engine import crop_largest_face
    from maskwatch.faces import create_face_detector
    from maskwatch.faces.detector import DetectorSettings

    det = create_face_detector(detector_backend, detector_model, DetectorSettings(detect_size=CROP_DETECT_SIZE))
    return lambda img: crop_largest_face(img, det, margin)


def load_crops(items: Sequence[tuple[str, Path]], classes: Sequence[str], size: int, cropper: Cropper,
               desc: str = "load", progress: bool = True,
               on_error: Callable[[Path, MaskwatchError], None] | None = None,
               ) -> tuple[np.ndarray, np.ndarray, int, list[int]]:
    """Decode, crop and size ``(label, path)`` items once.

    Returns ``uint8`` RGB images ``(N, size, size, 3)`` (exact model input values), integer labels,
    the number of images in which a face was found and cut out, and the indices of ``items`` that were
    loaded. An unreadable image raises, or is skipped and handed to ``on_error`` when one is given.
    """
    x = np.empty((len(items), size, size, 3), np.uint8)
    y = np.empty(len(items), np.int64)
    cropped = 0
    kept: list[int] = []
    for i, (label, path) in enumerate(tqdm(items, desc=desc, unit="img", disable=None if progress else True,
                                           leave=False)):
        try:
            image = decode_image(path)
        except MaskwatchError as exc:
            if on_error is None:
                raise
            on_error(path, exc)
            continue
        img, found = cropper(image)
        cropped += found
        x[len(kept)] = to_model_input([img], size)[0].astype(np.uint8)
        y[len(kept)] = list(classes).index(label)
        kept.append(i)
    return x[:len(kept)], y[:len(kept)], cropped, kept
