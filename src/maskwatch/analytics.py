"""Video analytics from a stream of results: people counted by face track, not by detection.

A track is one face followed across frames; a person who turns away or is hidden for a while
starts a new track, so track counts are an upper bound on the number of people. A track's label
follows its recent verdicts (see :mod:`maskwatch.track`), so a person who puts a mask on is counted
as seen both without and with a mask. The counting itself is :class:`maskwatch.summary.Summary`'s;
this module keeps the older per-source dictionary (:func:`summarize`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from maskwatch.results import FrameResult
from maskwatch.summary import Summary


class VideoStats(Summary):
    """A :class:`~maskwatch.summary.Summary` whose :meth:`summary` gives the older per-video dictionary."""

    def __init__(self, min_track_frames: int = 3) -> None:
        super().__init__(None, min_track_frames)

    add = Summary.write

    def tracks(self, source: str) -> list[dict[str, Any]]:
        """Every ended track of ``source`` (summaries, see :meth:`maskwatch.track.Track.summary`)."""
        s = self.sources.get(source)
        return list(s.tracks) if s is not None else []

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per video source: frames, faces per frame (mean / max), detections per count key (uncertain
        faces apart), and people: face tracks seen on at least ``min_track_frames`` frames, counted
        under every label they held (``tracks``), with how many changed label and the time they spent
        without a mask."""
        out = {}
        for s in self.videos():
            people = s.people()
            out[s.source] = {
                "frames": s.frames,
                "faces_per_frame_mean": s.faces_per_frame_mean,
                "faces_per_frame_max": s.faces_per_frame_max,
                "detections": {k: v for k, v in s.counts.items() if v},
                "tracks": people["people_seen"] if people else None,
                "people": people["people"] if people else None,
                "changed_label": people["changed_label"] if people else 0,
                "compliant_only": people["compliant_only"] if people else 0,
                "unmasked_s": people["unmasked_s"] if people else 0.0,
            }
        return out


def summarize(results: Iterable[FrameResult], min_track_frames: int = 3) -> dict[str, dict[str, Any]]:
    """Summarise a finished stream of results, per video source; see :class:`VideoStats`."""
    stats = VideoStats(min_track_frames)
    for r in results:
        stats.add(r)
    return stats.summary()
