"""Crop datasets as model input: the same listing, split files, decoding, face cropping and resizing for
training and evaluation (both import it; neither imports the other for it)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from maskwatch.errors import DataError, MaskwatchError
from maskwatch.io.images import decode_image, is_image_path
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


def list_class_files(data_dir: Path, classes: Sequence[str]) -> dict[str, list[Path]]:
    """Image files per class folder; raises :class:`DataError` for a missing or empty class folder."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: no such folder; expected a folder with one sub-folder per class "
                        f"({', '.join(classes)}).")
    out = {}
    for c in classes:
        folder = data_dir / c
        if not folder.is_dir():
            present = sorted(p.name for p in data_dir.iterdir() if p.is_dir())
            raise DataError(f"{data_dir}: class folder '{c}/' is missing (found: {present or 'no folders'}); "
                            f"expected one folder per class: {', '.join(classes)}.")
        files = sorted(p for p in folder.rglob("*") if p.is_file() and is_image_path(p))
        if not files:
            raise DataError(f"{folder}: class folder has no images (.jpg, .png, ...); add images or remove the class.")
        out[c] = files
    return out


def load_split_file(path: Path, root: Path | None = None) -> list[tuple[str, Path]]:
    """Read a ``label<TAB>path`` list written by :func:`save_split`; relative paths are joined to ``root``."""
    out = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        if "\t" not in line:
            raise DataError(f"{path}:{n}: expected 'label<TAB>path', got {line[:60]!r}")
        label, p = line.split("\t", 1)
        q = Path(p)
        out.append((label, q if q.is_absolute() or root is None else Path(root) / q))
    return out
