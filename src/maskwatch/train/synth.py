"""Synthetic ``mask_incorrect`` faces: a mask template warped onto a real unmasked face, its top edge
*below the nose tip* (worn under the nose) or below the mouth (on the chin), as MaskedFace-Net did.

Training data only. A model is judged on real faces: the synthetic faces never enter a validation or
test part, and a model trained with them says so in its card (``data.synthetic``).

How a face is made (:func:`wear_mask_incorrectly`):

1. YuNet's five landmarks (eyes, nose tip, mouth corners) are found on the face, upscaled first when
   the face is small (:class:`LandmarkFinder`).
2. A template of ``masks.cfg`` (six anchor points: ``mask_a``/``mask_c`` top corners, ``mask_b`` top
   middle, ``mask_d``/``mask_f`` bottom corners, ``mask_e`` bottom middle) is chosen by how far the
   face is turned (frontal, or turned left / right when the nose sits near one eye).
3. Its anchors are mapped onto the face by a homography: ``mask_b`` at a random point between the nose
   tip and the mouth (``under_nose``) or just below the mouth (``on_chin``), ``mask_e`` below the chin,
   the top corners at about the face's width (twice the eye distance), split at the nose so that a turned
   face gets a narrower near side.
4. The warped template is alpha-blended into the photo, its brightness matched to the face's.

The photo with the mask on it is then cut exactly as real faces are (the same cropper / margin), so
the synthetic crop goes through :mod:`maskwatch.preprocess` like every other face.
"""

from __future__ import annotations

import configparser
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from maskwatch.errors import DataError

log = logging.getLogger(__name__)

#: Where the MaskTheFace templates live unless ``MASKWATCH_MASK_TEMPLATES`` or an argument says otherwise.
DEFAULT_TEMPLATES = Path("../shared/data/mask-templates")

#: Ways of wearing a mask wrongly, and how often each is drawn.
STYLES = {"under_nose": 0.7, "on_chin": 0.3}

_ANCHORS = ("mask_a", "mask_b", "mask_c", "mask_d", "mask_e", "mask_f")


@dataclass(frozen=True)
class MaskTemplate:
    """One RGBA template and its six anchors (template pixels, ``a b c d e f`` order)."""

    name: str
    rgba: np.ndarray
    anchors: np.ndarray

    @property
    def nose_ratio(self) -> float:
        """Where the top middle sits between the top corners (0.5: frontal; near 0 or 1: turned)."""
        a, b, c = self.anchors[:3, 0]
        return float((b - a) / max(c - a, 1e-6))


def templates_dir(path: str | Path | None = None) -> Path:
    return Path(path or os.environ.get("MASKWATCH_MASK_TEMPLATES") or DEFAULT_TEMPLATES)


def load_templates(path: str | Path | None = None) -> list[MaskTemplate]:
    """Every template of ``masks.cfg`` whose PNG is in the folder (sections without one are skipped)."""
    folder = templates_dir(path)
    cfg_file = folder / "masks.cfg"
    if not cfg_file.is_file():
        raise DataError(f"{cfg_file}: mask templates not found; expected MaskTheFace's masks.cfg and PNG "
                        "templates there (set MASKWATCH_MASK_TEMPLATES to their folder).")
    cfg = configparser.ConfigParser()
    cfg.read(cfg_file)
    out = []
    for name in cfg.sections():
        png = folder / f"{name}.png"
        if not png.is_file() or not all(k in cfg[name] for k in _ANCHORS):
            continue
        rgba = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
        if rgba is None or rgba.ndim != 3 or rgba.shape[2] != 4:
            continue
        anchors = np.array([[float(v) for v in cfg[name][k].split(",")] for k in _ANCHORS], np.float32)
        out.append(MaskTemplate(name, rgba, anchors))
    if not out:
        raise DataError(f"{folder}: no usable mask template (RGBA PNG named after a masks.cfg section).")
    return out


