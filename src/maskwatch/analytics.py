"""Video analytics from a stream of results: people counted by face track, not by detection.

A track is one face followed across frames; a person who turns away or is hidden for a while
starts a new track, so track counts are an upper bound on the number of people. A track's label
follows its recent verdicts (see :mod:`maskwatch.track`), so a person who puts a mask on is counted
as seen both without and with a mask.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np

from maskwatch.results import FrameResult
from maskwatch.track import COMPLIANT_LABELS


class VideoStats:
    """Accumulates per-source statistics while results stream past; a sink (``write`` / ``close``).

    Args:
        min_track_frames: a track counts as a person when seen on at least this many frames.
    """

    def __init__(self, min_track_frames: int = 3) -> None:
        self.min_track_frames = min_track_frames
        self._frames: dict[str, int] = defaultdict(int)
        self._faces: dict[str, list[int]] = defaultdict(list)
        self._labels: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._tracks: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._tracked: dict[str, bool] = defaultdict(bool)
        self._classes: tuple[str, ...] = ()

    def add(self, result: FrameResult) -> None:
        """Count one frame (images are ignored: they have no time)."""
        if result.frame is None:
            return
        src = result.source
        self._frames[src] += 1
        self._faces[src].append(len(result.faces))
        for f in result.faces:
            self._labels[src][f.label] += 1
            if not self._classes:
                self._classes = tuple(f.probs)
            if f.track_id is not None:
                self._tracked[src] = True
        for ev in result.events:
            if ev.kind == "track_ended" and ev.track is not None:
                self._tracks[src].append(ev.track)

    write = add

    def close(self) -> None:
        """Nothing to release (sink protocol)."""

    def tracks(self, source: str) -> list[dict[str, Any]]:
        """Every ended track of ``source`` (summaries, see :meth:`maskwatch.track.Track.summary`)."""
        return list(self._tracks.get(source, []))

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per source: frames, faces per frame (mean / max), detections per label, and people: face
        tracks seen on at least ``min_track_frames`` frames, counted under every label they held
        (``tracks``), with how many changed label and the time they spent without a mask."""
        out = {}
        for src, n in self._frames.items():
            faces = self._faces[src]
            people = [t for t in self._tracks[src] if t["frames"] >= self.min_track_frames]
            seen = {c: 0 for c in self._classes}
            for t in people:
                for label in t["labels_seen"]:
                    seen[label] = seen.get(label, 0) + 1
            out[src] = {
                "frames": n,
                "faces_per_frame_mean": round(float(np.mean(faces)) if faces else 0.0, 2),
                "faces_per_frame_max": int(max(faces, default=0)),
                "detections": dict(self._labels[src]),
                "tracks": seen if self._tracked[src] else None,
                "people": len(people) if self._tracked[src] else None,
                "changed_label": sum(bool(t["changes"]) for t in people),
                "compliant_only": sum(all(x in COMPLIANT_LABELS for x in t["labels_seen"]) for t in people),
                "unmasked_s": round(sum(t["unmasked_s"] for t in people), 2),
            }
        return out


def summarize(results: Iterable[FrameResult], min_track_frames: int = 3) -> dict[str, dict[str, Any]]:
    """Summarise a finished stream of results; see :class:`VideoStats`."""
    stats = VideoStats(min_track_frames)
    for r in results:
        stats.add(r)
    return stats.summary()
