"""The one summary: faces counted per label, people and compliance, per source and in total.

Every front reports these numbers through this module, so they agree: the CLI's lines, ``batch``'s
summary and Parquet count columns, the HTTP API's headers and JSON, the web page and the compliance
report. The counting rules live here and nowhere else:

- a face counts under ``uncertain`` when the classifier abstained on it, else under its label
  (:func:`label_key`); the counts of every label plus ``uncertain`` add up to the faces listed;
- a *person* is a face track seen on at least ``min_track_frames`` frames; a person is *compliant*
  when the label they held longest is a compliant one (``with_mask``); the compliance rate comes with
  a 95% Wilson score interval.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from maskwatch.results import COMPLIANT_LABELS, UNCERTAIN, label_key
from maskwatch.sinks.base import Sink
from maskwatch.spec import DEFAULT_SPEC
from maskwatch.wording import count

#: The classes of the bundled 3-class model, the default order of count keys.
DEFAULT_CLASSES = ("with_mask", "without_mask", "mask_incorrect")

__all__ = ["COMPLIANT_LABELS", "UNCERTAIN", "Summary", "SourceSummary", "count_keys", "count_labels", "label_key",
           "main_label", "people_block", "wilson_interval"]


def count_keys(classes: Iterable[str] = DEFAULT_CLASSES) -> tuple[str, ...]:
    """Every count key, in order: the model's classes, then ``uncertain``."""
    return (*classes, UNCERTAIN)


def count_labels(faces: Iterable[Any], classes: Iterable[str] = DEFAULT_CLASSES) -> dict[str, int]:
    """Faces per key, every key of :func:`count_keys` present (0 when none); sums to the faces given."""
    out = dict.fromkeys(count_keys(classes), 0)
    for f in faces:
        k = label_key(f)
        out[k] = out.get(k, 0) + 1
    return out


def wilson_interval(k: int, n: int, z: float = 1.959964) -> tuple[float, float] | None:
    """95% Wilson score interval for ``k`` successes out of ``n`` (``None`` when ``n`` is 0)."""
    if n == 0:
        return None
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def main_label(track: Mapping[str, Any]) -> str | None:
    """The label a track held longest (its final label when it was seen too briefly to time)."""
    secs = track.get("label_seconds") or {}
    if secs and max(secs.values()) > 0:
        return max(secs, key=secs.get)
    return track.get("label")


def people_block(tracks: Iterable[Mapping[str, Any]], classes: Iterable[str] = DEFAULT_CLASSES,
                 min_track_frames: int = DEFAULT_SPEC.min_track_frames) -> dict[str, Any]:
    """People (tracks seen on enough frames) by main label and by every label seen, and compliance."""
    classes = tuple(classes)
    people = [t for t in tracks if t["frames"] >= min_track_frames]
    mostly: dict[str, int] = dict.fromkeys(classes, 0)
    seen: dict[str, int] = dict.fromkeys(classes, 0)
    for t in people:
        m = main_label(t)
        if m is not None:
            mostly[m] = mostly.get(m, 0) + 1
        for label in t["labels_seen"]:
            seen[label] = seen.get(label, 0) + 1
    compliant = sum(1 for t in people if main_label(t) in COMPLIANT_LABELS)
    ci = wilson_interval(compliant, len(people))
    return {
        "people": len(people),
        "people_mostly": mostly,
        "people_seen": seen,
        "compliant": compliant,
        "compliance_rate": None if not people else round(compliant / len(people), 4),
        "compliance_ci95": None if ci is None else [round(ci[0], 4), round(ci[1], 4)],
        "changed_label": sum(bool(t["changes"]) for t in people),
        "compliant_only": sum(all(x in COMPLIANT_LABELS for x in t["labels_seen"]) for t in people),
        "unmasked_s": round(sum(t["unmasked_s"] for t in people), 2),
    }


