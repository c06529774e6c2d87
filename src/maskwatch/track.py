"""Follow faces from frame to frame in a video and keep each person's mask state over time.

A face matched to a track (IoU with the track's last box) reuses the track's label; the classifier
runs on new faces, on tracks whose last verdict is older than ``reclassify_every`` frames, and on
the next frame after a verdict that disagreed with the track's label (so a change is confirmed
quickly). A *stable* track, whose last ``stable_votes`` verdicts all agreed with its label at
``stable_confidence`` or more and whose face has not grown or shrunk by more than
``stable_scale`` since, is looked at only every ``reclassify_stable_every`` frames: in a crowd most
faces are stable most of the time, and the classifier's time goes to new, doubtful and changing
faces instead. A track's probabilities are an exponential average of its recent verdicts, and its label
changes only when another class reaches ``switch_threshold`` (hysteresis): a person putting a mask
on switches within a few verdicts, a single odd verdict does not make the label flicker.

Per track the tracker keeps the first and last time seen, the time spent under each label (the time
without a mask among them) and every label change, and it emits :class:`TrackEvent` objects
(``track_started``, ``label_changed``, ``unmasked_alert``, ``track_ended``) that the run loop hands
to the event log, alerts and reports.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from maskwatch.boxes import box_iou
from maskwatch.defaults import ALERT_AFTER_S, RECLASSIFY_EVERY, RECLASSIFY_STABLE_EVERY, STABLE_CONFIDENCE

#: Labels that count as wearing a mask properly; every other class of a model is non-compliant.
from maskwatch.results import COMPLIANT_LABELS  # noqa: E402 - kept importable from here

EVENT_KINDS = ("track_started", "label_changed", "unmasked_alert", "track_ended")


def _area(box: np.ndarray) -> float:
    """Area of one ``x1, y1, x2, y2`` box (never 0, so that it can divide)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return max((x2 - x1) * (y2 - y1), 1e-6)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class TrackEvent:
    """Something that happened to one face track.

    ``time_s`` is the time in the source (seconds from the start of a video; seconds since the
    run started for cameras and streams), ``at`` the UTC wall-clock time it was recorded.
    ``label`` is the track's label after the event, ``previous`` the one before (label changes).
    ``track`` (on ``track_ended``) is the track's summary, see :meth:`Track.summary`.
    """

    kind: str
    source: str
    track_id: int
    frame: int | None
    time_s: float
    label: str | None = None
    previous: str | None = None
    box: tuple[int, int, int, int] | None = None
    probs: dict[str, float] | None = None
    track: dict[str, Any] | None = None
    at: datetime = field(default_factory=utc_now)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "at": self.at.isoformat(timespec="milliseconds"), "source": self.source,
            "track_id": self.track_id, "frame": self.frame, "time_s": round(float(self.time_s), 3),
            "label": self.label, "previous": self.previous,
            "box": None if self.box is None else [int(v) for v in self.box],
            "probs": None if self.probs is None else {k: round(float(v), 4) for k, v in self.probs.items()},
            "track": self.track,
        }


@dataclass
class Track:
    """One face followed across frames, with its mask state over time."""

    id: int
    box: np.ndarray
    last_seen: int
    ema: np.ndarray
    n_votes: int = 0
    last_classified: int = -(10**9)
    first_seen: int = 0
    frames_seen: int = 1
    label_index: int = -1
    first_t: float = 0.0
    last_t: float = 0.0
    label_seconds: dict[str, float] = field(default_factory=dict)
    changes: list[dict[str, Any]] = field(default_factory=list)
    labels_seen: list[str] = field(default_factory=list)
    unmasked_since: float | None = None
    alerted: bool = False
    contested: bool = False
    streak: int = 0
    classified_area: float = 0.0

    @property
    def probs(self) -> np.ndarray:
        """The track's current probabilities: an exponential average of its recent verdicts."""
        return self.ema

    def summary(self, classes: tuple[str, ...]) -> dict[str, Any]:
        """First/last time, frames seen, final label, labels held, seconds per label, time without a
        mask (every non-compliant label), label changes and whether it raised an alert."""
        unmasked = sum(s for k, s in self.label_seconds.items() if k not in COMPLIANT_LABELS)
        return {
            "track_id": self.id,
            "first_s": round(self.first_t, 3), "last_s": round(self.last_t, 3),
            "duration_s": round(self.last_t - self.first_t, 3),
            "first_frame": self.first_seen, "last_frame": self.last_seen, "frames": self.frames_seen,
            "label": classes[self.label_index] if self.label_index >= 0 else None,
            "labels_seen": list(self.labels_seen),
            "label_seconds": {k: round(v, 3) for k, v in self.label_seconds.items()},
            "unmasked_s": round(unmasked, 3),
            "changes": list(self.changes),
            "alerted": self.alerted,
        }


