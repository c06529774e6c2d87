"""Draw faces on images: a box per face and a label that never covers another label.

Colours: green with mask, red without, orange for a mask worn under the nose or on the chin, grey
with a '?' when the classifier is uncertain.

Label placement is one rule, the same as the web page's (``drawFaces`` in
``server/static/app.js``): faces are taken from the top of the image down; each label goes above its
box, below it, or inside its top edge, whichever does not overlap a label already placed, shifted
left where it would run past the right edge (never cut off). On a still image each label starts
with the face's number; where the full label does not fit (crowds), the number alone is drawn and
a legend under the picture lists every number with its label and probability. Small stills are
enlarged by a whole factor (as the page shows them) so that numbers on 15 px faces stay readable.
Video frames keep their size and get no legend: a label that finds no free place is drawn above
its box anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from maskwatch.results import Face

COLORS_BGR = {"with_mask": (60, 180, 40), "without_mask": (40, 40, 220), "mask_incorrect": (0, 140, 255)}
UNCERTAIN_COLOR = (150, 150, 150)
DEFAULT_COLOR = (200, 160, 0)
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_FONT_PX = 22.0  # cap height + descent of FONT_HERSHEY_SIMPLEX at scale 1, in pixels
#: Stills are enlarged (by 2, 3 or 4) until their long side reaches this, as the page shows them.
VIEW_SIDE = 960


@dataclass
class Label:
    """Where one face's label went: its rectangle, text, and whether it had to overlap another."""

    index: int
    x: float
    y: float
    w: float
    h: float
    text: str
    short: bool = False
    overlaps: bool = False

    def hits(self, other: Label) -> bool:
        """Whether the two rectangles overlap."""
        return self.x < other.x + other.w and other.x < self.x + self.w and self.y < other.y + other.h \
            and other.y < self.y + self.h


def place_labels(
    boxes: Sequence[Sequence[float]],
    texts: Sequence[Sequence[str]],
    size: tuple[int, int],
    measure: Callable[[str, int], tuple[float, float]],
) -> list[Label]:
    """Place one label per box without overlaps (the page's rule; see the module docstring).

    Args:
        boxes: ``(x1, y1, x2, y2)`` per face, in output pixels.
        texts: per face, the texts to try, longest first (e.g. ``["3 with_mask 97%", "3"]``).
        size: ``(width, height)`` of the image.
        measure: ``measure(text, face_index) -> (width, height)`` of the label rectangle.

    Returns:
        a :class:`Label` per face, in the order of ``boxes``.
    """
    width, height = size
    placed: list[Label] = []
    out: dict[int, Label] = {}
    for i in sorted(range(len(boxes)), key=lambda k: boxes[k][1]):
        x1, y1, x2, y2 = boxes[i]
        spot = None
        for k, text in enumerate(texts[i]):
            tw, th = measure(text, i)
            x = max(0.0, min(width - tw, x1))
            for y in (y1 - th, y2, y1):
                r = Label(i, x, max(0.0, min(height - th, y)), tw, th, text, short=k > 0)
                if not any(r.hits(q) for q in placed):
                    spot = r
                    break
            if spot is not None:
                break
        if spot is None:  # crowded: the shortest text, above the box, overlapping
            text = texts[i][-1]
            tw, th = measure(text, i)
            spot = Label(i, max(0.0, min(width - tw, x1)), max(0.0, min(height - th, y1 - th)), tw, th, text,
                         short=len(texts[i]) > 1, overlaps=True)
        placed.append(spot)
        out[i] = spot
    return [out[i] for i in range(len(boxes))]


def color_of(face: Face) -> tuple[int, int, int]:
    """The BGR colour a face is drawn in."""
    if getattr(face, "uncertain", False):
        return UNCERTAIN_COLOR
    return COLORS_BGR.get(face.label, DEFAULT_COLOR)


def _label_text(face: Face, show_score: bool) -> str:
    label = f"{face.label}?" if getattr(face, "uncertain", False) else face.label
    return f"{label} {face.score * 100:.0f}%" if show_score else label


