"""Videos as a real deployment meets them: frames with no face, faces coming and going."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np

from conftest import run_cli, write_clip


def test_a_clip_with_no_face_at_all(tmp_path, engine):
    clip = write_clip(tmp_path / "corridor.mp4", [np.full((240, 320, 3), 100, np.uint8)] * 5)
    results = list(engine.process([clip]))
    assert [r.frame for r in results] == [0, 1, 2, 3, 4]
    assert all(r.faces == [] for r in results)


def test_faceless_then_faces_then_faceless_through_the_api(gap_clip, engine):
    results = list(engine.process([gap_clip]))
    assert len(results) == 18
    n_faces = [len(r.faces) for r in results]
    assert n_faces[:6] == [0] * 6 and n_faces[-6:] == [0] * 6
    assert min(n_faces[6:12]) >= 3
    assert all(f.track_id is not None for r in results for f in r.faces)


def test_faceless_then_faces_then_faceless_through_detect(gap_clip, tmp_path, model_path):
    out_json, out_csv = tmp_path / "frames.jsonl", tmp_path / "faces.csv"
    proc = run_cli("detect", str(gap_clip), "-m", str(model_path), "--json", str(out_json), "--csv", str(out_csv),
                   "--save", "--project", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(x) for x in out_json.read_text().splitlines()]
    assert [x["frame"] for x in lines] == list(range(18))
    rows = list(csv.DictReader(out_csv.open()))
    assert rows and {int(r["frame"]) for r in rows} <= set(range(6, 12))
    saved = list((tmp_path / "runs" / "detect" / "exp").glob("*"))
    assert len(saved) == 1
    cap = cv2.VideoCapture(str(saved[0]))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 18
    cap.release()


def test_faceless_clip_through_benchmark(gap_clip, model_path):
    proc = run_cli("benchmark", str(gap_clip), "-m", str(model_path), "--frames", "18")
    assert proc.returncode == 0, proc.stderr
    assert "frames/s" in proc.stdout or "fps" in proc.stdout.lower()


def test_phone_clip_with_a_rotation_flag(tmp_path, engine, shared):
    """Stored sideways with a 90° display matrix, and starting on empty frames: upright frames, faces found."""
    from conftest import scene_frame, set_mp4_rotation

    upright = scene_frame((640, 360))
    stored = cv2.rotate(upright, cv2.ROTATE_90_COUNTERCLOCKWISE)
    empty = np.full_like(stored, 80)
    clip = set_mp4_rotation(write_clip(tmp_path / "phone.mp4", [empty] * 3 + [stored] * 4 + [empty] * 3), 90)
    results = list(engine.process([clip]))
    assert len(results) == 10
    assert {(r.width, r.height) for r in results} == {(640, 360)}
    assert [len(r.faces) > 0 for r in results] == [False] * 3 + [True] * 4 + [False] * 3
    upright_faces = len(engine.detect(upright, tracker=engine.new_tracker()).faces)
    assert abs(len(results[5].faces) - upright_faces) <= 1


def test_gap_clip_frames_through_the_servers_live_path(gap_clip, engine):
    """The web page's live camera posts frames one by one; empty frames answer with no faces."""
    import pytest

    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from maskwatch.server.app import ServerSettings, create_app

    cap = cv2.VideoCapture(str(gap_clip))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(cv2.imencode(".jpg", f)[1].tobytes())
    cap.release()
    # The server answers only loopback Host names when bound to loopback (DNS-rebinding guard).
    with TestClient(create_app(ServerSettings(workers=1), engine=engine), base_url="http://127.0.0.1") as client:
        answers = [client.post("/v1/detect?live=true", content=b, headers={"Content-Type": "image/jpeg"})
                   for b in frames]
    assert [a.status_code for a in answers] == [200] * 18
    n_faces = [len(a.json()["faces"]) for a in answers]
    assert n_faces[:6] == [0] * 6 and n_faces[-6:] == [0] * 6 and min(n_faces[6:12]) >= 3