@dataclass
class FaceTracker:
    """Greedy IoU tracker with periodic re-classification and per-track mask state.

    Args:
        n_classes: length of a probability vector.
        iou_threshold: minimum IoU between a face and a track's last box to continue the track.
        max_age: frames a track survives without being matched.
        reclassify_every: frames after which a tracked face is classified again (1 = every frame).
        reclassify_stable_every: the same for stable tracks (raised to ``reclassify_every`` if lower).
        stable_votes: consecutive confident verdicts agreeing with the label that make a track stable.
        stable_confidence: probability of the label a verdict needs to count towards stability.
        stable_scale: a stable track whose face area changed by more than this factor since its
            last verdict (walking towards the camera, turning) is classified again at once.
        min_votes: a track is classified on each of its first ``min_votes`` frames regardless.
        classes: class names in the model's output order (for labels and events).
        alpha: weight of a new verdict in the track's exponential average (1 = last verdict only).
        switch_threshold: probability another class must reach before the track's label changes.
        alert_after_s: a track without a mask for this long raises one ``unmasked_alert`` (``None``: never).
        alert_cooldown_s: after an alert, no other alert from this source for this long.
        source: the source name written into events.
    """

    n_classes: int
    iou_threshold: float = 0.3
    max_age: int = 8
    reclassify_every: int = RECLASSIFY_EVERY
    reclassify_stable_every: int = RECLASSIFY_STABLE_EVERY
    stable_votes: int = 2
    stable_confidence: float = STABLE_CONFIDENCE
    stable_scale: float = 1.5
    min_votes: int = 2
    classes: tuple[str, ...] = ()
    alpha: float = 0.5
    switch_threshold: float = 0.65
    alert_after_s: float | None = ALERT_AFTER_S
    alert_cooldown_s: float = 0.0
    source: str = ""
    tracks: dict[int, Track] = field(default_factory=dict)
    finished: list[Track] = field(default_factory=list)
    _next_id: int = 1
    _events: list[TrackEvent] = field(default_factory=list)
    _last_alert_t: float | None = None
    _t0: float = field(default_factory=time.monotonic)
    _t: float = 0.0
    _frame: int = 0

    def __post_init__(self) -> None:
        if not self.classes:
            self.classes = tuple(str(k) for k in range(self.n_classes))
        if len(self.classes) != self.n_classes:
            raise ValueError(f"{len(self.classes)} class names for {self.n_classes} classes")
        if not 0 < self.alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {self.alpha}")

    def _noncompliant(self, label_index: int) -> bool:
        return label_index >= 0 and self.classes[label_index] not in COMPLIANT_LABELS

    def assign(self, boxes: np.ndarray, frame: int, t: float | None = None) -> tuple[list[int], list[int]]:
        """Match ``boxes`` to tracks; return each box's track id and the indices that need the classifier.

        ``t`` is the frame's time in seconds (source time); without it, seconds since the tracker was made.
        """
        t = float(time.monotonic() - self._t0) if t is None else float(t)
        self._t, self._frame = t, frame
        ids = list(self.tracks)
        prev = np.array([self.tracks[i].box for i in ids], np.float32).reshape(-1, 4)
        iou = box_iou(np.asarray(boxes, np.float32).reshape(-1, 4), prev)
        track_of = [-1] * len(boxes)
        if iou.size:
            order = np.dstack(np.unravel_index(np.argsort(-iou, axis=None), iou.shape))[0]
            used_b, used_t = set(), set()
            for bi, ti in order:
                if iou[bi, ti] < self.iou_threshold:
                    break
                if bi in used_b or ti in used_t:
                    continue
                used_b.add(bi)
                used_t.add(ti)
                track_of[bi] = ids[ti]
        need = []
        for bi, tid in enumerate(track_of):
            if tid < 0:
                tid = self._next_id
                self._next_id += 1
                self.tracks[tid] = Track(tid, np.asarray(boxes[bi], np.float32).copy(), frame,
                                         np.zeros(self.n_classes, np.float64), first_seen=frame, frames_seen=0,
                                         first_t=t, last_t=t)
                track_of[bi] = tid
            tr = self.tracks[tid]
            if tr.label_index >= 0 and t > tr.last_t:  # time since the last sighting, under the label held
                name = self.classes[tr.label_index]
                tr.label_seconds[name] = tr.label_seconds.get(name, 0.0) + (t - tr.last_t)
            tr.box = np.asarray(boxes[bi], np.float32).copy()
            tr.last_seen = frame
            tr.last_t = t
            tr.frames_seen += 1
            if tr.n_votes < self.min_votes or tr.contested or frame - tr.last_classified >= self._interval(tr):
                need.append(bi)
        for tid in [tid for tid, tr in self.tracks.items() if frame - tr.last_seen > self.max_age]:
            self._end(self.tracks.pop(tid))
        return track_of, need

    def _interval(self, tr: Track) -> int:
        """Frames until the track's next verdict: longer for a stable track whose face kept its size."""
        if tr.streak < self.stable_votes or tr.classified_area <= 0:
            return self.reclassify_every
        ratio = _area(tr.box) / tr.classified_area
        if ratio > self.stable_scale or ratio < 1 / self.stable_scale:
            return 0
        return max(self.reclassify_every, self.reclassify_stable_every)

    def is_stable(self, track_id: int) -> bool:
        """Whether the track is looked at only every ``reclassify_stable_every`` frames now."""
        return self._interval(self.tracks[track_id]) > self.reclassify_every

    def vote(self, track_id: int, probs: np.ndarray, frame: int) -> None:
        """Add one classifier verdict to a track; its label changes only past the switch threshold."""
        tr = self.tracks[track_id]
        p = np.asarray(probs, np.float64)
        tr.ema = p.copy() if tr.n_votes == 0 else (1 - self.alpha) * tr.ema + self.alpha * p
        tr.n_votes += 1
        tr.last_classified = frame
        tr.classified_area = _area(tr.box)
        best = int(tr.ema.argmax())
        t = tr.last_t
        if tr.label_index < 0:
            tr.label_index = best
            tr.labels_seen.append(self.classes[best])
            if self._noncompliant(best):
                tr.unmasked_since = t
            self._emit("track_started", tr, frame, t)
        elif best != tr.label_index and tr.ema[best] >= self.switch_threshold:
            old = self.classes[tr.label_index]
            tr.label_index = best
            new = self.classes[best]
            tr.changes.append({"time_s": round(t, 3), "frame": frame, "from": old, "to": new})
            if new not in tr.labels_seen:
                tr.labels_seen.append(new)
            if self._noncompliant(best):
                if tr.unmasked_since is None:
                    tr.unmasked_since = t
            else:
                tr.unmasked_since = None
            self._emit("label_changed", tr, frame, t, previous=old)
        # A verdict against the label held: look again on the next frame rather than in N frames.
        tr.contested = int(p.argmax()) != tr.label_index
        # Stability: consecutive verdicts that agree with the label and are sure of it.
        agrees = not tr.contested and p[tr.label_index] >= self.stable_confidence
        tr.streak = tr.streak + 1 if agrees else 0

    def label_of(self, track_id: int) -> int:
        """The track's label index (its exponential average's top class before the first switch)."""
        tr = self.tracks[track_id]
        return tr.label_index if tr.label_index >= 0 else int(tr.ema.argmax())

    def check_alerts(self, track_ids: list[int]) -> None:
        """Raise ``unmasked_alert`` for tracks (seen on this frame) without a mask for ``alert_after_s``."""
        if self.alert_after_s is None:
            return
        for tid in track_ids:
            tr = self.tracks.get(tid)
            if tr is None or tr.alerted or tr.unmasked_since is None:
                continue
            if tr.last_t - tr.unmasked_since + 1e-9 < self.alert_after_s:
                continue
            if self._last_alert_t is not None and tr.last_t - self._last_alert_t < self.alert_cooldown_s:
                continue
            tr.alerted = True
            self._last_alert_t = tr.last_t
            self._emit("unmasked_alert", tr, tr.last_seen, tr.last_t)

    def _emit(self, kind: str, tr: Track, frame: int | None, t: float, previous: str | None = None) -> None:
        label = self.classes[tr.label_index] if tr.label_index >= 0 else None
        x1, y1, x2, y2 = (int(round(float(v))) for v in tr.box)
        self._events.append(TrackEvent(
            kind=kind, source=self.source, track_id=tr.id, frame=frame, time_s=t, label=label, previous=previous,
            box=(x1, y1, x2, y2), probs={c: float(v) for c, v in zip(self.classes, tr.ema)},
            track=tr.summary(self.classes) if kind == "track_ended" else None,
        ))

    def _end(self, tr: Track) -> None:
        self.finished.append(tr)
        self._emit("track_ended", tr, tr.last_seen, tr.last_t)

    def close(self) -> list[TrackEvent]:
        """End every open track (at its last sighting) and return the events not yet taken."""
        for tid in list(self.tracks):
            self._end(self.tracks.pop(tid))
        return self.drain_events()

    def drain_events(self) -> list[TrackEvent]:
        """Events since the last call, oldest first."""
        out, self._events = self._events, []
        return out

    def all_tracks(self) -> list[Track]:
        return [*self.finished, *self.tracks.values()]
