"""Draw faces on images: a box per face, its label and probability (green with mask, red without,
orange for a mask worn under the nose or on the chin, grey with a '?' when the classifier is uncertain)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from maskwatch.results import Face

COLORS_BGR = {"with_mask": (60, 180, 40), "without_mask": (40, 40, 220), "mask_incorrect": (0, 140, 255)}
UNCERTAIN_COLOR = (150, 150, 150)
DEFAULT_COLOR = (200, 160, 0)


class BoxAnnotator:
    """Draws boxes and labels; style is set once, ``annotate`` is called per frame."""

    def __init__(self, thickness: int | None = None, font_scale: float | None = None, show_score: bool = True) -> None:
        self.thickness = thickness
        self.font_scale = font_scale
        self.show_score = show_score

    def annotate(self, image_bgr: np.ndarray, faces: Sequence[Face], counts: bool = False) -> np.ndarray:
        """Return a copy of ``image_bgr`` with every face drawn (and a count banner if ``counts``)."""
        out = image_bgr.copy()
        h, w = out.shape[:2]
        thick = self.thickness or max(1, round(max(h, w) / 500))
        scale = self.font_scale or max(0.4, max(h, w) / 1600)
        font = cv2.FONT_HERSHEY_SIMPLEX
        for f in faces:
            unsure = bool(getattr(f, "uncertain", False))
            color = UNCERTAIN_COLOR if unsure else COLORS_BGR.get(f.label, DEFAULT_COLOR)
            x1, y1, x2, y2 = f.box
            cv2.rectangle(out, (x1, y1), (x2, y2), color, thick, cv2.LINE_AA)
            label = f"{f.label}?" if unsure else f.label
            text = f"{label} {f.score * 100:.0f}%" if self.show_score else label
            (tw, th), base = cv2.getTextSize(text, font, scale, max(1, thick - 1))
            ty = y1 - 4 if y1 - th - base - 4 >= 0 else min(h - 1, y2 + th + 4)
            cv2.rectangle(out, (x1, ty - th - base), (x1 + tw + 4, ty + base - 2), color, -1)
            cv2.putText(out, text, (x1 + 2, ty - 2), font, scale, (255, 255, 255), max(1, thick - 1), cv2.LINE_AA)
        if counts:
            sure = [f for f in faces if not getattr(f, "uncertain", False)]
            with_m = sum(f.label == "with_mask" for f in sure)
            without = sum(f.label == "without_mask" for f in sure)
            wrong = sum(f.label == "mask_incorrect" for f in sure)
            text = f"with mask: {with_m}  without: {without}  faces: {len(faces)}"
            if wrong:
                text = text.replace("  faces:", f"  mask incorrect: {wrong}  faces:")
            if len(sure) < len(faces):
                text = text.replace("  faces:", f"  uncertain: {len(faces) - len(sure)}  faces:")
            (tw, th), base = cv2.getTextSize(text, font, scale, 1)
            cv2.rectangle(out, (0, 0), (tw + 10, th + base + 10), (0, 0, 0), -1)
            cv2.putText(out, text, (5, th + 5), font, scale, (255, 255, 255), 1, cv2.LINE_AA)
        return out


def annotate(image_bgr: np.ndarray, faces: Sequence[Face], counts: bool = False) -> np.ndarray:
    """Draw ``faces`` on a copy of ``image_bgr`` with the default style."""
    return BoxAnnotator().annotate(image_bgr, faces, counts=counts)
