"""Why the classifier runs in a tracked video: per frame, how many faces it classified and why
(new track, young track, a disagreeing verdict being confirmed, the periodic look at an unsure
track, the periodic look at a stable one or a stable face that changed size). Run from the
repository root::

    python benchmarks/reclassify_reasons.py [CLIP] [--frames 300]
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
from pathlib import Path

from maskwatch import track
from maskwatch.engine import MaskDetector

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MASKWATCH_SHARED", REPO.parent / "shared"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clip", nargs="?", default=str(SHARED / "data" / "video" / "airport-crowd.mp4"))
    ap.add_argument("--frames", type=int, default=300)
    args = ap.parse_args()
    reasons: Counter = Counter()
    assign = track.FaceTracker.assign

    def counting_assign(self, boxes, frame, t=None):
        before = {tid: (tr.n_votes, tr.contested, tr.streak) for tid, tr in self.tracks.items()}
        ids, need = assign(self, boxes, frame, t)
        for i in need:
            if ids[i] not in before:
                reasons["new track"] += 1
                continue
            votes, contested, streak = before[ids[i]]
            reasons["young track" if votes < self.min_votes else "confirming a disagreeing verdict" if contested
                    else "stable: due, or its size changed" if streak >= self.stable_votes
                    else "unsure track: due"] += 1
        return ids, need

    track.FaceTracker.assign = counting_assign
    n = faces = 0
    for result in MaskDetector().process([args.clip]):
        n += 1
        faces += len(result.faces)
        if n >= args.frames:
            break
    print(f"{args.clip}: {n} frames, {faces / n:.1f} faces per frame, {sum(reasons.values()) / n:.2f} classified")
    for why, count in reasons.most_common():
        print(f"  {why:<36} {count / n:.2f} per frame")


if __name__ == "__main__":
    main()
