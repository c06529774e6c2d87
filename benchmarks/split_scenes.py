"""Split a scene dataset by image into train / val / test lists (seeded; near duplicates on one side).

Writes ``train.txt``, ``val.txt``, ``test.txt`` (image paths relative to the dataset) into ``--out``.
The committed lists for ../shared/data/scenes-kaggle came from (defaults)::

    python benchmarks/split_scenes.py

and the classifier's lists for scenes-dev (its FIT half only, less the FIT photos that are near
duplicates of REPORT photos, so that REPORT stays unseen) from::

    python benchmarks/split_scenes.py --data ../shared/data/scenes-dev --only docs/scenes-dev/fit.txt \
        --avoid docs/scenes-dev/report.txt --fractions 0.85 0.15 0 --out docs/scenes-dev/classifier
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
from pathlib import Path

import numpy as np

from maskwatch.evaluate.scenes import load_scenes, read_scene_list, select_scenes, write_scene_list
from maskwatch.io.images import decode_image
from maskwatch.train.audit import _near_pairs, dhash
from maskwatch.train.split import split_scene_images

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MASKWATCH_SHARED", REPO.parent / "shared"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=SHARED / "data" / "scenes-kaggle")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "scenes-kaggle")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fractions", type=float, nargs=3, default=(0.7, 0.15, 0.15))
    ap.add_argument("--near-bits", type=int, default=4)
    ap.add_argument("--only", type=Path, default=None, help="split only the photos of this list")
    ap.add_argument("--avoid", type=Path, default=None,
                    help="leave out every photo that is a near duplicate of a photo of this list")
    args = ap.parse_args()
    images = load_scenes(args.data)
    if args.only is not None:
        images = select_scenes(images, args.data, read_scene_list(args.only), str(args.only))
    if args.avoid is not None:
        avoid = select_scenes(load_scenes(args.data), args.data, read_scene_list(args.avoid), str(args.avoid))
        hashes = np.array([dhash(decode_image(im.path)) for im in [*images, *avoid]], dtype=np.uint64)
        near = {min(pair) for pair in _near_pairs(hashes, args.near_bits) if min(pair) < len(images) <= max(pair)}
        for i in sorted(near):
            print(f"left out (near duplicate of a photo in {args.avoid.name}): {images[i].path.name}")
        images = [im for i, im in enumerate(images) if i not in near]
    split, n_near = split_scene_images(images, tuple(args.fractions), args.seed, args.near_bits, progress=True)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, members in split.items():
        if not members and args.fractions[list(split).index(name)] == 0:
            continue
        faces = Counter(lab for im in members for lab in im.labels)
        header = (f"{args.data.name} {name}: {len(members)} images, {sum(faces.values())} faces "
                  f"({', '.join(f'{k} {v}' for k, v in sorted(faces.items()))})\n"
                  f"python benchmarks/split_scenes.py --data {args.data.name} --seed {args.seed} --fractions "
                  f"{' '.join(map(str, args.fractions))} --near-bits {args.near_bits}"
                  + (f" --only {args.only}" if args.only else "") + (f" --avoid {args.avoid}" if args.avoid else ""))
        write_scene_list(members, args.data, args.out / f"{name}.txt", header)
        print(header.splitlines()[0])
    print(f"near-duplicate groups (2+ photos, kept on one side): {n_near}")


if __name__ == "__main__":
    main()
