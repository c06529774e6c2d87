"""How far classifier work alone can take scene mAP: the same face boxes, scored once with the
bundled classifier and once with a perfect one (every detection that overlaps a labelled face takes
that face's true label with probability 1; false faces keep the classifier's answer).

The perfect-classifier row is the ceiling the face stage leaves: no classifier reaches a higher top-1
mAP@0.5 with these boxes. Rows are printed for box calibrations given on the command line, so the
ceiling under the shipped calibration can be compared with the best calibration for one annotation
style. Run from the repository root::

    python benchmarks/scene_ceiling.py --split docs/scenes-kaggle/val.txt
    python benchmarks/scene_ceiling.py --data ../shared/data/scenes-dev
"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MASKWATCH_SHARED", REPO.parent / "shared"))

from maskwatch.engine import MaskDetector
from maskwatch.evaluate.detection import (
    ScenePrediction,
    match_pairs,
    predict_scenes,
    scene_metrics,
)
from maskwatch.evaluate.scenes import (
    SCENE_CLASSES,
    load_scenes,
    read_scene_list,
    select_scenes,
)
from maskwatch.faces.detector import DetectorSettings


def perfect_classifier(preds: list[ScenePrediction], images, iou: float = 0.5) -> list[ScenePrediction]:
    """``preds`` with every detection matched to a labelled face (class-agnostic, by face score) given
    that face's label at probability 1 and never uncertain; unmatched detections are left as they are."""
    out = []
    for p, im in zip(preds, images):
        probs, unsure = p.probs.copy(), p.uncertain.copy()
        for i, j in enumerate(match_pairs(p.boxes, p.face_scores, im.boxes, iou)):
            if j >= 0:
                probs[i] = 0.0
                probs[i, SCENE_CLASSES.index(im.labels[j])] = 1.0
                unsure[i] = False
        out.append(ScenePrediction(p.boxes, p.face_scores, probs, unsure))
    return out


def parse_calibration(text: str) -> tuple[str, tuple[float, float], tuple[float, float]]:
    """``NAME=sx,sy,dx,dy`` -> (name, box_scale, box_shift)."""
    name, _, values = text.partition("=")
    sx, sy, dx, dy = (float(v) for v in values.split(","))
    return name, (sx, sy), (dx, dy)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=SHARED / "data" / "scenes-kaggle")
    ap.add_argument("--split", type=Path, default=None, help="a list of photos (default: every photo)")
    ap.add_argument("--detector", default="auto")
    ap.add_argument("--detect-size", type=int, default=1280)
    ap.add_argument("--calibration", action="append", type=parse_calibration, default=None,
                    help="NAME=sx,sy,dx,dy (repeatable; default: the shipped one and, for comparison, the fits "
                         "on each annotation style alone from docs/faces/fit_faces.txt)")
    args = ap.parse_args()
    images = load_scenes(args.data)
    if args.split is not None:
        images = select_scenes(images, args.data, read_scene_list(args.split), str(args.split))
    shipped = DetectorSettings()
    calibrations = args.calibration or [
        ("shipped (both styles)", shipped.box_scale, shipped.box_shift),
        ("fit on scenes-kaggle only", (1.044, 0.913), (0.029, 0.138)),
        ("fit on scenes-dev only", (1.147, 1.206), (0.0, 0.034)),
    ]
    where = f"{args.data.name}" + (f" ({args.split.name})" if args.split else "")
    print(f"{where}: {len(images)} photos, {sum(len(im) for im in images)} faces; detector {args.detector} at "
          f"{args.detect_size} px; top-1 / multi-label mAP@0.5 over with_mask and without_mask")
    print(f"{'box calibration':<28}{'face AP':>9}{'top-1':>8}{'multi':>8}{'ceiling top-1':>15}{'ceiling multi':>15}"
          f"{'w/o-mask recall ceiling':>25}{'face recall, all':>18}")
    for name, scale, shift in calibrations:
        settings = replace(shipped, box_scale=scale, box_shift=shift, detect_size=args.detect_size)
        engine = MaskDetector(detector=args.detector, settings=settings)
        preds = predict_scenes(engine, images, progress=False, score_floor=0.05)
        real = scene_metrics(preds, images, operating_threshold=settings.score_threshold)
        best = scene_metrics(perfect_classifier(preds, images), images, operating_threshold=settings.score_threshold)
        recall = best["operating_point"]["without_mask"]["recall"]
        print(f"{name:<28}{real['face_ap']:>9.3f}{real['map_top1']:>8.3f}{real['map_multilabel']:>8.3f}"
              f"{best['map_top1']:>15.3f}{best['map_multilabel']:>15.3f}{recall:>25.3f}"
              f"{real['face_recall@0.5']:>18.3f}")
    print("ceiling = the same boxes with a perfect classifier; w/o-mask recall ceiling = without_mask recall at the "
          f"operating point (face threshold {shipped.score_threshold}) with a perfect classifier; face recall, all = "
          "labelled faces matched at IoU 0.5 by any detection down to face score 0.05")


if __name__ == "__main__":
    main()
