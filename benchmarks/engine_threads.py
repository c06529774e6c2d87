"""One MaskDetector shared by N threads: do they give the serial results, and how fast?

    python benchmarks/engine_threads.py [--photos 40] [--threads 4]

Prints how many of the threaded calls raised, how many results differ from the serial ones, and
photos per second serial against threaded (issue 16: 77 of 160 calls raised cv2.error before
per-thread face detectors).
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2

import maskwatch

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=40)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "scenes-kaggle" / "images")
    args = ap.parse_args()
    photos = [(p.name, cv2.imread(str(p))) for p in sorted(args.data.glob("*.jpg"))[: args.photos]]
    det = maskwatch.MaskDetector()
    t0 = time.perf_counter()
    serial = [det.detect(img, source=name).to_dict() for name, img in photos]
    t_serial = time.perf_counter() - t0
    errors = 0

    def one(item):
        nonlocal errors
        try:
            return det.detect(item[1], source=item[0]).to_dict()
        except Exception:  # noqa: BLE001 - counted, that is the point
            errors += 1
            return None

    t0 = time.perf_counter()
    with ThreadPoolExecutor(args.threads) as pool:
        threaded = list(pool.map(one, photos * args.threads))
    t_threaded = time.perf_counter() - t0
    differ = sum(a != b for a, b in zip(threaded, serial * args.threads) if a is not None)
    n = len(photos) * args.threads
    print(f"{args.threads} threads x {len(photos)} photos on one detector: {errors} of {n} calls raised, "
          f"{differ} results differ from the serial ones")
    print(f"serial {len(photos) / t_serial:.1f} photos/s; threaded {n / t_threaded:.1f} photos/s")


if __name__ == "__main__":
    main()
