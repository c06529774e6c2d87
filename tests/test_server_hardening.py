"""Hardening round 2 (issue 16) on the server: slow clients, frame budgets, live sessions, the jobs folder."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
pytest.importorskip("httpx", reason="httpx is needed by FastAPI's TestClient")

from conftest import SHARED, needs_shared, write_clip  # noqa: E402
from maskwatch.server.app import ServerSettings, create_app  # noqa: E402
from test_server import LiveServer, encode, post, read_response, wait_until  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(autouse=True)
def _jobs_dir(tmp_path_factory, monkeypatch):
    """Video jobs of these tests keep their files in a temporary jobs folder, not the user's cache."""
    folder = tmp_path_factory.mktemp("jobs")
    monkeypatch.setattr("maskwatch.server.jobs.default_jobs_dir", lambda: folder)


@pytest.fixture(scope="module")
def gray_jpeg() -> bytes:
    return encode(np.full((240, 320, 3), 128, np.uint8))


def slow_upload(port: int, source: str, declared: int, path: str = "/v1/detect", first: bytes = b"\xff\xd8\xff",
                ctype: str = "image/jpeg") -> socket.socket:
    """A client at ``source`` (an address of 127/8) that declares ``declared`` body bytes and sends ``first``."""
    s = socket.create_connection(("127.0.0.1", port), source_address=(source, 0))
    s.sendall(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
              % (path.encode(), ctype.encode(), declared) + first)
    return s


# ------------------------------------------------------------------------------------ slow clients


def test_slow_clients_hold_upload_slots_not_the_queue(engine, gray_jpeg):
    """Slow uploads (before: they held every queue place and everyone got 503) leave ordinary requests served."""
    settings = ServerSettings(workers=1, max_queue=1, max_uploads_per_client=3, upload_timeout_s=30)
    with LiveServer(create_app(settings, engine=engine)) as srv:
        slow = [slow_upload(srv.port, "127.0.0.2", 200_000) for _ in range(3)]
        wait_until(lambda: srv.pool.uploads.active == 3)
        for _ in range(3):  # another client is answered while the slow ones hold their connections
            status, _, body = post(srv.port, gray_jpeg)
            assert status == 200, body
        # The slow client's fourth upload is refused at once, with what to do.
        fourth = slow_upload(srv.port, "127.0.0.2", 200_000)
        status, raw = read_response(fourth)
        assert status == 503 and b"retry-after: 1" in raw.lower()
        assert b"from your address" in raw and b"MASKWATCH_MAX_UPLOADS_PER_CLIENT" in raw
        for s in [*slow, fourth]:
            s.close()
        wait_until(lambda: srv.pool.uploads.active == 0)


def test_uploads_are_capped_overall(engine, gray_jpeg):
    with LiveServer(create_app(ServerSettings(workers=1, max_uploads=2), engine=engine)) as srv:
        slow = [slow_upload(srv.port, f"127.0.0.{i}", 200_000) for i in (2, 3)]
        wait_until(lambda: srv.pool.uploads.active == 2)
        status, headers, body = post(srv.port, gray_jpeg)
        assert status == 503 and headers["retry-after"] == "1" and b"MASKWATCH_MAX_UPLOADS" in body
        for s in slow:
            s.close()
        wait_until(lambda: srv.pool.uploads.active == 0)
        assert post(srv.port, gray_jpeg)[0] == 200


def test_the_job_limit_refuses_before_the_upload_is_stored(engine, tmp_path, monkeypatch):
    """Before: every upload was written to disk and only then compared with the job limit."""
    monkeypatch.setenv("MASKWATCH_MAX_JOBS", "1")
    clip = write_clip(tmp_path / "c.mp4", [np.full((120, 160, 3), 90, np.uint8)] * 5).read_bytes()
    with LiveServer(create_app(ServerSettings(workers=1), engine=engine)) as srv:
        first = slow_upload(srv.port, "127.0.0.2", 5_000_000, path="/v1/jobs", first=clip[:64], ctype="video/mp4")
        wait_until(lambda: getattr(srv.app.state, "jobs", None) is not None and srv.app.state.jobs._uploading == 1)
        status, headers, body = post(srv.port, clip, path="/v1/jobs")
        assert status == 503 and headers["retry-after"] == "30", body
        assert "try again" in json.loads(body)["detail"]
        folders = list(srv.app.state.jobs.root.iterdir())
        assert len(folders) == 1  # only the first upload's folder: nothing of the refused one was stored
        first.close()
        wait_until(lambda: srv.app.state.jobs._uploading == 0)
        assert post(srv.port, clip, path="/v1/jobs")[0] == 202


# ------------------------------------------------------------------------------------ frame budgets


