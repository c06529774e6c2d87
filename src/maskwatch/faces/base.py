"""What every face backend shares: the box type, the settings, the box calibration and the base class.

A backend subclasses :class:`BaseDetector` (implementing ``_raw_detect`` and ``with_settings``) and is
registered in :mod:`maskwatch.faces.registry`; nothing else needs to change for every front to offer it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Protocol

import cv2
import numpy as np

from maskwatch.errors import InputError
from maskwatch.spec import DEFAULT_SPEC as _D


@dataclass
class FaceBoxes:
    """Face boxes ``xyxy`` (float, original-image pixels, shape ``(n, 4)``) and detector scores ``(n,)``."""

    xyxy: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if len(self.xyxy) != len(self.scores):
            raise ValueError(f"{len(self.xyxy)} boxes but {len(self.scores)} scores")

    def __len__(self) -> int:
        return len(self.scores)

    def __getitem__(self, index: np.ndarray | slice) -> FaceBoxes:
        return FaceBoxes(self.xyxy[index], self.scores[index])

    @classmethod
    def empty(cls) -> FaceBoxes:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32))


@dataclass
class DetectorSettings:
    """Knobs shared by every backend.

    Attributes:
        score_threshold: minimum detector confidence for a face.
        nms_threshold: IoU above which overlapping boxes are merged.
        detect_size: the image's long side is scaled to this many pixels before detection (small
            photos are enlarged so small faces become findable); ``None`` keeps the native size.
        video_detect_size: the same for video frames, where speed matters more.
        min_face: faces narrower than this many original-image pixels are dropped.
        box_scale / box_shift: box calibration: width and height are multiplied by ``box_scale`` and
            the centre moved by ``box_shift`` times the box size.
    """

    # Defaults: maskwatch.spec.EngineSpec (where they are explained), the only place they live.
    score_threshold: float = _D.face_threshold
    nms_threshold: float = _D.nms_threshold
    detect_size: int | None = _D.detect_size
    video_detect_size: int | None = _D.video_detect_size
    min_face: int = _D.min_face
    box_scale: tuple[float, float] = _D.box_scale
    box_shift: tuple[float, float] = _D.box_shift
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 <= self.score_threshold <= 1.0:
            raise InputError(f"face score threshold must be between 0 and 1, got {self.score_threshold}")
        if not 0.0 < self.nms_threshold <= 1.0:
            raise InputError(f"NMS threshold must be in (0, 1], got {self.nms_threshold}")
        for size in (self.detect_size, self.video_detect_size):
            if size is not None and not 64 <= size <= 4096:
                raise InputError(f"detect size must be between 64 and 4096 pixels, got {size}")
        if self.min_face < 0:
            raise InputError(f"minimum face size must be >= 0 pixels, got {self.min_face}")

    @classmethod
    def from_spec(cls, spec) -> DetectorSettings:
        """The face-stage part of an :class:`~maskwatch.spec.EngineSpec`."""
        return cls(score_threshold=spec.face_threshold, nms_threshold=spec.nms_threshold,
                   detect_size=spec.detect_size, video_detect_size=spec.video_detect_size, min_face=spec.min_face,
                   box_scale=tuple(spec.box_scale), box_shift=tuple(spec.box_shift))

    def for_video(self) -> DetectorSettings:
        """These settings with ``detect_size`` set to the video size."""
        return replace(self, detect_size=self.video_detect_size)


def calibrate_boxes(xywh: np.ndarray, scores: np.ndarray, shape: tuple[int, ...],
                    settings: DetectorSettings) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated, clipped ``xyxy`` boxes for raw ``xywh`` boxes, and the mask of boxes that pass
    the score threshold and minimum size of ``settings``."""
    xywh = np.asarray(xywh, np.float32).reshape(-1, 4)
    scores = np.asarray(scores, np.float32).reshape(-1)
    h, w = shape[:2]
    s = settings
    cx = xywh[:, 0] + xywh[:, 2] / 2 + np.float32(s.box_shift[0]) * xywh[:, 2]
    cy = xywh[:, 1] + xywh[:, 3] / 2 + np.float32(s.box_shift[1]) * xywh[:, 3]
    bw, bh = xywh[:, 2] * np.float32(s.box_scale[0]), xywh[:, 3] * np.float32(s.box_scale[1])
    xyxy = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
    xyxy[:, [0, 2]] = np.clip(xyxy[:, [0, 2]], 0, w)
    xyxy[:, [1, 3]] = np.clip(xyxy[:, [1, 3]], 0, h)
    keep = (scores >= s.score_threshold) & (xywh[:, 2] >= s.min_face)
    keep &= (xyxy[:, 2] - xyxy[:, 0] >= 1) & (xyxy[:, 3] - xyxy[:, 1] >= 1)
    return xyxy, keep


class FaceDetector(Protocol):
    """Anything that finds faces: ``detect(image_bgr) -> FaceBoxes``."""

    name: str
    settings: DetectorSettings

    def detect(self, image_bgr: np.ndarray) -> FaceBoxes: ...


class BaseDetector:
    name = "base"
    max_input: int | None = None

    def __init__(self, settings: DetectorSettings | None = None) -> None:
        self.settings = settings or DetectorSettings()

    def _scale_for(self, h: int, w: int) -> float:
        long_side = max(h, w)
        target = self.settings.detect_size or long_side
        if self.max_input:
            target = min(target, self.max_input)
        return target / long_side

    def detect(self, image_bgr: np.ndarray) -> FaceBoxes:
        """Find faces in a BGR ``uint8`` image; boxes are in the image's own pixels."""
        xywh, scores = self.detect_raw(image_bgr)
        return self.postprocess(xywh, scores, image_bgr.shape[:2])

    def detect_raw(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The network's boxes ``(x, y, w, h)`` in original-image pixels and scores, before calibration
        and thresholds (the network's own threshold still applies)."""
        if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
            raise InputError(f"expected a BGR image of shape (H, W, 3), got shape {image_bgr.shape}")
        h, w = image_bgr.shape[:2]
        scale = self._scale_for(h, w)
        if abs(scale - 1.0) > 1e-3:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            work = cv2.resize(image_bgr, size, interpolation=interp)
        else:
            scale, work = 1.0, image_bgr
        xywh, scores = self._raw_detect(np.ascontiguousarray(work))
        return np.asarray(xywh, np.float32).reshape(-1, 4) / scale, np.asarray(scores, np.float32).reshape(-1)

    def postprocess(self, xywh: np.ndarray, scores: np.ndarray, shape: tuple[int, int]) -> FaceBoxes:
        """Apply box calibration, clipping to the image ``shape`` (h, w), score threshold and minimum size."""
        xyxy, keep = calibrate_boxes(xywh, scores, shape, self.settings)
        return FaceBoxes(xyxy[keep], scores[keep])

    def _raw_detect(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def with_settings(self, settings: DetectorSettings) -> BaseDetector:
        """A new detector of the same backend (and model file) with other settings.

        Detectors keep per-call state (OpenCV's input size), so each thread needs its own.
        """
        raise NotImplementedError


#: Kept for code that imported the private name.
_BaseDetector = BaseDetector