class BoxAnnotator:
    """Draws boxes and labels; style is set once, ``annotate`` is called per frame."""

    def __init__(self, thickness: int | None = None, font_scale: float | None = None, show_score: bool = True) -> None:
        self.thickness = thickness
        self.font_scale = font_scale
        self.show_score = show_score
        #: the labels of the last image drawn (for tests and callers that want the layout)
        self.last_labels: list[Label] = []

    def annotate(self, image_bgr: np.ndarray, faces: Sequence[Face], counts: bool = False,
                 still: bool | None = None) -> np.ndarray:
        """A copy of ``image_bgr`` with every face drawn (and a count banner if ``counts``).

        ``still``: a photo rather than a video frame: numbered labels, small images enlarged, and a
        legend under the picture when crowded labels were shortened to their number. Default: a
        still unless ``counts`` (video frames carry the count banner).
        """
        still = (not counts) if still is None else still
        up = max(1, min(4, VIEW_SIDE // max(image_bgr.shape[:2]))) if still and faces else 1
        out = image_bgr.copy() if up == 1 else cv2.resize(image_bgr, None, fx=up, fy=up,
                                                           interpolation=cv2.INTER_CUBIC)
        h, w = out.shape[:2]
        side = max(h, w)
        thick = self.thickness or max(1, round(side / 500))
        base_px = self.font_scale * _FONT_PX if self.font_scale else max(12.0, side / 45)
        boxes = [tuple(v * up for v in f.box) for f in faces]
        font_px = [min(base_px, max(11.0, (b[2] - b[0]) * 0.45)) for b in boxes]

        def measure(text: str, i: int) -> tuple[float, float]:
            scale = font_px[i] / _FONT_PX
            (tw, _), _ = cv2.getTextSize(text, _FONT, scale, max(1, thick - 1))
            return tw + 8.0, font_px[i] + 6.0

        texts, full = [], []
        for i, f in enumerate(faces):
            long = f"{i + 1} {_label_text(f, self.show_score)}" if still else _label_text(f, self.show_score)
            options = [long, str(i + 1)] if still else [long]
            if still and measure(long, i)[0] > 3 * (boxes[i][2] - boxes[i][0]):
                options = options[1:]  # far wider than its face: the number, as on the page
            texts.append(options)
            full.append(long)
        labels = place_labels(boxes, texts, (w, h), measure)
        for lab in labels:
            lab.short = lab.text != full[lab.index]
        self.last_labels = labels
        for f, (x1, y1, x2, y2) in zip(faces, boxes):
            cv2.rectangle(out, (round(x1), round(y1)), (round(x2), round(y2)), color_of(f), thick, cv2.LINE_AA)
        for f, lab in zip(faces, labels):
            scale = font_px[lab.index] / _FONT_PX
            x, y = round(lab.x), round(lab.y)
            cv2.rectangle(out, (x, y), (round(lab.x + lab.w), round(lab.y + lab.h)), color_of(f), -1)
            cv2.putText(out, lab.text, (x + 4, round(lab.y + lab.h - 5)), _FONT, scale, (255, 255, 255),
                        max(1, thick - 1), cv2.LINE_AA)
        if counts:
            _banner(out, faces, max(0.4, side / 1600))
        if still and any(lab.short for lab in labels):
            out = _with_legend(out, faces, self.show_score)
        return out


def _banner(out: np.ndarray, faces: Sequence[Face], scale: float) -> None:
    sure = [f for f in faces if not getattr(f, "uncertain", False)]
    parts = [f"with mask: {sum(f.label == 'with_mask' for f in sure)}",
             f"without: {sum(f.label == 'without_mask' for f in sure)}"]
    wrong = sum(f.label == "mask_incorrect" for f in sure)
    if wrong:
        parts.append(f"mask incorrect: {wrong}")
    if len(sure) < len(faces):
        parts.append(f"uncertain: {len(faces) - len(sure)}")
    parts.append(f"faces: {len(faces)}")
    text = "  ".join(parts)
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, 1)
    cv2.rectangle(out, (0, 0), (tw + 10, th + base + 10), (0, 0, 0), -1)
    cv2.putText(out, text, (5, th + 5), _FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)


def _with_legend(image: np.ndarray, faces: Sequence[Face], show_score: bool) -> np.ndarray:
    """``image`` with a white panel below it listing every face: number, colour, label, probability."""
    w = image.shape[1]
    scale, row = 0.5, 22
    entries = [f"{i + 1}  {_label_text(f, show_score)}" for i, f in enumerate(faces)]
    col_w = max(cv2.getTextSize(e, _FONT, scale, 1)[0][0] for e in entries) + 34
    cols = max(1, w // col_w)
    rows = -(-len(entries) // cols)
    panel = np.full((rows * row + 12, w, 3), 255, np.uint8)
    for k, (f, text) in enumerate(zip(faces, entries)):
        x, y = (k // rows) * col_w + 8, (k % rows) * row + 8
        cv2.rectangle(panel, (x, y + 3), (x + 14, y + 17), color_of(f), -1)
        cv2.putText(panel, text, (x + 20, y + 16), _FONT, scale, (20, 20, 20), 1, cv2.LINE_AA)
    return np.vstack([image, panel])


def annotate(image_bgr: np.ndarray, faces: Sequence[Face], counts: bool = False,
             still: bool | None = None) -> np.ndarray:
    """Draw ``faces`` on a copy of ``image_bgr`` with the default style (see :meth:`BoxAnnotator.annotate`)."""
    return BoxAnnotator().annotate(image_bgr, faces, counts=counts, still=still)


__all__ = ["BoxAnnotator", "COLORS_BGR", "Label", "annotate", "color_of", "place_labels"]
