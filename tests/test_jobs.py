"""Video jobs over HTTP: upload, progress, results and files, every limit with its clear answer."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
pytest.importorskip("httpx", reason="httpx is needed by FastAPI's TestClient")

from fastapi.testclient import TestClient  # noqa: E402

from conftest import SHARED, needs_shared, write_clip  # noqa: E402
from maskwatch.server.app import ServerSettings, create_app  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

CLIP = SHARED / "data" / "video" / "putting-mask-on.mp4"


@pytest.fixture(autouse=True)
def _jobs_dir(tmp_path_factory, monkeypatch):
    """Video jobs of these tests keep their files in a temporary jobs folder, not the user's cache."""
    folder = tmp_path_factory.mktemp("jobs")
    monkeypatch.setattr("maskwatch.server.jobs.default_jobs_dir", lambda: folder)


@pytest.fixture()
def client(engine, monkeypatch):
    def make(**env):
        for k, v in env.items():
            monkeypatch.setenv(k, str(v))
        return TestClient(create_app(ServerSettings.from_env(), engine=engine), base_url="http://127.0.0.1")

    return make


def wait_done(c, job_id, timeout=300):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        job = c.get(f"/v1/jobs/{job_id}").json()
        seen.append((job["status"], job["progress"]))
        if job["status"] not in ("queued", "running"):
            return job, seen
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still {seen[-1]} after {timeout} s")


@needs_shared
def test_a_video_job_runs_to_results_and_files(client):
    av = pytest.importorskip("av")
    with client() as c:
        resp = c.post("/v1/jobs?name=putting-mask-on.mp4&blur=none", content=CLIP.read_bytes(),
                      headers={"Content-Type": "video/mp4"})
        assert resp.status_code == 202, resp.text
        job = resp.json()
        assert resp.headers["location"] == f"/v1/jobs/{job['id']}" and job["total_frames"] == 234
        job, seen = wait_done(c, job["id"])
        assert job["status"] == "done", job
        progress = [p for s, p in seen if s == "running" and p is not None]
        assert progress == sorted(progress)  # it only moves forward
        assert job["frames"] == 234 and job["progress"] == 1.0
        summary = job["result"]["summary"]
        assert summary["people"] == 1
        assert {k: v for k, v in summary["people_seen"].items() if v} == {"with_mask": 1, "without_mask": 1}
        (track,) = job["result"]["tracks"]
        assert track["labels_seen"] == ["without_mask", "with_mask"] and track["changes"]
        assert len(job["result"]["timeline"]) == 10
        files = job["files"]
        assert set(files) == {"video.mp4", "frames.jsonl", "faces.csv", "summary.json", "timeline.csv",
                              "timeline.png"}
        video = c.get(files["video.mp4"])
        assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
        import io

        with av.open(io.BytesIO(video.content)) as container:
            assert container.streams.video[0].codec_context.name == "h264"
            assert sum(1 for _ in container.decode(video=0)) == 234
        frames = c.get(files["frames.jsonl"]).text.splitlines()
        assert len(frames) == 234 and json.loads(frames[0])["frame"] == 0
        assert json.loads(frames[0])["source"] == "putting-mask-on.mp4"  # not the server's temporary path
        assert "attachment" in c.get(files["faces.csv"]).headers["content-disposition"]
        assert c.get(files["timeline.png"]).content[:8] == b"\x89PNG\r\n\x1a\n"
        assert c.get(f"/v1/jobs/{job['id']}/files/..%2F..%2Fetc%2Fpasswd").status_code == 404
        assert c.get(f"/v1/jobs/{job['id']}/files/upload.mp4").status_code == 404  # the upload is not kept
        folder = c.app.state.jobs.jobs[job["id"]].folder
        assert not any(p.name.startswith("upload") for p in folder.iterdir())
        assert c.delete(f"/v1/jobs/{job['id']}").status_code == 204
        assert c.get(f"/v1/jobs/{job['id']}").status_code == 404 and not folder.exists()
    root = c.app.state.jobs.root
    assert not root.exists()  # the server's stop removes every job folder


def test_a_photo_sent_as_a_video_gets_415_pointing_to_the_photo_upload(client):
    import cv2

    ok, jpg = cv2.imencode(".jpg", np.full((100, 100, 3), 128, np.uint8))
    with client() as c:
        resp = c.post("/v1/jobs?name=me.jpg", content=jpg.tobytes())
        assert resp.status_code == 415 and "/v1/detect" in resp.json()["detail"]
        resp = c.post("/v1/jobs", content=b"")
        assert resp.status_code == 422 and "empty" in resp.json()["detail"]
        assert c.post("/v1/jobs?blur=faces", content=b"x").status_code == 422


def test_a_corrupt_video_gets_422(client):
    with client() as c:
        resp = c.post("/v1/jobs?name=broken.mp4", content=b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 4000)
        assert resp.status_code == 422 and "cannot be decoded" in resp.json()["detail"]
        assert c.app.state.jobs.jobs == {} and not any(c.app.state.jobs.root.iterdir())


def test_size_and_duration_limits_answer_413(client, tmp_path):
    clip = write_clip(tmp_path / "long.mp4", [np.full((120, 160, 3), 90, np.uint8)] * 50, fps=10)  # 5 s
    with client(MASKWATCH_MAX_VIDEO_S=3, MASKWATCH_MAX_VIDEO_MB=0.001) as c:
        resp = c.post("/v1/jobs", content=clip.read_bytes())
        assert resp.status_code == 413 and "MB" in resp.json()["detail"]
    with client(MASKWATCH_MAX_VIDEO_S=3, MASKWATCH_MAX_VIDEO_MB=50) as c:
        resp = c.post("/v1/jobs", content=clip.read_bytes())
        assert resp.status_code == 413 and "5 s" in resp.json()["detail"] and "3 s" in resp.json()["detail"]