def test_a_huge_live_frame_is_refused_from_its_header(engine):
    """Before: a 7000x7000 PNG (under the 50 MP photo budget) was decoded whole, peaking at 1.2 GiB."""
    from fastapi.testclient import TestClient

    from test_server import png_header_only

    with TestClient(create_app(ServerSettings(workers=1), engine=engine), base_url="http://127.0.0.1") as c:
        resp = c.post("/v1/live?session=big-frame-1", content=png_header_only(7000, 7000))
        assert resp.status_code == 413, resp.text
        assert "7000x7000" in resp.json()["detail"] and "live frame" in resp.json()["detail"]
        # A large frame within the budget is decoded reduced; its boxes and size are in its full pixels.
        frame = encode(np.full((2000, 3000, 3), 120, np.uint8))
        body = c.post("/v1/live?session=big-frame-1", content=frame).json()
        assert (body["width"], body["height"]) == (3000, 2000)


def test_a_video_job_with_frames_over_the_budget_gets_413_before_decoding(engine, tmp_path):
    from fastapi.testclient import TestClient

    clip = write_clip(tmp_path / "c.mp4", [np.full((120, 160, 3), 90, np.uint8)] * 5).read_bytes()
    app = create_app(ServerSettings(workers=1, max_frame_pixels=160 * 100), engine=engine)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        resp = c.post("/v1/jobs?name=c.mp4", content=clip)
        assert resp.status_code == 413, resp.text
        assert "160x120" in resp.json()["detail"] and "MASKWATCH_MAX_FRAME_PIXELS" in resp.json()["detail"]
        assert not any(c.app.state.jobs.root.iterdir())


def test_every_decoded_video_frame_is_checked_against_the_pixel_limit(tmp_path):
    from maskwatch.errors import ImageTooLargeError
    from maskwatch.io.sources import iter_frames, resolve_sources

    clip = write_clip(tmp_path / "c.mp4", [np.full((120, 160, 3), 90, np.uint8)] * 5)
    (source,) = resolve_sources([clip])
    with pytest.raises(ImageTooLargeError, match="160x120"):
        next(iter_frames(source, max_pixels=10_000))
    assert len(list(iter_frames(source, max_pixels=160 * 120))) == 5


# ------------------------------------------------------------------------------------ live sessions


def test_live_sessions_sharing_a_prefix_stay_apart_in_the_event_log(engine, tmp_path):
    """Before: the log named a session by its first 8 characters, so these two became one source."""
    import sqlite3

    from fastapi.testclient import TestClient

    db = tmp_path / "site.db"
    frame = encode(np.full((240, 320, 3), 128, np.uint8))
    with TestClient(create_app(ServerSettings(workers=1, db=str(db)), engine=engine), base_url="http://127.0.0.1") as c:
        for sid in ("samepfx_AAAA", "samepfx_BBBB", "entrance-1", "entrance-2"):
            assert c.post(f"/v1/live?session={sid}", content=frame).status_code == 200
            assert c.delete(f"/v1/live?session={sid}").status_code == 204
    con = sqlite3.connect(db)
    paths = {p for (p,) in con.execute("SELECT path FROM sources")}
    con.close()
    assert {"live:samepfx_AAAA", "live:samepfx_BBBB", "live:entrance-1", "live:entrance-2"} <= paths


def test_one_client_cannot_take_every_live_session(engine):
    """Before: one client opened all 32 sessions in 0.4 s and everyone else got 503 for 2 minutes."""
    from fastapi.testclient import TestClient

    from maskwatch.server.uploads import UploadError

    frame = encode(np.full((24, 32, 3), 128, np.uint8))
    settings = ServerSettings(workers=1, max_live_sessions=8, max_live_sessions_per_client=3)
    with TestClient(create_app(settings, engine=engine), base_url="http://127.0.0.1") as c:
        answers = [c.post(f"/v1/live?session=grabber-{i:04d}", content=frame) for i in range(6)]
        assert [a.status_code for a in answers] == [200] * 3 + [429] * 3
        detail = answers[3].json()["detail"]
        assert "limit is 3" in detail and "DELETE /v1/live" in detail and answers[3].headers["retry-after"]
        assert c.post("/v1/live?session=grabber-0000", content=frame).status_code == 200  # its own go on
        sessions = c.app.state.live_sessions
        assert sessions.get("someone-else-1", c.app.state.pool.engine, client="10.0.0.9").client == "10.0.0.9"
        with pytest.raises(UploadError):
            for i in range(8):
                sessions.get(f"crowd-session-{i}", c.app.state.pool.engine, client=f"10.0.1.{i}")


# ------------------------------------------------------------------------------------ the jobs folder

CLIP = SHARED / "data" / "video" / "putting-mask-on.mp4"


def wait_job(c, job_id: str, timeout: float = 300) -> dict:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = c.get(f"/v1/jobs/{job_id}").json()
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


