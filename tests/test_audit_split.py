"""Data audit and a leakage-free split on a small generated dataset."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskwatch.errors import DataError
from maskwatch.train.audit import audit_dataset
from maskwatch.train.split import load_split_file, save_split, split_samples


def _img(path: Path, seed: int, size: int = 64) -> None:
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(blocks).resize((size, size), Image.NEAREST).save(path)


@pytest.fixture()
def dataset(tmp_path) -> Path:
    root = tmp_path / "data set"
    for c in ("with_mask", "without_mask"):
        (root / c).mkdir(parents=True)
    for i in range(30):
        _img(root / "with_mask" / f"m{i}.png", i)
    for i in range(20):
        _img(root / "without_mask" / f"n{i}.png", 100 + i)
    for i in range(6):  # one person, six photos
        _img(root / "without_mask" / f"0_0_alice_{i:04d}.png", 200 + i)
    shutil.copy(root / "with_mask" / "m0.png", root / "with_mask" / "m0 copy.png")  # exact duplicate
    Image.open(root / "with_mask" / "m1.png").resize((50, 50)).convert("RGB").save(
        root / "with_mask" / "m1_small.jpg", quality=85)  # near duplicate
    (root / "with_mask" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    return root


def test_audit_finds_duplicates_identities_and_unreadable_files(dataset):
    rep = audit_dataset(dataset, progress=False)
    assert rep.counts == {"with_mask": 33, "without_mask": 26}
    assert [Path(p).name for p, _ in rep.unreadable] == ["broken.jpg"]
    assert len(rep.exact_duplicates) == 1 and len(rep.samples) == 33 + 26 - 2
    assert rep.identity_groups == 1
    groups = {s.path.name: s.group for s in rep.samples}
    assert groups["m1.png"] == groups["m1_small.jpg"]
    assert len({g for n, g in groups.items() if "alice" in n}) == 1
    assert "unreadable files skipped: 1" in rep.text()


def test_split_keeps_groups_on_one_side_and_is_seeded(dataset, tmp_path):
    rep = audit_dataset(dataset, progress=False)
    a = split_samples(rep.samples, seed=3)
    b = split_samples(rep.samples, seed=3)
    assert {k: [s.path for s in v] for k, v in a.items()} == {k: [s.path for s in v] for k, v in b.items()}
    side = {}
    for name, members in a.items():
        for s in members:
            assert side.setdefault(s.group, name) == name, f"group {s.group} split across sides"
    assert sum(len(v) for v in a.values()) == len(rep.samples)
    assert all(a[k] for k in a)
    save_split(a, tmp_path / "splits", dataset)
    back = load_split_file(tmp_path / "splits" / "test.txt", dataset)
    assert sorted(p for _, p in back) == sorted(s.path for s in a["test"])


def test_missing_or_empty_class_folder(tmp_path):
    (tmp_path / "with_mask").mkdir()
    _img(tmp_path / "with_mask" / "a.png", 1)
    with pytest.raises(DataError, match="without_mask/' is missing"):
        audit_dataset(tmp_path, progress=False)
    (tmp_path / "without_mask").mkdir()
    with pytest.raises(DataError, match="no images"):
        audit_dataset(tmp_path, progress=False)
