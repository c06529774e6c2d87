"""What a new user saw (issue 13 item 8), server and page side: readable crowd annotations, the
photo counts, error texts, the video results table."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from maskwatch.annotate import BoxAnnotator, place_labels
from maskwatch.results import Face

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
LABELS = ("with_mask", "without_mask", "mask_incorrect")


def crowd_faces(n: int = 54, size: tuple[int, int] = (410, 230)) -> list[Face]:
    """``n`` small faces in rows across a ``size`` picture, as in a crowd photo (15-22 px faces)."""
    rng = np.random.default_rng(3)
    w, h = size
    faces = []
    cols = 11
    for k in range(n):
        side = int(rng.integers(15, 23))
        x = 4 + (k % cols) * (w - 30) // cols + int(rng.integers(0, 6))
        y = 30 + (k // cols) * (h - 50) // (n // cols + 1) + int(rng.integers(0, 6))
        label = LABELS[k % 3] if k % 7 else "with_mask"
        faces.append(Face((x, y, min(w, x + side), min(h, y + side)), 0.9, label, 0.87,
                          {c: 0.87 if c == label else 0.065 for c in LABELS}, uncertain=k % 11 == 5))
    return faces


def test_a_crowd_photo_stays_readable():
    """Before: 54 labels on a 410x230 photo covered each other and ran off the right edge."""
    image = np.full((230, 410, 3), 120, np.uint8)
    faces = crowd_faces()
    ann = BoxAnnotator()
    out = ann.annotate(image, faces)
    labels = ann.last_labels
    assert len(labels) == 54
    up = out.shape[1] // 410
    assert up >= 2  # enlarged as the page shows it
    assert not any(a.overlaps for a in labels)
    for i, a in enumerate(labels):
        assert 0 <= a.x and a.x + a.w <= 410 * up and 0 <= a.y and a.y + a.h <= 230 * up  # never cut off
        assert a.text.split()[0] == str(i + 1)  # numbered as the table and the legend
        for b in labels[i + 1:]:
            assert not a.hits(b), (a, b)
    assert any(a.short for a in labels)  # crowded: some labels are the number alone ...
    assert out.shape[0] > 230 * up  # ... and the legend under the picture lists them
    legend = out[230 * up:]
    assert (legend < 200).any(axis=2).sum() > 54 * 40  # text and colour marks for every face
    ARTIFACTS.mkdir(exist_ok=True)
    cv2.imwrite(str(ARTIFACTS / "annotate-crowd-54-faces.png"), out)


def test_video_frames_keep_their_size_and_have_no_legend():
    image = np.full((230, 410, 3), 120, np.uint8)
    out = BoxAnnotator().annotate(image, crowd_faces(), counts=True)
    assert out.shape == image.shape


def test_place_labels_moves_a_label_off_the_right_edge_and_below_a_neighbour():
    boxes = [(380, 50, 400, 70), (380, 80, 400, 100)]
    labels = place_labels(boxes, [["without_mask 90%"], ["with_mask 80%"]], (410, 230), lambda t, i: (8 * len(t), 18))
    assert all(lab.x + lab.w <= 410 for lab in labels)
    assert not labels[0].hits(labels[1]) and not any(lab.overlaps for lab in labels)


# ------------------------------------------------------------------------------------ error texts


@pytest.fixture(scope="module")
def client(engine, tmp_path_factory):
    pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
    from fastapi.testclient import TestClient

    from maskwatch.server.app import ServerSettings, create_app

    jobs = str(tmp_path_factory.mktemp("jobs"))
    with TestClient(create_app(ServerSettings(workers=1, jobs_dir=jobs), engine=engine),
                    base_url="http://127.0.0.1") as c:
        yield c


def test_a_photo_error_shows_no_python_bytes(client):
    """Before: "its bytes start with b'hello\\n'"."""
    detail = client.post("/v1/detect", content=b"hello\n").json()["detail"]
    assert 'it starts with the text "hello"' in detail and "b'" not in detail
    detail = client.post("/v1/detect", content=b"\x00\x01\x02\xfe\x80abc").json()["detail"]
    assert "the bytes 00 01 02 fe 80 61 62 63" in detail and "\\x" not in detail


def test_a_text_file_sent_as_a_video_names_the_video_endpoint(client):
    """Before: the answer pointed a .txt to the photo endpoint, POST /v1/detect."""
    resp = client.post("/v1/jobs?name=notes.txt", content=b"hello\n")
    detail = resp.json()["detail"]
    assert resp.status_code == 415 and "/v1/jobs" in detail and "/v1/detect" not in detail
    assert 'notes.txt is not a video file (it starts with the text "hello")' in detail
    photo = cv2.imencode(".jpg", np.full((40, 40, 3), 128, np.uint8))[1].tobytes()
    detail = client.post("/v1/jobs?name=me.jpg", content=photo).json()["detail"]
    assert "is a photo" in detail and "/v1/detect" in detail
