"""Audit a class-per-folder dataset before training.

Finds unreadable files (skipped and listed), exact duplicates (content hash), near duplicates
(difference hash of the pixels) and identity groups (``N_N_<name>_NNNN.jpg`` files show the same
person), and counts classes. Duplicates and identities are merged into *groups* that the split keeps
on one side, so no test image has a copy or a sibling in training.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from maskwatch.data import list_class_files  # noqa: F401 - its home is maskwatch.data
from maskwatch.errors import MaskwatchError
from maskwatch.io.images import decode_image

log = logging.getLogger(__name__)

DEFAULT_CLASSES = ("with_mask", "without_mask")
IDENTITY_RE = re.compile(r"^\d+_\d+_(?P<name>.+?)_\d+$")
#: Two images whose 64-bit difference hashes differ in at most this many bits are near duplicates.
NEAR_DUPLICATE_BITS = 4


@dataclass
class Sample:
    path: Path
    label: str
    sha256: str
    dhash: int
    group: str = ""


@dataclass
class AuditReport:
    """What the audit found; ``samples`` are the images kept for training (one per exact duplicate)."""

    data_dir: str
    classes: list[str]
    counts: dict[str, int]
    kept_counts: dict[str, int]
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    exact_duplicates: list[list[str]] = field(default_factory=list)
    near_duplicates: list[list[str]] = field(default_factory=list)
    label_conflicts: list[list[str]] = field(default_factory=list)
    identity_groups: int = 0
    groups: int = 0
    samples: list[Sample] = field(default_factory=list, repr=False)

    def summary(self) -> dict:
        d = asdict(self)
        d.pop("samples")
        d["n_exact_duplicate_files"] = sum(len(g) - 1 for g in self.exact_duplicates)
        d["n_near_duplicate_groups"] = len(self.near_duplicates)
        return d

    def text(self) -> str:
        n_dup = sum(len(g) - 1 for g in self.exact_duplicates)
        lines = [f"Data audit of {self.data_dir}"]
        for c in self.classes:
            lines.append(f"  {c:>14}: {self.counts.get(c, 0):5d} files, {self.kept_counts.get(c, 0):5d} kept")
        lines += [
            f"  unreadable files skipped: {len(self.unreadable)}",
            f"  exact duplicates: {n_dup} extra copies in {len(self.exact_duplicates)} groups (one copy kept)",
            f"  near duplicates: {len(self.near_duplicates)} groups (kept together on one side of the split)",
            f"  same image in two classes (dropped): {len(self.label_conflicts)}",
            f"  identity groups (N_N_<name>_NNNN files): {self.identity_groups}",
            f"  split groups: {self.groups}",
        ]
        for path, reason in self.unreadable[:20]:
            lines.append(f"  skipped {path}: {reason}")
        if len(self.unreadable) > 20:
            lines.append(f"  ... and {len(self.unreadable) - 20} more (see audit.json)")
        return "\n".join(lines)

    def save(self, folder: Path) -> None:
        (folder / "audit.json").write_text(json.dumps(self.summary(), indent=2, default=str))
        (folder / "audit.txt").write_text(self.text() + "\n")


def dhash(image_bgr: np.ndarray) -> int:
    """64-bit difference hash: robust to resizing and re-encoding, sensitive to content."""
    gray = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
    small = cv2.resize(gray, (9, 8), interpolation=cv2.INTER_AREA)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return int(np.packbits(bits).view(">u8")[0])


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _near_pairs(hashes: np.ndarray, max_bits: int) -> list[tuple[int, int]]:
    """All index pairs whose hashes differ in at most ``max_bits`` bits (vectorised, O(n^2) memory-light)."""
    as_bytes = hashes.astype(">u8").view(np.uint8).reshape(-1, 8)
    popcount = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(1).astype(np.uint8)
    pairs = []
    for i in range(len(hashes) - 1):
        dist = popcount[np.bitwise_xor(as_bytes[i + 1:], as_bytes[i])].sum(1)
        for j in np.nonzero(dist <= max_bits)[0]:
            pairs.append((i, i + 1 + int(j)))
    return pairs


def audit_dataset(
    data_dir: str | Path,
    classes: Sequence[str] = DEFAULT_CLASSES,
    near_bits: int = NEAR_DUPLICATE_BITS,
    progress: bool = True,
) -> AuditReport:
    """Scan ``data_dir/<class>/`` folders and return an :class:`AuditReport` with grouped samples."""
    data_dir = Path(data_dir)
    files = list_class_files(data_dir, classes)
    report = AuditReport(str(data_dir), list(classes), {c: len(v) for c, v in files.items()}, {})
    samples: list[Sample] = []
    todo = [(p, c) for c, paths in files.items() for p in paths]
    for path, label in tqdm(todo, desc="audit", unit="img", disable=None if progress else True, leave=False):
        try:
            data = path.read_bytes()
            image = decode_image(data, name=str(path))
        except (MaskwatchError, OSError) as exc:
            report.unreadable.append((str(path), str(exc).split(": ", 1)[-1]))
            continue
        samples.append(Sample(path, label, hashlib.sha256(data).hexdigest(), dhash(image)))

    # Exact duplicates: keep the first copy; a file present in two classes is dropped entirely.
    by_hash: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        by_hash[s.sha256].append(s)
    kept: list[Sample] = []
    for group in by_hash.values():
        if len(group) > 1:
            names = [str(s.path) for s in group]
            if len({s.label for s in group}) > 1:
                report.label_conflicts.append(names)
                continue
            report.exact_duplicates.append(names)
        kept.append(group[0])

    # Groups: identity names and near duplicates, merged with union-find.
    uf = _UnionFind(len(kept))
    by_identity: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(kept):
        m = IDENTITY_RE.match(s.path.stem)
        if m:
            by_identity[f"{s.label}/{m.group('name')}"].append(i)
    for members in by_identity.values():
        for j in members[1:]:
            uf.union(members[0], j)
    report.identity_groups = len(by_identity)
    hashes = np.array([s.dhash for s in kept], dtype=np.uint64)
    near: dict[int, set[int]] = defaultdict(set)
    for i, j in _near_pairs(hashes, near_bits):
        uf.union(i, j)
        near[i].add(j)
    near_groups: dict[int, set[int]] = defaultdict(set)
    for i, js in near.items():
        root = uf.find(i)
        near_groups[root].update({i, *js})
    report.near_duplicates = [sorted(str(kept[k].path) for k in g) for g in near_groups.values()]
    for i, s in enumerate(kept):
        s.group = f"g{uf.find(i)}"
    report.groups = len({s.group for s in kept})
    report.samples = kept
    report.kept_counts = dict(Counter(s.label for s in kept))
    return report
