"""Split a scene dataset by image into train / val / test lists (seeded; near duplicates on one side).

Writes ``train.txt``, ``val.txt``, ``test.txt`` (image paths relative to the dataset) into ``--out``.
The committed lists for ../shared/data/scenes-kaggle came from (defaults)::

    python benchmarks/split_scenes.py
"""

from __future__ import annotations

import argparse
import os
from collections import Counter
from pathlib import Path

from maskwatch.evaluate.scenes import load_scenes, write_scene_list
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
    args = ap.parse_args()
    images = load_scenes(args.data)
    split, n_near = split_scene_images(images, tuple(args.fractions), args.seed, args.near_bits, progress=True)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, members in split.items():
        faces = Counter(lab for im in members for lab in im.labels)
        header = (f"{args.data.name} {name}: {len(members)} images, {sum(faces.values())} faces "
                  f"({', '.join(f'{k} {v}' for k, v in sorted(faces.items()))})\n"
                  f"python benchmarks/split_scenes.py --seed {args.seed} --fractions "
                  f"{' '.join(map(str, args.fractions))} --near-bits {args.near_bits}")
        write_scene_list(members, args.data, args.out / f"{name}.txt", header)
        print(header.splitlines()[0])
    print(f"near-duplicate groups (2+ photos, kept on one side): {n_near}")


if __name__ == "__main__":
    main()