@needs_shared
def test_a_full_queue_answers_503_with_retry_after_and_cancel_frees_it(client):
    data = (SHARED / "data" / "video" / "airport-crowd.mp4").read_bytes()
    with client(MASKWATCH_MAX_JOBS=1) as c:
        first = c.post("/v1/jobs?name=a.mp4", content=data).json()
        resp = c.post("/v1/jobs?name=b.mp4", content=data)
        assert resp.status_code == 503 and resp.headers["retry-after"] == "30"
        assert "try again" in resp.json()["detail"]
        assert c.delete(f"/v1/jobs/{first['id']}").status_code == 204
        deadline = time.monotonic() + 30
        while c.app.state.jobs.active() and time.monotonic() < deadline:
            time.sleep(0.05)
        second = c.post("/v1/jobs?name=c.mp4", content=(SHARED / "data" / "video" / "putting-mask-on.mp4").read_bytes())
        assert second.status_code == 202
        job, _ = wait_done(c, second.json()["id"])
        assert job["status"] == "done"


@needs_shared
def test_finished_jobs_are_removed_after_their_time(client):
    with client(MASKWATCH_JOB_TTL_S=0.5) as c:
        job = c.post("/v1/jobs?name=p.mp4", content=CLIP.read_bytes()).json()
        job, _ = wait_done(c, job["id"])
        folder = c.app.state.jobs.jobs[job["id"]].folder
        time.sleep(0.7)
        resp = c.get(f"/v1/jobs/{job['id']}")
        assert resp.status_code == 404 and "removed" in resp.json()["detail"]
        assert not folder.exists()


# ------------------------------------------------------------------------------------ live sessions


@needs_shared
def test_live_session_tracks_people_across_frames_and_keeps_totals(client):
    import cv2

    cap = cv2.VideoCapture(str(SHARED / "data" / "video" / "single-unmasked.mp4"))
    frames = []
    while len(frames) < 12:
        ok, f = cap.read()
        frames.append(cv2.imencode(".jpg", cv2.resize(f, (640, 360)))[1].tobytes())
    cap.release()
    with client() as c:
        answers = [c.post("/v1/live?session=test-session-1", content=b, headers={"Content-Type": "image/jpeg"})
                   for b in frames]
        assert [a.status_code for a in answers] == [200] * 12
        bodies = [a.json() for a in answers]
        assert [b["frame"] for b in bodies] == list(range(12))
        ids = {f["track_id"] for b in bodies for f in b["faces"]}
        assert len(ids) == 1 and None not in ids  # one person, one track across the session's frames
        s = bodies[-1]["session"]
        assert s["frames"] == 12 and s["people"] == 1 and s["people_seen"]["without_mask"] == 1
        assert s["compliance_rate"] == 0.0 and s["timeline"][0]["without_mask"] == 1
        other = c.post("/v1/live?session=another-one", content=frames[0], headers={"Content-Type": "image/jpeg"})
        assert other.json()["session"]["frames"] == 1  # sessions are separate
        assert c.delete("/v1/live?session=test-session-1").status_code == 204
        again = c.post("/v1/live?session=test-session-1", content=frames[0], headers={"Content-Type": "image/jpeg"})
        assert again.json()["session"]["frames"] == 1  # a new session after DELETE
        assert c.post("/v1/live?session=x", content=frames[0]).status_code == 422  # id too short
        from maskwatch.server.live import LiveSessions

        c.app.state.live_sessions = LiveSessions(max_sessions=1)
        assert c.post("/v1/live?session=first-session", content=frames[0]).status_code == 200
        full = c.post("/v1/live?session=second-session", content=frames[0])
        assert full.status_code == 503 and full.headers["retry-after"] == "60"


@needs_shared
def test_serve_db_records_live_sessions_and_video_jobs(client, tmp_path):
    import sqlite3

    import cv2

    db = tmp_path / "site.db"
    cap = cv2.VideoCapture(str(SHARED / "data" / "video" / "single-unmasked.mp4"))
    frames = [cv2.imencode(".jpg", cv2.resize(cap.read()[1], (640, 360)))[1].tobytes() for _ in range(6)]
    cap.release()
    with client(MASKWATCH_DB=db) as c:
        for b in frames:
            assert c.post("/v1/live?session=door-camera-1", content=b).status_code == 200
        assert c.delete("/v1/live?session=door-camera-1").status_code == 204
        job = c.post("/v1/jobs?name=putting-mask-on.mp4", content=CLIP.read_bytes()).json()
        assert wait_done(c, job["id"])[0]["status"] == "done"
    con = sqlite3.connect(db)
    rows = con.execute("SELECT s.path, e.kind FROM events e JOIN sources s ON s.id = e.source_id").fetchall()
    live = [k for p, k in rows if p == "live:door-camera-1"]
    assert live.count("track_started") == 1 and live.count("track_ended") == 1  # the session's person, closed
    job_kinds = [k for p, k in rows if p == "putting-mask-on.mp4"]
    assert job_kinds == ["track_started", "label_changed", "track_ended"]
    assert {s for (s,) in con.execute("SELECT status FROM runs")} == {"finished"}  # both logs closed cleanly
    con.close()


def test_serve_db_with_a_bad_path_is_one_line(tmp_path):
    from conftest import assert_one_line_error, run_cli

    bad = tmp_path / "notes.db"
    bad.write_text("not a database " * 40)
    assert_one_line_error(run_cli("serve", "--db", str(bad), "--port", "1"), "not an SQLite event log")
