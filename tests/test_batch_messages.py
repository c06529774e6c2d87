"""What `maskwatch batch` prints: our own lines only, even when Ray Data has something to say."""

from __future__ import annotations

import os

import pytest

from conftest import SHARED, needs_shared, run_cli

os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
pytest.importorskip("ray.data", reason='needs the scale extra: pip install -e ".[scale]"')
pytestmark = [pytest.mark.ray, needs_shared]

PHOTO = SHARED / "data" / "scenes-dev" / "images" / "01242020_masks-qa_151720-780x520.jpg"


def test_more_workers_than_inputs_prints_no_ray_warning(tmp_path):
    """One photo on two workers: Ray Data warns (UserWarning) that one actor will sit idle. The user
    asked for nothing wrong; they must see only maskwatch's summary line."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "one.jpg").write_bytes(PHOTO.read_bytes())
    proc = run_cli("batch", str(folder), "-o", str(tmp_path / "out"), "--workers", "2", "--object-store-mb", "200")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert "Warning" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines and all(ln.startswith("maskwatch: ") for ln in lines), proc.stderr
    assert "1 input: 1 image" in lines[-1], lines[-1]
