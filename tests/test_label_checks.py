"""Ground truth that cannot be right is refused with its file and line, never scored silently."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import assert_one_line_error, run_cli
from maskwatch.errors import DataError
from maskwatch.evaluate.scenes import load_scenes


def _yolo(tmp_path: Path, label_bytes: bytes) -> Path:
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.jpg"), np.full((100, 200, 3), 127, np.uint8))
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_bytes(label_bytes)
    (tmp_path / "classes.txt").write_text("no_mask\nmask\n")
    return tmp_path


@pytest.mark.parametrize("line,fragment", [
    (b"0 0.5 0.5 0.1 0.1\n1 nan 0.5 0.1 0.1\n", "a.txt:2: box values must be finite"),
    (b"0 0.5 0.5 -0.1 0.1\n", "a.txt:1: box width and height must be > 0"),
    (b"0 1.4 0.5 0.1 0.1\n", "a.txt:1: box (cx=1.4"),
    (b"0.5 0.5 0.5 0.1 0.1\n", "a.txt:1: class id '0.5' is not a whole number"),
    (b"0 0.5 0.5 0.1 0.1\n\xff\xfe\x00bad\n", "not a text file in UTF-8"),
])
def test_bad_yolo_labels(tmp_path, line, fragment):
    root = _yolo(tmp_path, line)
    with pytest.raises(DataError) as exc:
        load_scenes(root)
    assert fragment in str(exc.value)


def test_integral_float_class_ids_and_rounding_slack_are_accepted(tmp_path):
    root = _yolo(tmp_path, b"1.0 0.5 0.5 0.1 0.1\n0 0.95 0.5 0.104 0.2\n")
    (scene,) = load_scenes(root)
    assert scene.labels == ["with_mask", "without_mask"]
    assert scene.boxes[1, 2] == 200  # clipped to the image


VOC = """<annotation><filename>p.jpg</filename><size><width>200</width><height>100</height></size>
<object><name>with_mask</name><bndbox><xmin>10</xmin><ymin>20</ymin><xmax>40</xmax><ymax>60</ymax></bndbox></object>
<object><name>without_mask</name><bndbox>{box}</bndbox></object></annotation>"""


@pytest.mark.parametrize("box,fragment", [
    ("<xmin>50</xmin><ymin>10</ymin><xmax>40</xmax><ymax>70</ymax>",
     "object 2 (without_mask): bndbox is empty or inverted"),
    ("<xmin>nan</xmin><ymin>10</ymin><xmax>40</xmax><ymax>70</ymax>", "finite"),
    ("<xmin>150</xmin><ymin>10</ymin><xmax>400</xmax><ymax>70</ymax>", "outside the 200x100 image"),
])
def test_bad_voc_boxes(tmp_path, box, fragment):
    (tmp_path / "JPEGImages").mkdir()
    cv2.imwrite(str(tmp_path / "JPEGImages" / "p.jpg"), np.full((100, 200, 3), 127, np.uint8))
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "p.xml").write_text(VOC.format(box=box))
    with pytest.raises(DataError) as exc:
        load_scenes(tmp_path)
    assert fragment in str(exc.value) and "p.xml" in str(exc.value)


def test_evaluate_cli_names_the_bad_line(tmp_path, model_path):
    (tmp_path / "set").mkdir()
    root = _yolo(tmp_path / "set", b"0 0.5 0.5 0.1 0.1\n1 0.5 0.5 0 0.1\n")
    proc = run_cli("evaluate", str(model_path), str(root), "--project", str(tmp_path / "runs"))
    assert_one_line_error(proc, "a.txt:2")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.json"))
