"""Inputs that used to hang or end in 'internal error': FIFOs, lying JPEG headers, unreadable folders,
bad batch output folders, a manifest naming a missing file, benchmark --json onto an existing file."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest

from conftest import SHARED, assert_one_line_error, needs_shared, run_cli

PHOTO = SHARED / "data" / "scenes-kaggle" / "images" / "maksssksksss0.jpg"


def test_a_fifo_is_refused_at_once_not_read_forever(tmp_path, model_path):
    fifo = tmp_path / "camera.jpg"
    os.mkfifo(fifo)
    proc = run_cli("detect", str(fifo), "-m", str(model_path), timeout=60)
    assert_one_line_error(proc, "FIFO", "not a regular file")
    assert proc.returncode == 2


def test_decode_image_refuses_a_fifo(tmp_path):
    from maskwatch.errors import InputError
    from maskwatch.io.images import decode_image

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        decode_image(fifo)


def _with_height(data: bytes, factor: int) -> bytes:
    i = 2
    while True:
        marker, length = data[i + 1], int.from_bytes(data[i + 2:i + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2):
            h = int.from_bytes(data[i + 5:i + 7], "big")
            return data[:i + 5] + struct.pack(">H", h * factor) + data[i + 7:]
        i += 2 + length


@needs_shared
@pytest.mark.parametrize("factor", [2, 10])
def test_a_jpeg_whose_header_claims_more_rows_than_its_data_is_refused(tmp_path, model_path, factor):
    from maskwatch.errors import ImageDecodeError
    from maskwatch.io.images import decode_image

    bad = tmp_path / f"tall{factor}.jpg"
    bad.write_bytes(_with_height(PHOTO.read_bytes(), factor))
    with pytest.raises(ImageDecodeError, match="covers only the top"):
        decode_image(bad)
    proc = run_cli("detect", str(bad), "-m", str(model_path))
    assert_one_line_error(proc, "header says", "covers only")
    assert decode_image(PHOTO).shape[:2] == (366, 512)  # the real file still decodes


def test_uniform_grey_jpeg_still_decodes(tmp_path):
    import cv2
    import numpy as np

    from maskwatch.io.images import decode_image

    p = tmp_path / "grey.jpg"
    cv2.imwrite(str(p), np.full((240, 320, 3), 128, np.uint8))
    assert decode_image(p).shape == (240, 320, 3)


def test_an_unreadable_folder_on_the_way_is_one_clear_error(monkeypatch):
    from maskwatch.errors import InputError
    from maskwatch.io.sources import resolve_sources

    real_stat = Path.stat

    def stat(self, *a, **k):
        if str(self).startswith("locked/"):
            raise PermissionError(13, "Permission denied")
        return real_stat(self, *a, **k)

    monkeypatch.setattr(Path, "stat", stat)
    with pytest.raises(InputError, match="permission denied"):
        resolve_sources(["locked/x.jpg"])


@pytest.mark.parametrize("output", ["/dev/null", "FILE/sub", "/proc/1/out"])
def test_batch_output_that_cannot_be_a_folder_is_one_clear_error(tmp_path, output):
    pytest.importorskip("ray", reason="needs the scale extra")
    (tmp_path / "FILE").write_text("not a folder")
    img = tmp_path / "a.png"
    img.write_bytes(b"\x89PNG\r\n\x1a\n")
    proc = run_cli("batch", str(img), "-o", output, "--workers", "1", cwd=tmp_path, timeout=120)
    assert_one_line_error(proc, output, "folder")
    assert proc.returncode == 2


@needs_shared
@pytest.mark.ray
def test_a_manifest_path_that_is_missing_goes_to_failures_not_a_refused_batch(tmp_path, model_path):
    manifest = tmp_path / "inputs.txt"
    manifest.write_text(f"{PHOTO}\n{tmp_path / 'gone.jpg'}\n")
    proc = run_cli("batch", str(manifest), "-o", str(tmp_path / "out"), "-m", str(model_path), "--workers", "1",
                   "--object-store-mb", "200", timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "1 input could not be labelled" in proc.stderr
    failures = [json.loads(line) for line in (tmp_path / "out" / "failures.jsonl").read_text().splitlines()]
    assert [f["source"] for f in failures] == [str(tmp_path / "gone.jpg")]
    assert "no such file" in failures[0]["error"]


@needs_shared
def test_benchmark_refuses_an_existing_json_before_running(tmp_path, model_path):
    existing = tmp_path / "numbers.json"
    existing.write_text("{}")
    proc = run_cli("benchmark", str(SHARED / "data" / "video" / "single-masked.mp4"), "-m", str(model_path),
                   "--frames", "5", "--json", str(existing), timeout=120)
    assert_one_line_error(proc, "already exists")
    assert proc.stdout == ""  # nothing was timed
    assert existing.read_text() == "{}"


@needs_shared
def test_evaluate_with_a_classes_txt_that_is_not_utf8_is_one_clear_error(tmp_path, model_path):
    import shutil

    root = tmp_path / "yolo"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    shutil.copy(PHOTO, root / "images" / "a.jpg")
    (root / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "classes.txt").write_bytes(b"no_mask\n\xff\xfemask\n")
    proc = run_cli("evaluate", str(model_path), str(root), "--project", str(tmp_path / "runs"))
    assert_one_line_error(proc, "classes.txt", "not a text file in UTF-8")
    assert proc.returncode == 2
