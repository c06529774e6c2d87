"""Split audited samples into train / validation / test by group, stratified by class, seedable."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from maskwatch.data import load_split_file  # noqa: F401 - its home is maskwatch.data
from maskwatch.errors import DataError
from maskwatch.train.audit import Sample

SPLITS = ("train", "val", "test")


def _shortfall(target: float, have: int) -> float:
    """How much a split still lacks of a class, relative to its target (-inf when it wants none)."""
    return (target - have) / target if target > 0 else float("-inf")


def split_samples(
    samples: Sequence[Sample], fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0
) -> dict[str, list[Sample]]:
    """Assign whole groups to splits so that each split gets close to its share of every class.

    Groups are placed largest first (random order among equals) into the split that lacks the most of
    the group's majority class, relative to its target; no group is ever divided.
    """
    if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0:
        raise DataError(f"split fractions must be >= 0 and add up to 1, got {fractions}")
    groups: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        groups[s.group or str(s.path)].append(s)
    class_totals = Counter(s.label for s in samples)
    target = {sp: {c: f * n for c, n in class_totals.items()} for sp, f in zip(SPLITS, fractions)}
    have = {sp: Counter() for sp in SPLITS}
    rng = random.Random(seed)
    keys = sorted(groups)
    rng.shuffle(keys)
    keys.sort(key=lambda k: -len(groups[k]))
    out: dict[str, list[Sample]] = {sp: [] for sp in SPLITS}
    for k in keys:
        members = groups[k]
        label = Counter(s.label for s in members).most_common(1)[0][0]
        best = max(SPLITS, key=lambda sp, c=label: _shortfall(target[sp][c], have[sp][c]))
        out[best].extend(members)
        have[best].update(s.label for s in members)
    for sp, f in zip(SPLITS, fractions):
        if f > 0 and not out[sp]:
            raise DataError(f"the {sp} split is empty: the dataset has too few groups ({len(groups)}) to split")
    return out


def _rel(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return Path(path).relative_to(root).as_posix()
        except ValueError:
            pass
    return str(path)


def save_split(split: dict[str, list[Sample]], folder: Path, root: Path | None = None) -> None:
    """Write ``<split>.txt`` file lists (``label<TAB>path``, relative to ``root``) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, members in split.items():
        lines = [f"{s.label}\t{_rel(s.path, root)}" for s in sorted(members, key=lambda s: str(s.path))]
        (folder / f"{name}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))


def split_scene_images(images: Sequence, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15), seed: int = 0,
                       near_bits: int = 4, progress: bool = False) -> tuple[dict[str, list], int]:
    """Split scene photos (:class:`~maskwatch.evaluate.scenes.SceneImage`) by image into train / val / test.

    Near-duplicate photos (difference hash within ``near_bits`` bits, e.g. the same shot re-encoded or
    resized) form one group and land on one side. Each photo is stratified by its rarest face class
    (``mask_incorrect`` before ``without_mask`` before ``with_mask``), so the rare classes spread over
    every split. Returns the split and the number of near-duplicate groups (of 2 or more photos).
    """
    from tqdm import tqdm

    from maskwatch.io.images import decode_image
    from maskwatch.train.audit import _near_pairs, _UnionFind, dhash

    rarity = ("mask_incorrect", "without_mask", "with_mask")
    hashes = np.array([dhash(decode_image(im.path)) for im in tqdm(images, desc="dhash", disable=not progress)],
                      dtype=np.uint64)
    uf = _UnionFind(len(images))
    for i, j in _near_pairs(hashes, near_bits):
        uf.union(i, j)
    samples = []
    for i, im in enumerate(images):
        label = next((c for c in rarity if c in im.labels), "no_face")
        samples.append(Sample(Path(im.path), label, "", int(hashes[i]), f"g{uf.find(i)}"))
    sizes = Counter(s.group for s in samples)
    split = split_samples(samples, fractions, seed)
    by_path = {Path(im.path): im for im in images}
    return {k: [by_path[s.path] for s in v] for k, v in split.items()}, sum(1 for n in sizes.values() if n > 1)