class LandmarkFinder:
    """YuNet's box and five landmarks for the face at a given place in a photo."""

    def __init__(self, model_path: str | Path | None = None, min_side: int = 160) -> None:
        from maskwatch.faces.models import find_yunet

        path = find_yunet(model_path)
        if path is None:
            raise DataError("synthetic mask wear needs YuNet's landmarks, and no YuNet model file was found.")
        self._net = cv2.FaceDetectorYN.create(str(path), "", (320, 320), 0.5, 0.3, 5000)
        self.min_side = min_side

    def find(self, image: np.ndarray, box: Sequence[float] | None = None) -> np.ndarray | None:
        """Landmarks ``(5, 2)`` (right eye, left eye, nose tip, right / left mouth corner) in ``image``
        pixels, of the face that best fits ``box`` (the largest face when ``box`` is None), or None."""
        h, w = image.shape[:2]
        if box is None:
            x0, y0, x1, y1 = 0, 0, w, h
        else:
            bx1, by1, bx2, by2 = (float(v) for v in box)
            side = max(bx2 - bx1, by2 - by1) * 2.0
            cx, cy = (bx1 + bx2) / 2, (by1 + by2) / 2
            x0, y0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
            x1, y1 = int(min(w, cx + side / 2)), int(min(h, cy + side / 2))
        region = image[y0:y1, x0:x1]
        if region.size == 0:
            return None
        scale = max(1.0, self.min_side / max(1, min(region.shape[:2])))
        scale = min(scale, 2000 / max(region.shape[:2]))
        if scale != 1.0:
            region = cv2.resize(region, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        self._net.setInputSize((region.shape[1], region.shape[0]))
        _, faces = self._net.detect(region)
        if faces is None or len(faces) == 0:
            return None
        boxes = faces[:, :4] / scale + [x0, y0, 0, 0]
        if box is None:
            k = int((faces[:, 2] * faces[:, 3]).argmax())
        else:
            centres = boxes[:, :2] + boxes[:, 2:4] / 2
            want = np.array([(bx1 + bx2) / 2, (by1 + by2) / 2])
            dist = np.linalg.norm(centres - want, axis=1) / max(bx2 - bx1, 1.0)
            k = int(dist.argmin())
            if dist[k] > 0.5:
                return None
        return faces[k, 4:14].reshape(5, 2) / scale + [x0, y0]


def _pick_template(templates: Sequence[MaskTemplate], nose_ratio: float, rng: np.random.Generator) -> MaskTemplate:
    turned = [t for t in templates if abs(t.nose_ratio - 0.5) > 0.2]
    frontal = [t for t in templates if abs(t.nose_ratio - 0.5) <= 0.2]
    if abs(nose_ratio - 0.5) > 0.2 and turned:
        same_side = [t for t in turned if (t.nose_ratio < 0.5) == (nose_ratio < 0.5)]
        return same_side[int(rng.integers(len(same_side)))] if same_side else turned[0]
    pool = frontal or list(templates)
    return pool[int(rng.integers(len(pool)))]


def wear_mask_incorrectly(image: np.ndarray, landmarks: np.ndarray, templates: Sequence[MaskTemplate],
                          rng: np.random.Generator, style: str | None = None) -> tuple[np.ndarray, dict] | None:
    """A copy of BGR ``image`` with a mask worn wrongly on the face with these ``landmarks``, and what was
    done (template, style); None when the landmarks are implausible (eyes on top of each other, etc.)."""
    lm = np.asarray(landmarks, np.float64)
    re, le, nose, rm, lmouth = lm
    eyes, mouth = (re + le) / 2, (rm + lmouth) / 2
    ed = float(np.linalg.norm(le - re))
    down = mouth - eyes
    depth = float(np.linalg.norm(down))
    if ed < 3 or depth < 3 or not 0.5 < depth / ed < 2.5:
        return None
    u = down / depth
    v = np.array([-u[1], u[0]])  # perpendicular; make it point from the right eye to the left eye
    if np.dot(v, le - re) < 0:
        v = -v
    ratio = float(np.clip(np.dot(nose - re, v) / ed, 0.15, 0.85))
    style = style or str(rng.choice(list(STYLES), p=list(STYLES.values())))
    if style == "under_nose":
        t = rng.uniform(0.15, 0.6)
        top = nose + t * (mouth - nose)
        bottom = mouth + rng.uniform(0.75, 1.0) * depth * u
    elif style == "on_chin":
        top = mouth + rng.uniform(0.12, 0.3) * depth * u
        bottom = mouth + rng.uniform(0.9, 1.15) * depth * u
    else:
        raise ValueError(f"unknown style {style!r}; one of {list(STYLES)}")
    # The top middle goes under the nose; the bottom middle is the chin, on the face's own axis.
    top = top + np.dot(nose - top, v) * v * 0.5
    width = rng.uniform(1.9, 2.25) * ed
    tpl = _pick_template(templates, ratio, rng)
    a, b, c, d, e, f = tpl.anchors.astype(np.float64)
    sy = np.dot(bottom - top, u) / max(e[1] - b[1], 1e-6)
    left, right = width * ratio / max(b[0] - a[0], 1e-6), width * (1 - ratio) / max(c[0] - b[0], 1e-6)

    def place(p: np.ndarray) -> np.ndarray:
        sx = left if p[0] < b[0] else right
        return top + (p[0] - b[0]) * sx * v + (p[1] - b[1]) * sy * u

    rgba, anchors = tpl.rgba, tpl.anchors
    shrink = 1.5 * width / max(c[0] - a[0], 1e-6)  # shrink first: a perspective warp does not anti-alias
    if shrink < 1:
        rgba = cv2.resize(rgba, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
        anchors = anchors * shrink
    src = anchors.reshape(-1, 1, 2).astype(np.float32)
    dst = np.array([place(p) for p in (a, b, c, d, e, f)], np.float32).reshape(-1, 1, 2)
    hmat, _ = cv2.findHomography(src, dst, 0)
    if hmat is None:
        return None
    h, w = image.shape[:2]
    x0, y0 = np.floor(dst.reshape(-1, 2).min(0)).astype(int) - 2
    x1, y1 = np.ceil(dst.reshape(-1, 2).max(0)).astype(int) + 2
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    shift = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]], np.float64)
    warped = cv2.warpPerspective(rgba, shift @ hmat, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0)).astype(np.float32)
    out = image.copy()
    patch = out[y0:y1, x0:x1].astype(np.float32)
    alpha = warped[:, :, 3:4] / 255.0
    if alpha.sum() < 1:
        return None
    # Light the mask like the face: scale by the face's brightness against a well-lit one, plus noise.
    face_light = float(patch.mean()) / 150.0
    gain = np.clip(face_light * rng.uniform(0.85, 1.1), 0.35, 1.15)
    colour = warped[:, :, :3] * gain * rng.uniform(0.92, 1.08, size=3)
    out[y0:y1, x0:x1] = np.clip(alpha * colour + (1 - alpha) * patch, 0, 255).astype(np.uint8)
    return out, {"template": tpl.name, "style": style}


