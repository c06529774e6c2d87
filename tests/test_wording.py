"""Counts read as English everywhere: "1 person", "1 frame", "1 face", "1 alert" — never "1 people"."""

from __future__ import annotations

import re

import cv2
import pytest

from conftest import SHARED, needs_shared, run_cli
from maskwatch.wording import count

ONE_FACE_CLIP = SHARED / "data" / "video" / "single-masked.mp4"
WRONG = re.compile(r"(?<![\d.])1 (people|persons|frames|faces|alerts|inputs|images|videos|workers)\b|\(s\)")


@pytest.mark.parametrize("n,noun,expected", [
    (1, "person", "1 person"), (2, "person", "2 people"), (0, "person", "0 people"),
    (1, "frame", "1 frame"), (0, "frame", "0 frames"), (12, "face", "12 faces"),
    (1, "unmasked alert", "1 unmasked alert"), (3, "unmasked alert", "3 unmasked alerts"),
    (2, "box", "2 boxes"), (2, "criterion", "2 criteria"),
])
def test_count_agrees_with_its_number(n, noun, expected):
    assert count(n, noun, "criteria" if noun == "criterion" else None) == expected


@needs_shared
def test_one_photo_with_one_face_says_1_face_and_1_frame(tmp_path, model_path):
    cap = cv2.VideoCapture(str(ONE_FACE_CLIP))
    ok, frame = cap.read()
    cap.release()
    assert ok
    photo = tmp_path / "one.jpg"
    cv2.imwrite(str(photo), frame)
    proc = run_cli("detect", str(photo), "--model", str(model_path))
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"one\.jpg: 1 face, ", proc.stdout), proc.stdout
    assert "maskwatch: 1 frame in " in proc.stderr, proc.stderr
    assert not WRONG.search(proc.stdout + proc.stderr), proc.stdout + proc.stderr


@needs_shared
def test_a_clip_with_one_person_says_1_person(model_path):
    proc = run_cli("detect", str(ONE_FACE_CLIP), "--vid-stride", "4", "--model", str(model_path))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    assert re.search(r"single-masked\.mp4: 1 person \(", out), out
    assert not WRONG.search(out), out
