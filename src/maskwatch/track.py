"""Follow faces from frame to frame in a video, so each face is classified once and then now and then.

A face matched to a track (IoU with the track's last box) reuses the track's label; the classifier
runs on new faces and on tracks whose last verdict is older than ``reclassify_every`` frames, and a
track's probabilities are the running mean of its verdicts, which steadies labels that would flicker
frame by frame. Track ids also let video analytics count faces rather than detections.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from maskwatch.boxes import box_iou


@dataclass
class Track:
    id: int
    box: np.ndarray
    last_seen: int
    probs_sum: np.ndarray
    n_votes: int = 0
    last_classified: int = -(10**9)
    first_seen: int = 0
    frames_seen: int = 1

    @property
    def probs(self) -> np.ndarray:
        return self.probs_sum / max(self.n_votes, 1)


@dataclass
class FaceTracker:
    """Greedy IoU tracker with periodic re-classification.

    Args:
        n_classes: length of a probability vector.
        iou_threshold: minimum IoU between a face and a track's last box to continue the track.
        max_age: frames a track survives without being matched.
        reclassify_every: frames after which a tracked face is classified again (1 = every frame).
        min_votes: a track is classified on each of its first ``min_votes`` frames regardless.
    """

    n_classes: int
    iou_threshold: float = 0.3
    max_age: int = 8
    reclassify_every: int = 5
    min_votes: int = 2
    tracks: dict[int, Track] = field(default_factory=dict)
    finished: list[Track] = field(default_factory=list)
    _next_id: int = 1

    def assign(self, boxes: np.ndarray, frame: int) -> tuple[list[int], list[int]]:
        """Match ``boxes`` to tracks; return each box's track id and the indices that need the classifier."""
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
                self.tracks[tid] = Track(tid, boxes[bi].copy(), frame, np.zeros(self.n_classes, np.float64),
                                         first_seen=frame, frames_seen=0)
                track_of[bi] = tid
            t = self.tracks[tid]
            t.box = np.asarray(boxes[bi], np.float32).copy()
            t.last_seen = frame
            t.frames_seen += 1
            if t.n_votes < self.min_votes or frame - t.last_classified >= self.reclassify_every:
                need.append(bi)
        for tid in [tid for tid, t in self.tracks.items() if frame - t.last_seen > self.max_age]:
            self.finished.append(self.tracks.pop(tid))
        return track_of, need

    def vote(self, track_id: int, probs: np.ndarray, frame: int) -> None:
        """Add one classifier verdict to a track."""
        t = self.tracks[track_id]
        t.probs_sum += probs
        t.n_votes += 1
        t.last_classified = frame

    def all_tracks(self) -> list[Track]:
        return [*self.finished, *self.tracks.values()]
