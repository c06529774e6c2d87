"""The classifier alone on real faces: crops cut from a scene dataset's annotated boxes (the photos of
one split list), as inference cuts them. Prints per-class precision / recall (mask_incorrect
included), the confusion matrix, how many unmasked faces are called with_mask at >= 0.9, and the
abstention (uncertain) rate. Run from the repository root::

    python benchmarks/real_crops.py --split docs/scenes-kaggle/val.txt [--model M.onnx] [--no-mirror]

Faces are classified as photos are: with their mirror image (``--no-mirror``: the crop alone).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MASKWATCH_SHARED", REPO.parent / "shared"))

from maskwatch.classify.calibration import expected_calibration_error  # noqa: E402
from maskwatch.classify.model import MaskClassifier  # noqa: E402
from maskwatch.evaluate.scenes import load_scenes, read_scene_list, select_scenes  # noqa: E402
from maskwatch.train.scene_crops import load_scene_crops  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=SHARED / "data" / "scenes-kaggle")
    ap.add_argument("--split", type=Path, required=True)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--mirror", action=argparse.BooleanOptionalAction, default=True)
    args = ap.parse_args()
    clf = MaskClassifier(args.model)
    margin = float(clf.info.preprocessing.get("margin", 0.05))
    images = select_scenes(load_scenes(args.data), args.data, read_scene_list(args.split), str(args.split))
    classes = list(clf.classes) + [c for c in ("mask_incorrect",) if c not in clf.classes]
    x, y, _, _ = load_scene_crops(images, classes, clf.input_size, margin, progress=False)
    p = np.concatenate([clf.predict_batch(x[i:i + 32].astype(np.float32), mirror=args.mirror)
                        for i in range(0, len(x), 32)])
    p = np.concatenate([p, np.zeros((len(p), len(classes) - p.shape[1]))], axis=1)
    pred, unsure = p.argmax(1), clf.uncertain(p[:, :len(clf.classes)])
    print(f"{args.split}: {len(images)} photos, {len(y)} faces; model {clf.path.name} ({', '.join(clf.classes)}); "
          f"{'with' if args.mirror else 'without'} mirror images")
    print(f"accuracy {np.mean(pred == y):.4f}; uncertain {unsure.sum()} ({unsure.mean():.1%}); "
          f"accuracy of the faces that keep a label {np.mean(pred[~unsure] == y[~unsure]):.4f}")
    print(f"calibration error (ECE, 15 bins) {expected_calibration_error(p, y):.4f}")
    print(f"{'class':<16}{'n':>6}{'prec':>8}{'recall':>8}   (top-1, before abstention)")
    for k, c in enumerate(classes):
        n, tp, npred = int((y == k).sum()), int(((pred == k) & (y == k)).sum()), int((pred == k).sum())
        print(f"{c:<16}{n:>6}{tp / npred if npred else 0:>8.3f}{tp / n if n else float('nan'):>8.3f}")
    print("confusion (rows true, columns predicted): " + str(
        [[int(((y == i) & (pred == j)).sum()) for j in range(len(classes))] for i in range(len(classes))]))
    kw, kn = classes.index("with_mask"), classes.index("without_mask")
    bad = (y == kn) & (pred == kw) & (p[:, kw] >= 0.9)
    print(f"unmasked faces called with_mask at >= 0.9: {bad.sum()} of {(y == kn).sum()} "
          f"({bad.sum() / max(1, (y == kn).sum()):.1%})")


if __name__ == "__main__":
    main()