def synthesize_incorrect(sources: Sequence[tuple[str | Path, Sequence[float] | None]], n: int,
                         templates: Sequence[MaskTemplate], finder: LandmarkFinder, rng: np.random.Generator,
                         cut: Callable[[np.ndarray, Sequence[float] | None], np.ndarray],
                         ) -> tuple[list[np.ndarray], dict]:
    """Put a wrongly worn mask on up to ``n`` of the unmasked ``sources`` (photo path, face box or None
    for the largest face), visited in random order, and ``cut`` each result as real faces are cut.
    Returns the BGR crops and a summary (how many were tried, had no usable landmarks, per template
    and style, and which source files were used)."""
    from maskwatch.io.images import decode_image

    made: list[np.ndarray] = []
    summary: dict = {"tried": 0, "no_landmarks": 0, "styles": {}, "templates": {}}
    for i in rng.permutation(len(sources)):
        if len(made) >= n:
            break
        path, box = sources[int(i)]
        summary["tried"] += 1
        image = decode_image(path)
        lm = finder.find(image, box)
        res = wear_mask_incorrectly(image, lm, templates, rng) if lm is not None else None
        if res is None:
            summary["no_landmarks"] += 1
            continue
        out, info = res
        made.append(cut(out, box))
        summary["styles"][info["style"]] = summary["styles"].get(info["style"], 0) + 1
        summary["templates"][info["template"]] = summary["templates"].get(info["template"], 0) + 1
    summary["made"] = len(made)
    return made, summary
