"""Compliance over time: who was seen with and without a mask, when, and how sure we are.

:class:`ComplianceReport` is a sink. It counts people as face tracks seen on at least
``min_track_frames`` frames; a person is *compliant* when the label they held longest was a
compliant one (``with_mask``). The compliance rate comes with a 95% Wilson score interval. Over time,
each time bucket counts the tracks present and splits them by the label each held at the end of
the bucket (so the label counts add up to the tracks present).

:meth:`ComplianceReport.save` writes ``summary.json``, ``timeline.csv`` and ``timeline.png`` (a
chart per source) into a folder.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from maskwatch.defaults import MIN_TRACK_FRAMES
from maskwatch.sinks.base import Sink
from maskwatch.summary import COMPLIANT_LABELS, Summary, main_label, people_block, wilson_interval
from maskwatch.wording import count

__all__ = ["ComplianceReport", "main_label", "wilson_interval"]

#: Bucket sizes (seconds) the timeline chooses from: the smallest that gives at most MAX_BUCKETS.
BUCKETS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400)
MAX_BUCKETS = 120


class ComplianceReport(Sink):
    """Sink collecting per-second presence for the timeline; people, alerts and compliance come from
    the run's one :class:`~maskwatch.summary.Summary` (see the module doc).

    Args:
        min_track_frames: a track is a person when seen on at least this many frames.
        bucket_s: timeline bucket in seconds (default: chosen to give at most ``MAX_BUCKETS`` buckets).
        summary: the run's summary sink, when it is one of the run's sinks too (it then counts each
            frame once for both); by default the report keeps its own.
    """

    def __init__(self, min_track_frames: int = MIN_TRACK_FRAMES, bucket_s: float | None = None,
                 summary: Summary | None = None) -> None:
        self.min_track_frames = min_track_frames
        self.bucket_s = bucket_s
        self._own_summary = summary is None
        self.summary_sink = summary if summary is not None else Summary(None, min_track_frames)
        self.classes: tuple[str, ...] = ()
        self._order: list[str] = []
        # source -> second -> track id -> label held last in that second
        self._seconds: dict[str, dict[int, dict[int, str]]] = defaultdict(lambda: defaultdict(dict))
        self._faces_max: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        self._last_t: dict[str, float] = {}
        self._t0: dict[str, float] = {}

    def write(self, result) -> None:
        if self._own_summary:
            self.summary_sink.write(result)
        if result.frame is None:  # still images have no time
            return
        src = result.source
        if src not in self._last_t:
            self._order.append(src)
        t = result.time_s
        if t is None:  # cameras / streams: seconds since their first frame, as the tracker counts
            t = time.monotonic() - self._t0.setdefault(src, time.monotonic())
        self._last_t[src] = t
        sec = int(t)
        slot = self._seconds[src][sec]
        self._faces_max[src][sec] = max(self._faces_max[src][sec], len(result.faces))
        for f in result.faces:
            if not self.classes:
                self.classes = tuple(f.probs)
            if f.track_id is not None:
                slot[f.track_id] = f.label

    def _tracks(self, src: str) -> list[dict[str, Any]]:
        s = self.summary_sink.sources.get(src)
        return s.tracks if s is not None else []

    @property
    def sources(self) -> list[str]:
        """Video sources seen, in order."""
        return list(self._order)

    # ------------------------------------------------------------------ numbers
    def people_block(self, tracks: list[dict[str, Any]]) -> dict[str, Any]:
        """People (tracks seen on enough frames) by main label and by every label seen, compliance
        (:func:`maskwatch.summary.people_block`)."""
        block = people_block(tracks, self.classes, self.min_track_frames)
        block.pop("compliant_only", None)
        return block

    def _bucket(self, src: str) -> float:
        if self.bucket_s:
            return float(self.bucket_s)
        secs = self._seconds[src]
        span = (max(secs) + 1) if secs else 1
        return float(next((b for b in BUCKETS_S if span / b <= MAX_BUCKETS), BUCKETS_S[-1]))

    def timeline(self, src: str) -> list[dict[str, Any]]:
        """Per time bucket of ``src``: tracks present, how many held each label at the end of the bucket,
        and the most faces in one frame."""
        size = self._bucket(src)
        secs = self._seconds[src]
        if not secs:
            return []
        n = int(max(secs) // size) + 1
        rows = []
        for b in range(n):
            lo, hi = b * size, (b + 1) * size
            labels: dict[int, str] = {}
            faces_max = 0
            for s in range(int(lo), int(math.ceil(hi))):
                labels.update(secs.get(s, {}))
                faces_max = max(faces_max, self._faces_max[src].get(s, 0))
            row = {"source": src, "start_s": lo, "end_s": hi, "tracks": len(labels)}
            for c in self.classes:
                row[c] = sum(label == c for label in labels.values())
            row["faces_max"] = faces_max
            rows.append(row)
        return rows

    def summary(self) -> dict[str, Any]:
        """Per source and in total: frames, duration, people, compliance (95% CI), alerts."""
        per = {}
        sources = self.summary_sink.sources
        for src in self._order:
            secs = self._seconds[src]
            per[src] = {
                "frames": sources[src].frames,
                "duration_s": round(self._last_t.get(src, 0.0), 2),
                **self.people_block(self._tracks(src)),
                "alerts": sources[src].alerts,
                "bucket_s": self._bucket(src) if secs else None,
            }
        total = {
            "sources": len(self._order),
            "frames": sum(sources[src].frames for src in self._order),
            **self.people_block([t for src in self._order for t in self._tracks(src)]),
            "alerts": sum(sources[src].alerts for src in self._order),
        }
        return {"min_track_frames": self.min_track_frames, "classes": list(self.classes),
                "compliant_labels": sorted(COMPLIANT_LABELS), "total": total, "sources": per}

    def text(self) -> str:
        """The numbers in a short block for the end of a CLI run."""
        s = self.summary()
        lines = []
        for src, d in [*s["sources"].items(), *([("all sources", s["total"])] if len(s["sources"]) > 1 else [])]:
            if d["people"] == 0:
                lines.append(f"{src}: no person tracked long enough to count")
                continue
            mostly = ", ".join(f"{v} mostly {k}" for k, v in d["people_mostly"].items())
            lo, hi = d["compliance_ci95"]
            lines.append(f"{src}: {count(d['people'], 'person')} ({mostly}); compliance {d['compliance_rate']:.0%} "
                         f"(95% CI {lo:.0%}-{hi:.0%}); {count(d['alerts'], 'alert')}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ files
    def save(self, folder: str | Path) -> list[Path]:
        """Write ``summary.json``, ``timeline.csv`` and ``timeline.png`` into ``folder`` (never overwriting)."""
        from maskwatch.runs import unique_path

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        out = []
        p = unique_path(folder / "summary.json")
        summary = self.summary()
        summary["tracks"] = {src: self._tracks(src) for src in self._order}
        p.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        out.append(p)
        p = unique_path(folder / "timeline.csv")
        with p.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["source", "start_s", "end_s", "tracks", *self.classes, "faces_max"])
            for src in self._order:
                for r in self.timeline(src):
                    w.writerow([r["source"], r["start_s"], r["end_s"], r["tracks"], *(r[c] for c in self.classes),
                                r["faces_max"]])
        out.append(p)
        if self._order:
            p = unique_path(folder / "timeline.png")
            cv2.imwrite(str(p), self.chart())
            out.append(p)
        return out

    def chart(self, width: int = 1000, panel_h: int = 260, max_panels: int = 6) -> np.ndarray:
        """A chart per source: people seen per time bucket, stacked by label, with the compliance rate."""
        from maskwatch.annotate import COLORS_BGR, DEFAULT_COLOR

        sources = self._order[:max_panels]
        img = np.full((panel_h * max(1, len(sources)), width, 3), 255, np.uint8)
        font = cv2.FONT_HERSHEY_SIMPLEX
        summary = self.summary()["sources"]
        order = sorted(self.classes, key=lambda c: (c not in COMPLIANT_LABELS, c))
        for k, src in enumerate(sources):
            y0 = k * panel_h
            left, right, top, bottom = 60, width - 20, y0 + 48, y0 + panel_h - 40
            rows = self.timeline(src)
            d = summary[src]
            name = Path(src).name or src
            rate = "" if d["compliance_rate"] is None else (
                f" - compliance {d['compliance_rate']:.0%} (95% CI {d['compliance_ci95'][0]:.0%}-"
                f"{d['compliance_ci95'][1]:.0%}) of {count(d['people'], 'person')}")
            cv2.putText(img, f"{name}{rate}", (left, y0 + 22), font, 0.55, (30, 30, 30), 1, cv2.LINE_AA)
            x = left
            for c in order:  # legend
                color = COLORS_BGR.get(c, DEFAULT_COLOR)
                cv2.rectangle(img, (x, y0 + 30), (x + 12, y0 + 40), color, -1)
                cv2.putText(img, c, (x + 16, y0 + 40), font, 0.42, (30, 30, 30), 1, cv2.LINE_AA)
                x += 30 + 9 * len(c)
            cv2.line(img, (left, bottom), (right, bottom), (0, 0, 0), 1)
            cv2.line(img, (left, top), (left, bottom), (0, 0, 0), 1)
            if not rows:
                continue
            ymax = max(1, max(sum(r[c] for c in order) for r in rows))
            bw = (right - left) / len(rows)
            for i, r in enumerate(rows):
                yb = bottom
                for c in order:
                    h = int(round(r[c] / ymax * (bottom - top)))
                    if h:
                        x1, x2 = int(left + i * bw + 1), max(int(left + (i + 1) * bw - 1), int(left + i * bw + 2))
                        cv2.rectangle(img, (x1, yb - h), (x2, yb), COLORS_BGR.get(c, DEFAULT_COLOR), -1)
                        yb -= h
            for v in sorted({0, ymax // 2, ymax}):  # y axis
                yy = int(bottom - v / ymax * (bottom - top))
                cv2.putText(img, str(v), (left - 35, yy + 4), font, 0.4, (60, 60, 60), 1, cv2.LINE_AA)
            end = rows[-1]["end_s"]
            for frac in (0, 0.25, 0.5, 0.75, 1):  # x axis: time
                xx = int(left + frac * (right - left))
                cv2.putText(img, _fmt_time(frac * end), (max(0, xx - 18), bottom + 18), font, 0.4, (60, 60, 60), 1,
                            cv2.LINE_AA)
            cv2.putText(img, f"people per {rows[0]['end_s'] - rows[0]['start_s']:g} s", (left, bottom + 34), font,
                        0.4, (90, 90, 90), 1, cv2.LINE_AA)
        return img


def _fmt_time(s: float) -> str:
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}:{s % 60:02d}"
    return f"{s // 3600}h{(s % 3600) // 60:02d}"
