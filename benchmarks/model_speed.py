"""Milliseconds per face of maskwatch classifiers on real small faces, all models timed in the same run.

The faces are the annotated faces of scenes-kaggle val photos (real crowd faces, mostly 15-40 px), cut
as inference cuts them; each model classifies them through ``MaskClassifier.predict`` (the one
preprocessing path: resize to the model's input, then ONNX Runtime on one thread) in batches of
``--batch`` faces (the video engine classifies about 2.4 faces per frame). Rounds are interleaved
across models, so a busy machine slows them alike; the median round is reported.

    python benchmarks/model_speed.py MODEL.onnx [MODEL2.onnx ...] [--batch 2] [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MASKWATCH_SHARED", REPO.parent / "shared"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", type=Path, nargs="+")
    ap.add_argument("--split", type=Path, default=REPO / "docs" / "scenes-kaggle" / "val.txt")
    ap.add_argument("--faces", type=int, default=200)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    from maskwatch.classify.model import MaskClassifier
    from maskwatch.evaluate.scenes import load_scenes, read_scene_list, select_scenes
    from maskwatch.io.images import decode_image
    from maskwatch.preprocess import crop_face

    data = SHARED / "data" / "scenes-kaggle"
    images = select_scenes(load_scenes(data), data, read_scene_list(args.split), str(args.split))
    crops, widths = [], []
    for im in images:
        photo = decode_image(im.path)
        for box in im.boxes:
            if min(box[2] - box[0], box[3] - box[1]) >= 8:
                crops.append(crop_face(photo, box, 0.05))
                widths.append(box[2] - box[0])
        if len(crops) >= args.faces:
            break
    crops = crops[:args.faces]
    models = {str(p): MaskClassifier(p) for p in args.models}
    times: dict[str, list[float]] = {k: [] for k in models}
    for c in models.values():
        c.predict(crops[:args.batch], batch_size=args.batch)
    for _ in range(args.rounds):
        for k, c in models.items():
            t = time.perf_counter()
            for i in range(0, len(crops), args.batch):
                c.predict(crops[i:i + args.batch], batch_size=args.batch)
            times[k].append((time.perf_counter() - t) / len(crops) * 1e3)
    print(f"{len(crops)} real faces (median width {np.median(widths):.0f} px), batches of {args.batch}, "
          f"one thread, {args.rounds} interleaved rounds; load average {os.getloadavg()[0]:.1f}")
    print(f"{'model':<60}{'input':>6}{'MB':>6}{'median ms/face':>16}{'min':>7}")
    for k, c in models.items():
        v = times[k]
        print(f"{k[-60:]:<60}{c.input_size:>6}{Path(k).stat().st_size / 1e6:>6.1f}{np.median(v):>16.2f}{min(v):>7.2f}")


if __name__ == "__main__":
    main()
