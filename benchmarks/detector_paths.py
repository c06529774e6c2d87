"""Does `maskwatch detect` run as fast as `maskwatch benchmark` says, for each face detector?

Runs both commands as a user would (fresh processes, nothing warmed up) on each clip and detector and
prints wall time and frames/s side by side. Speed is measured here, never asserted in a test.

    python benchmarks/detector_paths.py                      # single-masked.mp4 and airport-crowd.mp4
    python benchmarks/detector_paths.py --clips a.mp4 b.mp4 --detectors yunet yuface
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

SHARED = Path(os.environ.get("MASKWATCH_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))


def run_detect(clip: Path, detector: str) -> tuple[float, float, int]:
    """Wall seconds of the whole `detect` process, its own frames/s line, and the frame count."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "maskwatch", "detect", str(clip), "--detector", detector],
                          capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    m = re.search(r"(\d+) frames in [\d.]+ s \(([\d.]+) frames/s\)", proc.stderr)
    if not m:
        raise SystemExit(f"unexpected detect output: {proc.stderr}")
    return wall, float(m.group(2)), int(m.group(1))


def run_benchmark(clip: Path, detector: str, frames: int) -> float:
    """frames/s that `maskwatch benchmark` reports for the tracked pipeline (what detect runs)."""
    proc = subprocess.run([sys.executable, "-m", "maskwatch", "benchmark", str(clip), "--detector", detector,
                           "--frames", str(frames)], capture_output=True, text=True, check=True)
    m = re.search(r"maskwatch \(tracked[^)]*\)\s+([\d.]+)", proc.stdout)
    if not m:
        raise SystemExit(f"unexpected benchmark output: {proc.stdout}")
    return float(m.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    video = SHARED / "data" / "video"
    ap.add_argument("--clips", nargs="+", type=Path,
                    default=[video / "single-masked.mp4", video / "airport-crowd.mp4"])
    ap.add_argument("--detectors", nargs="+", default=["yunet", "yuface"])
    args = ap.parse_args()
    print(f"{'clip':<22} {'detector':<8} {'detect wall s':>13} {'detect fps':>10} {'benchmark fps':>13} "
          f"{'detect/benchmark':>16}")
    for clip in args.clips:
        for det in args.detectors:
            wall, fps, n = run_detect(clip, det)
            bench = run_benchmark(clip, det, n)
            print(f"{clip.name:<22} {det:<8} {wall:13.1f} {fps:10.1f} {bench:13.1f} {fps / bench:16.2f}", flush=True)


if __name__ == "__main__":
    main()
