"""Video analytics from a stream of results: faces counted by track, not by detection.

A track is one face followed across frames; a person who turns away or is hidden for a while
starts a new track, so track counts are an upper bound on the number of people."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np

from maskwatch.results import FrameResult


class VideoStats:
    """Accumulates per-source statistics while results stream past (feed with :meth:`add`)."""

    def __init__(self, min_track_frames: int = 3) -> None:
        self.min_track_frames = min_track_frames
        self._frames: dict[str, int] = defaultdict(int)
        self._faces: dict[str, list[int]] = defaultdict(list)
        self._tracks: dict[str, dict[int, list[np.ndarray]]] = defaultdict(lambda: defaultdict(list))
        self._labels: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._classes: tuple[str, ...] = ()

    def add(self, result: FrameResult) -> None:
        src = result.source
        self._frames[src] += 1
        self._faces[src].append(len(result.faces))
        for f in result.faces:
            self._labels[src][f.label] += 1
            if not self._classes:
                self._classes = tuple(f.probs)
            if f.track_id is not None:
                self._tracks[src][f.track_id].append(np.array([f.probs[c] for c in self._classes]))

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per source: frames, faces per frame (mean / max), detections per label, and face tracks
        (seen on at least ``min_track_frames`` frames) per label by their mean probabilities."""
        out = {}
        for src, n in self._frames.items():
            faces = self._faces[src]
            tracks: dict[str, int] = {c: 0 for c in self._classes}
            for probs in self._tracks[src].values():
                if len(probs) >= self.min_track_frames:
                    label = self._classes[int(np.mean(probs, axis=0).argmax())]
                    tracks[label] += 1
            out[src] = {
                "frames": n,
                "faces_per_frame_mean": round(float(np.mean(faces)) if faces else 0.0, 2),
                "faces_per_frame_max": int(max(faces, default=0)),
                "detections": dict(self._labels[src]),
                "tracks": tracks if self._tracks[src] else None,
            }
        return out


def summarize(results: Iterable[FrameResult], min_track_frames: int = 3) -> dict[str, dict[str, Any]]:
    """Summarise a finished stream of results; see :class:`VideoStats`."""
    stats = VideoStats(min_track_frames)
    for r in results:
        stats.add(r)
    return stats.summary()
