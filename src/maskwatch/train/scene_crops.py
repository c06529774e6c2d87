"""Face crops cut from a scene dataset's annotated boxes (real street, transit and crowd faces), as
classifier training and validation data beside a crop dataset.

Each annotated face becomes one crop, cut exactly as inference cuts a detected face
(:func:`~maskwatch.preprocess.crop_face` with the model's margin) and sized to the model input.
Faces narrower than ``min_face`` pixels are skipped (the detector drops them too).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from maskwatch.errors import DataError
from maskwatch.io.images import decode_image
from maskwatch.preprocess import crop_face, to_model_input

log = logging.getLogger(__name__)


def scene_parts(root: str | Path, split_dir: str | Path, parts: Sequence[str] = ("train", "val")) -> dict[str, list]:
    """The scene images of each listed part (``split_dir/<part>.txt``, see
    :func:`~maskwatch.evaluate.scenes.read_scene_list`)."""
    from maskwatch.evaluate.scenes import load_scenes, read_scene_list, select_scenes

    root, split_dir = Path(root), Path(split_dir)
    images = load_scenes(root)
    out = {}
    for part in parts:
        f = split_dir / f"{part}.txt"
        if not f.is_file():
            raise DataError(f"{f}: scene split list not found; expected {', '.join(p + '.txt' for p in parts)} "
                            f"in {split_dir} (benchmarks/split_scenes.py writes them).")
        out[part] = select_scenes(images, root, read_scene_list(f), str(f))
    return out


def load_scene_crops(images: Sequence, classes: Sequence[str], size: int, margin: float, min_face: int = 8,
                     desc: str = "scene crops", progress: bool = True
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[str, int]]]:
    """Crops ``(N, size, size, 3)`` uint8 RGB, labels (indices into ``classes``), face widths in
    pixels, and ``(image path, box index)`` per crop. Faces of a class not in ``classes`` are skipped."""
    xs, ys, widths, where = [], [], [], []
    skipped: Counter = Counter()
    for im in tqdm(images, desc=desc, unit="img", disable=None if progress else True, leave=False):
        image = decode_image(im.path)
        for j, (box, label) in enumerate(zip(im.boxes, im.labels)):
            w = float(box[2] - box[0])
            if label not in classes:
                skipped[f"class {label}"] += 1
                continue
            if w < min_face or box[3] - box[1] < min_face:
                skipped["smaller than min_face"] += 1
                continue
            xs.append(to_model_input([crop_face(image, box, margin)], size)[0].astype(np.uint8))
            ys.append(list(classes).index(label))
            widths.append(w)
            where.append((str(im.path), j))
    if skipped:
        log.info("%s: skipped %s", desc, dict(skipped))
    x = np.stack(xs) if xs else np.zeros((0, size, size, 3), np.uint8)
    return x, np.asarray(ys, np.int64), np.asarray(widths, np.float32), where