@dataclass
class SourceSummary:
    """One source's numbers (an image, a video, a camera or a stream)."""

    source: str
    kind: str = "image"
    frames: int = 0
    faces: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    faces_per_frame_max: int = 0
    tracked: bool = False
    alerts: int = 0
    tracks: list[dict[str, Any]] = field(default_factory=list, repr=False)
    classes: tuple[str, ...] = DEFAULT_CLASSES
    min_track_frames: int = DEFAULT_SPEC.min_track_frames

    @property
    def faces_per_frame_mean(self) -> float:
        return round(self.faces / self.frames, 2) if self.frames else 0.0

    def people(self) -> dict[str, Any] | None:
        """People and compliance (``None`` for sources without face tracks: images, ``--no-track``)."""
        return people_block(self.tracks, self.classes, self.min_track_frames) if self.tracked else None

    def to_dict(self) -> dict[str, Any]:
        people = self.people()
        return {
            "source": self.source, "kind": self.kind, "frames": self.frames, "faces": self.faces,
            "counts": dict(self.counts), "faces_per_frame_mean": self.faces_per_frame_mean,
            "faces_per_frame_max": self.faces_per_frame_max, "alerts": self.alerts,
            **(people if people is not None else {"people": None}),
        }

    def line(self) -> str:
        """The line ``maskwatch detect`` prints for this source."""
        counts = ", ".join(f"{v} {k}" for k, v in self.counts.items() if v or k != UNCERTAIN)
        if self.kind == "image":
            return f"{self.source}: {count(self.faces, 'face')}, {counts}"
        line = (f"{self.source}: {count(self.frames, 'frame')}, {self.faces_per_frame_mean} faces/frame "
                f"(max {self.faces_per_frame_max}), detections: {counts}")
        people = self.people()
        if people is None:
            return line + ", face tracks: none"
        seen = ", ".join(f"seen {k} {v}" for k, v in people["people_seen"].items())
        return (line + f", face tracks: {people['people']} ({seen}; changed label {people['changed_label']}; "
                f"{people['unmasked_s']:.1f} s without a mask in all)")


class Summary(Sink):
    """A sink that counts every result, per source and in total (see the module doc for the rules).

    Args:
        classes: the model's classes (default: taken from the first face's probabilities).
        min_track_frames: a face track counts as a person when seen on at least this many frames.
    """

    def __init__(self, classes: Iterable[str] | None = None,
                 min_track_frames: int = DEFAULT_SPEC.min_track_frames) -> None:
        self.classes: tuple[str, ...] | None = tuple(classes) if classes is not None else None
        self.min_track_frames = min_track_frames
        self.sources: dict[str, SourceSummary] = {}

    def _source(self, name: str, kind: str) -> SourceSummary:
        s = self.sources.get(name)
        if s is None:
            classes = self.classes or DEFAULT_CLASSES
            s = self.sources[name] = SourceSummary(name, kind, counts=dict.fromkeys(count_keys(classes), 0),
                                                   classes=classes, min_track_frames=self.min_track_frames)
        return s

    def write(self, result: Any) -> None:
        """Count one :class:`~maskwatch.results.FrameResult`."""
        if self.classes is None and result.faces:
            self.classes = tuple(result.faces[0].probs)
            for s in self.sources.values():  # sources seen before the first face: re-key their zero counts
                s.classes = self.classes
                s.counts = {**dict.fromkeys(count_keys(self.classes), 0), **s.counts}
        kind = "image" if result.frame is None else (result.source_info.kind if result.source_info else "video")
        s = self._source(result.source, kind)
        s.frames += 1
        s.faces += len(result.faces)
        s.faces_per_frame_max = max(s.faces_per_frame_max, len(result.faces))
        for f in result.faces:
            k = label_key(f)
            s.counts[k] = s.counts.get(k, 0) + 1
            if f.track_id is not None:
                s.tracked = True
        for ev in result.events:
            if ev.kind == "track_ended" and ev.track is not None:
                s.tracks.append(ev.track)
                s.tracked = True
            elif ev.kind == "unmasked_alert":
                s.alerts += 1

    def total(self) -> dict[str, Any]:
        """All sources together: frames, faces, counts, people and compliance."""
        classes = self.classes or DEFAULT_CLASSES
        counts = dict.fromkeys(count_keys(classes), 0)
        for s in self.sources.values():
            for k, v in s.counts.items():
                counts[k] = counts.get(k, 0) + v
        tracked = [s for s in self.sources.values() if s.tracked]
        people = (people_block([t for s in tracked for t in s.tracks], classes, self.min_track_frames)
                  if tracked else {"people": None})
        return {"sources": len(self.sources), "frames": sum(s.frames for s in self.sources.values()),
                "faces": sum(s.faces for s in self.sources.values()), "counts": counts,
                "alerts": sum(s.alerts for s in self.sources.values()), **people}

    def to_dict(self) -> dict[str, Any]:
        return {"classes": list(self.classes or DEFAULT_CLASSES), "min_track_frames": self.min_track_frames,
                "total": self.total(), "sources": [s.to_dict() for s in self.sources.values()]}

    def videos(self) -> list[SourceSummary]:
        return [s for s in self.sources.values() if s.kind != "image"]