def test_start_up_sweeps_what_a_killed_server_left_in_the_jobs_folder(engine, tmp_path):
    """Before: each server used a new temporary folder, and what a kill -9 left there stayed for ever."""
    from fastapi.testclient import TestClient

    from maskwatch.server.jobs import JobsFolder

    dead = tmp_path / "server-killed"
    (dead / "4f2a").mkdir(parents=True)
    (dead / "4f2a" / "upload.mp4").write_bytes(b"faces of people")
    (tmp_path / "server-killed.lock").write_text("")
    running = JobsFolder(tmp_path)  # another server that is still running: its folder stays
    try:
        app = create_app(ServerSettings(workers=1, jobs_dir=str(tmp_path)), engine=engine)
        with TestClient(app, base_url="http://127.0.0.1") as c:
            # Swept at start-up, before anyone uses the jobs API.
            assert not dead.exists() and not (tmp_path / "server-killed.lock").exists() and running.path.is_dir()
            assert c.get("/v1/jobs/none").status_code == 404  # the jobs manager starts
            own = c.app.state.jobs.root
            assert own.parent == tmp_path
        assert not own.exists()  # a clean stop removes its own folder
    finally:
        running.close()


@needs_shared
def test_a_truncated_video_keeps_its_decoded_frames_and_hides_server_paths(engine, tmp_path):
    """Before: the job failed with the server's temporary path in its error and no results at all."""
    from fastapi.testclient import TestClient

    data = CLIP.read_bytes()
    app = create_app(ServerSettings(workers=1, jobs_dir=str(tmp_path)), engine=engine)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        job = c.post("/v1/jobs?name=cut.mp4", content=data[:len(data) * 6 // 10]).json()
        job = wait_job(c, job["id"])
        assert job["status"] == "failed" and "truncated" in job["error"], job
        assert str(tmp_path) not in job["error"] and "upload" not in job["error"] and "cut.mp4" in job["error"]
        assert 50 < job["frames"] < 234 and job["result"]["summary"]["frames"] == job["frames"]
        frames = c.get(job["files"]["frames.jsonl"])
        assert frames.status_code == 200 and len(frames.text.splitlines()) == job["frames"]
        assert c.get(job["files"]["video.mp4"]).status_code == 200


@needs_shared
def test_expired_jobs_are_swept_without_anyone_calling_the_api(engine, tmp_path, monkeypatch):
    import time

    from fastapi.testclient import TestClient

    monkeypatch.setenv("MASKWATCH_JOB_TTL_S", "0.3")
    app = create_app(ServerSettings(workers=1, jobs_dir=str(tmp_path)), engine=engine)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        job = wait_job(c, c.post("/v1/jobs?name=p.mp4", content=CLIP.read_bytes()).json()["id"])
        folder = c.app.state.jobs.root / job["id"]
        assert job["status"] == "done" and folder.is_dir()
        deadline = time.monotonic() + 5
        while folder.exists() and time.monotonic() < deadline:
            time.sleep(0.05)  # nobody calls the jobs API meanwhile
        assert not folder.exists() and job["id"] not in c.app.state.jobs.jobs


def test_serve_honours_maskwatch_log_level(engine, monkeypatch):
    """Before: serve() passed its own default ("warning") over MASKWATCH_LOG_LEVEL."""
    import logging

    import uvicorn

    import maskwatch.server as server
    import maskwatch.server.app as app_module

    ran = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: ran.append(self.config))
    monkeypatch.setattr(app_module, "load_engine", lambda settings: engine)
    monkeypatch.setenv("MASKWATCH_LOG_LEVEL", "debug")
    level = logging.getLogger("maskwatch").level
    access = logging.getLogger("maskwatch.access")
    monkeypatch.setattr(access, "handlers", list(access.handlers))  # serve() adds its stderr handler: undone after
    monkeypatch.setattr(access, "propagate", access.propagate)
    monkeypatch.setattr(access, "level", access.level)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    try:
        server.serve(host="127.0.0.1", port=port)
        assert ran and ran[0].log_level == "debug"
        assert logging.getLogger("maskwatch").level == logging.DEBUG
    finally:
        logging.getLogger("maskwatch").setLevel(level)
    monkeypatch.setenv("MASKWATCH_LOG_LEVEL", "loud")
    with pytest.raises(Exception, match="unknown log level 'loud'"):
        server.serve(host="127.0.0.1", port=port)


def test_one_client_cannot_take_every_video_job_place(engine, tmp_path, monkeypatch):
    monkeypatch.setenv("MASKWATCH_MAX_JOBS", "4")
    clip = write_clip(tmp_path / "c.mp4", [np.full((120, 160, 3), 90, np.uint8)] * 5).read_bytes()
    with LiveServer(create_app(ServerSettings.from_env(workers=1, jobs_dir=str(tmp_path)), engine=engine)) as srv:
        slow = [slow_upload(srv.port, "127.0.0.2", 5_000_000, path="/v1/jobs", first=clip[:64], ctype="video/mp4")
                for _ in range(2)]
        wait_until(lambda: getattr(srv.app.state, "jobs", None) is not None and srv.app.state.jobs._uploading == 2)
        third = slow_upload(srv.port, "127.0.0.2", len(clip), path="/v1/jobs", first=clip, ctype="video/mp4")
        status, raw = read_response(third)
        assert status == 429 and b"half of MASKWATCH_MAX_JOBS" in raw
        assert post(srv.port, clip, path="/v1/jobs")[0] == 202  # another address still gets a place
        for s in [*slow, third]:
            s.close()
