"""User errors that must end in one clear line and exit 2, never an internal error or a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import SHARED, assert_one_line_error, needs_shared, run_cli


@pytest.fixture()
def photo(tmp_path) -> Path:
    p = tmp_path / "wall.png"
    Image.new("RGB", (64, 48), (128, 128, 128)).save(p)
    return p


@pytest.mark.parametrize("spec,fragment", [
    ("²", "no such file"),
    ("99999999999999999999", "camera index out of range"),
    ("cam:x", "camera index after 'cam:'"),
])
def test_odd_camera_like_arguments(spec, fragment, model_path):
    assert_one_line_error(run_cli("detect", spec, "-m", str(model_path)), fragment)


def test_a_file_named_like_a_camera_index_is_the_file(tmp_path, model_path):
    Image.new("RGB", (64, 48), (128, 128, 128)).save(tmp_path / "2024", format="PNG")
    proc = run_cli("detect", "2024", "-m", str(model_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("2024: 0 faces")


def test_a_folder_named_like_a_camera_index_is_the_folder(tmp_path, model_path):
    (tmp_path / "1").mkdir()
    Image.new("RGB", (64, 48), (128, 128, 128)).save(tmp_path / "1" / "a.png")
    proc = run_cli("detect", "1", "-m", str(model_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "a.png: 0 faces" in proc.stdout


def test_cam_prefix_always_means_a_camera(tmp_path, model_path):
    Image.new("RGB", (64, 48), (128, 128, 128)).save(tmp_path / "7", format="PNG")
    from maskwatch.io.sources import resolve_sources

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert [(s.kind, s.target) for s in resolve_sources(["cam:7", "7"])] == [("camera", "7"), ("image", "7")]
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize("where", ["/sys/maskwatch-test.jsonl", "{file}/x.jsonl"])
def test_unwritable_json_location(where, photo, tmp_path, model_path):
    target = where.format(file=photo)
    assert_one_line_error(run_cli("detect", str(photo), "-m", str(model_path), "--json", target), "cannot write")


def test_unwritable_save_location(photo, model_path):
    proc = run_cli("detect", str(photo), "-m", str(model_path), "--save", "--project", "/sys/maskwatch-runs")
    assert_one_line_error(proc, "cannot write the run folder")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every folder")
def test_unreadable_folder_is_reported_as_such(tmp_path, model_path):
    d = tmp_path / "locked"
    d.mkdir()
    Image.new("RGB", (8, 8)).save(d / "a.png")
    d.chmod(0)
    try:
        assert_one_line_error(run_cli("detect", str(d), "-m", str(model_path)), "permission denied")
    finally:
        d.chmod(0o755)


@needs_shared
@pytest.mark.parametrize("wrong", [
    "src/maskwatch/models/maskwatch-mobilenetv2.onnx",  # an ONNX file, but a classifier
    str(SHARED / "weights" / "face" / "opencv_face_detector.pbtxt"),  # another detector's file
])
def test_detector_model_that_is_not_yunet(wrong, photo, model_path):
    root = Path(__file__).resolve().parents[1]
    path = Path(wrong) if Path(wrong).is_absolute() else root / wrong
    proc = run_cli("detect", str(photo), "-m", str(model_path), "--detector-model", str(path))
    assert_one_line_error(proc, "yunet")
    assert "OpenCV(" not in proc.stderr and "[ERROR" not in proc.stderr


def test_negative_min_face_is_refused():
    from maskwatch.errors import InputError
    from maskwatch.faces.detector import DetectorSettings

    with pytest.raises(InputError, match="minimum face size"):
        DetectorSettings(min_face=-5)


def test_unreadable_folder_in_process(tmp_path, monkeypatch):
    """The same check without relying on file permissions (root reads everything)."""
    from maskwatch.errors import InputError
    from maskwatch.io import sources

    d = tmp_path / "locked"
    d.mkdir()
    Image.new("RGB", (8, 8)).save(d / "a.png")
    real_access = os.access
    monkeypatch.setattr(sources.os if hasattr(sources, "os") else os, "access",
                        lambda p, mode: False if Path(p) == d else real_access(p, mode))
    with pytest.raises(InputError, match="permission denied"):
        sources.resolve_sources([str(d)])


@pytest.mark.parametrize("name,fragment", [("random.h5", "not mobilenetv2"), ("model.pth", "not a keras weights file")])
def test_train_checks_the_weights_before_anything_else(tmp_path, name, fragment):
    data = tmp_path / "data"
    for c in ("with_mask", "without_mask"):
        (data / c).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (32, 32), (i * 40, 90, 90)).save(data / c / f"{i}.png")
    weights = tmp_path / name
    weights.write_bytes(np.random.default_rng(0).integers(0, 255, 4096, dtype=np.uint8).tobytes())
    proc = run_cli("train", str(data), "--weights", str(weights), "--project", str(tmp_path / "runs"))
    assert_one_line_error(proc, fragment)
    assert proc.stdout == ""
    assert not (tmp_path / "runs").exists()  # no empty run folder left behind


def test_classify_one_corrupt_image_is_an_input_error(tmp_path, model_path):
    bad = tmp_path / "face.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    proc = run_cli("classify", str(bad), "-m", str(model_path))
    assert_one_line_error(proc, "face.jpg")
    assert proc.returncode == 2
