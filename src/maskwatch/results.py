"""The one result type that flows from the detector to every output.

``Face`` is one labelled face, ``FrameResult`` one image or video frame. Both serialise one way
(:meth:`FrameResult.to_dict`), used by the JSON Lines / CSV writers, the HTTP API and the web page.
The JSON shape is a public contract: fields may be added, never renamed or removed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

CSV_COLUMNS = (
    "source", "frame", "time_s", "width", "height", "face", "x1", "y1", "x2", "y2",
    "face_score", "label", "score", "p_with_mask", "p_without_mask", "track_id",
    "p_mask_incorrect", "uncertain",
)
#: Classes whose probability has a CSV column (``p_<class>``); a 2-class model leaves mask_incorrect empty.
CSV_PROB_CLASSES = ("with_mask", "without_mask", "mask_incorrect")
#: Labels that count as wearing a mask properly (compliance, alerts, colours).
COMPLIANT_LABELS = frozenset({"with_mask"})
#: The count key of faces the classifier abstained on.
UNCERTAIN = "uncertain"


def face_rows(frame: dict[str, Any], classes: Any = CSV_PROB_CLASSES) -> list[dict[str, Any]]:
    """One flat record per face of a frame's JSON object (:meth:`FrameResult.to_dict`): the one row
    builder behind CSV (``detect --csv``), Parquet (``detect --parquet``, ``batch``) and anything tabular.

    Keys: ``source, frame, time_s, width, height, face, x1, y1, x2, y2, face_score, label, score,
    p_<class>`` for each of ``classes`` (``None`` when the model has no such class), ``track_id`` and
    ``uncertain``.
    """
    rows = []
    for k, f in enumerate(frame["faces"]):
        x1, y1, x2, y2 = f["box"]
        rows.append({
            "source": frame["source"], "frame": frame["frame"], "time_s": frame["time_s"],
            "width": frame["width"], "height": frame["height"], "face": k, "x1": x1, "y1": y1, "x2": x2, "y2": y2,
            "face_score": f["face_score"], "label": f["label"], "score": f["score"],
            **{f"p_{c}": f["probs"].get(c) for c in classes},
            "track_id": f["track_id"], "uncertain": bool(f.get("uncertain", False)),
        })
    return rows


def label_key(face: Any) -> str:
    """The key a face is counted under everywhere: ``uncertain`` when the classifier abstained, else its
    label (a :class:`Face` or its JSON object)."""
    if isinstance(face, dict):
        return UNCERTAIN if face.get("uncertain") else str(face["label"])
    return UNCERTAIN if face.uncertain else face.label


@dataclass(frozen=True)
class Face:
    """One face: its box in original-image pixels and the classifier's verdict.

    ``box`` is ``(x1, y1, x2, y2)`` in integer pixel coordinates of the original image (after EXIF
    orientation), ``face_score`` the face detector's confidence, ``label`` the most probable class,
    ``score`` its probability and ``probs`` the probability of every class. In videos,
    ``track_id`` follows one face from frame to frame (``None`` for still images) and ``probs`` is
    the mean of the classifier's verdicts on that track so far. ``uncertain`` is ``True`` when the
    classifier abstains (its calibrated top probability is below the model's threshold): ``label``
    is then only its best guess.
    """

    box: tuple[int, int, int, int]
    face_score: float
    label: str
    score: float
    probs: dict[str, float]
    track_id: int | None = None
    uncertain: bool = False

    def __post_init__(self) -> None:
        if len(self.box) != 4:
            raise ValueError(f"box must have 4 numbers (x1, y1, x2, y2), got {self.box!r}")
        x1, y1, x2, y2 = self.box
        if x2 < x1 or y2 < y1:
            raise ValueError(f"box must satisfy x1 <= x2 and y1 <= y2, got {self.box!r}")

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "box": [int(v) for v in self.box],
            "face_score": round(float(self.face_score), 4),
            "label": self.label,
            "score": round(float(self.score), 4),
            "probs": {k: round(float(v), 4) for k, v in self.probs.items()},
            "track_id": self.track_id,
            "uncertain": bool(self.uncertain),
        }


@dataclass(frozen=True)
class SourceInfo:
    """Where a result came from: one image, video file, camera or stream.

    ``kind`` is ``"image"``, ``"video"``, ``"camera"`` or ``"stream"``; ``path`` the file, URL or
    camera as given; ``width`` / ``height`` the decoded frame size (after rotation); ``fps`` the
    source's frame rate and ``frame_count`` its length when the container says so (``None``
    otherwise); ``rotation`` the rotation in degrees the container asked for (already applied to the
    frames); ``vid_stride`` which frames are used (every N-th), so results come at ``fps / vid_stride``.
    """

    kind: str
    path: str
    width: int
    height: int
    fps: float | None = None
    frame_count: int | None = None
    rotation: int = 0
    vid_stride: int = 1

    @property
    def output_fps(self) -> float | None:
        """Frames per second of the results (the source rate divided by the stride)."""
        return None if not self.fps else self.fps / max(self.vid_stride, 1)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "width": self.width, "height": self.height,
                "fps": self.fps, "frame_count": self.frame_count, "rotation": self.rotation,
                "vid_stride": self.vid_stride}


@dataclass
class FrameResult:
    """Every face found in one image or video frame.

    ``frame`` and ``time_s`` are ``None`` for still images. ``timings_ms`` holds per-stage times
    (``decode``, ``detect``, ``classify``); ``image`` optionally keeps the decoded BGR image for
    annotation and is never serialised; ``classified`` is how many faces went through the classifier
    for this frame (fewer than ``len(faces)`` when video tracking reused earlier verdicts).
    ``source_info`` describes the source (:class:`SourceInfo`) and ``events`` holds what happened to
    face tracks on this frame (:class:`maskwatch.track.TrackEvent`: started, label changed, alert,
    ended); neither is part of the JSON object.
    """

    source: str
    width: int
    height: int
    faces: list[Face] = field(default_factory=list)
    frame: int | None = None
    time_s: float | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    image: np.ndarray | None = field(default=None, repr=False, compare=False)
    classified: int = field(default=0, repr=False, compare=False)
    source_info: SourceInfo | None = field(default=None, repr=False, compare=False)
    events: list[Any] = field(default_factory=list, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.faces)

    def counts(self) -> dict[str, int]:
        """Number of faces per label, plus ``total``; faces marked uncertain are counted under
        ``uncertain`` (not under their best-guess label), a key present only when there are some."""
        out: dict[str, int] = {}
        for f in self.faces:
            key = label_key(f)
            out[key] = out.get(key, 0) + 1
        out["total"] = len(self.faces)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The JSON Lines object for this frame (the public contract)."""
        return {
            "source": self.source,
            "frame": self.frame,
            "time_s": None if self.time_s is None else round(float(self.time_s), 4),
            "width": int(self.width),
            "height": int(self.height),
            "faces": [f.to_dict() for f in self.faces],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    def csv_rows(self) -> list[list[Any]]:
        """One CSV row per face (columns :data:`CSV_COLUMNS`, from :func:`face_rows`); a frame with no face
        gives none. Missing values are empty cells, ``uncertain`` is 0/1."""
        return [["" if r[c] is None else int(r[c]) if isinstance(r[c], bool) else r[c] for c in CSV_COLUMNS]
                for r in face_rows(self.to_dict())]


@dataclass(frozen=True)
class CropResult:
    """The classifier's verdict on one image taken as a whole face crop (``maskwatch classify``)."""

    source: str
    label: str
    score: float
    probs: dict[str, float]
    uncertain: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "label": self.label,
            "score": round(float(self.score), 4),
            "probs": {k: round(float(v), 4) for k, v in self.probs.items()},
            "uncertain": bool(self.uncertain),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)
