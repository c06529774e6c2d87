"""maskwatch watch: the site file, the shared batching classifier, readers that come back, a site of
looped files end to end (events, metrics, health), and the ``watch`` command with ``--serve``.

Real RTSP streams: tests/test_watch_rtsp.py; the dashboard in Chromium: tests/test_watch_browser.py.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, SHARED, assert_one_line_error, needs_shared, run_cli

AIRPORT = SHARED / "data" / "video" / "airport-crowd.mp4"
UNMASKED = SHARED / "data" / "video" / "single-unmasked.mp4"


def write_site(path: Path, body: str) -> Path:
    path.write_text(body, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------ site file


@needs_shared
def test_example_site_file_is_valid():
    import os

    from maskwatch.watch import load_site

    old = os.getcwd()
    os.chdir(ROOT)  # the example names ../shared from the repository root
    try:
        site = load_site(ROOT / "examples" / "site.toml")
    finally:
        os.chdir(old)
    assert len(site.cameras) >= 2
    assert all(c.kind == "file" and c.loop for c in site.cameras)
    assert len({c.name for c in site.cameras}) == len(site.cameras)


def test_site_file_every_mistake_named_by_its_key(tmp_path):
    from maskwatch.errors import InputError
    from maskwatch.watch import load_site

    site = write_site(tmp_path / "site.toml", """
[site]
name = "x"
colour = "red"

[[camera]]
name = "a"
source = "rtsp://127.0.0.1:1/cam"
fps = -2

[[camera]]
name = "a"
source = "rtsp://127.0.0.1:2/cam"

[[camera]]
source = "no-such-clip.mp4"
webhook = "ftp://x"
""")
    with pytest.raises(InputError) as err:
        load_site(site)
    msg = str(err.value)
    for key in ("site.colour: unknown key", "camera[1].fps: expected a number > 0, got -2",
                "camera[2].name: 'a' is already the name of camera[1]", "camera[3].name:",
                "camera[3].source: no-such-clip.mp4: no such file", "camera[3].webhook: expected an http"):
        assert key in msg, (key, msg)


def test_site_file_accepts_streams_cameras_and_defaults(tmp_path):
    from maskwatch.watch import parse_site

    site = parse_site({"defaults": {"fps": 2, "alert_after_s": 3},
                       "camera": [{"name": "gate", "source": "rtsp://u:p@10.0.0.2/s"},
                                  {"name": "desk", "source": 0, "fps": 10},
                                  {"name": "web", "source": "http://10.0.0.3/mjpg", "alert_after_s": False}]})
    gate, desk, web = site.cameras
    assert (gate.kind, gate.fps, gate.alert_after_s) == ("stream", 2.0, 3.0)
    assert (desk.kind, desk.source, desk.fps) == ("camera", "0", 10.0)
    assert (web.kind, web.alert_after_s) == ("stream", None)


def test_watch_command_bad_site_file_is_one_line_error(tmp_path):
    site = write_site(tmp_path / "site.toml", '[[camera]]\nname = "a"\nsource = "rtsp://h/x"\nfps = "fast"\n')
    proc = run_cli("watch", str(site), timeout=300)
    assert proc.returncode == 2
    assert_one_line_error(proc, "camera[1].fps", "expected a number")
    broken = write_site(tmp_path / "broken.toml", "[[camera]\nname=")
    assert_one_line_error(run_cli("watch", str(broken), timeout=300), "not valid TOML")
    assert_one_line_error(run_cli("watch", str(tmp_path / "missing.toml"), timeout=300), "no such site file")


# ------------------------------------------------------------------------------------ shared classifier


def test_batching_classifier_matches_direct_predict_across_threads(engine, rng):
    from maskwatch.watch.batching import BatchingClassifier

    crops = [rng.integers(0, 255, (40 + 4 * i, 36 + 2 * i, 3), dtype=np.uint8) for i in range(12)]
    expected = engine.classifier.predict(crops)
    shared = BatchingClassifier(engine.classifier, max_wait_ms=20)
    assert shared.classes == engine.classifier.classes  # the classifier's interface
    out: dict[int, np.ndarray] = {}

    def camera(k: int) -> None:
        out[k] = shared.predict(crops[3 * k:3 * k + 3])

    threads = [threading.Thread(target=camera, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    shared.close()
    got = np.concatenate([out[k] for k in range(4)])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert shared.requests == 4 and shared.crops == 12
    assert shared.batches < 4  # calls from several cameras went through the model together
    assert shared.predict([]).shape == (0, len(engine.classes))


# ------------------------------------------------------------------------------------ readers


class FakeCapture:
    """A stream that delivers ``n`` frames (``None``: for ever), then fails."""

    def __init__(self, n: int | None) -> None:
        self.n, self.i = n, 0

    def read(self):
        time.sleep(0.01)
        if self.n is not None and self.i >= self.n:
            return False, None
        self.i += 1
        return True, np.full((48, 64, 3), self.i % 255, np.uint8)

    def get(self, prop):  # noqa: ARG002
        return 25.0

    def set(self, prop, value):  # noqa: ARG002
        return True

    def release(self) -> None:
        pass


def test_reader_reports_unavailable_lost_restored_and_keeps_only_the_latest_frame():
    from maskwatch.watch.config import CameraConfig
    from maskwatch.watch.reader import FrameReader

    plan = [None, FakeCapture(5), None, FakeCapture(None)]  # down, 5 frames, down again, back for good
    calls: list[float] = []

    def opener(cam):
        calls.append(time.monotonic())
        return plan.pop(0) if plan else FakeCapture(None)

    seen: list[str] = []
    cam = CameraConfig("gate", "rtsp://x/y", "stream", reconnect_min_s=0.05, reconnect_max_s=0.2)
    reader = FrameReader(cam, on_status=lambda kind, detail: seen.append(kind), opener=opener).start()
    try:
        deadline = time.monotonic() + 10
        while "restored" not in seen and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)  # frames pile up; only the newest is handed out
        got = reader.latest(0, timeout=2)
    finally:
        reader.close()
    assert seen[:4] == ["unavailable", "connected", "lost", "restored"]
    assert reader.reconnects == 1
    assert got is not None and got.seq > 5  # a frame from after the reconnection
    assert reader.dropped > 0  # frames that arrived while nobody asked were dropped, not queued
    assert calls[2] - calls[1] >= 0.04  # waited (backoff) before trying again


# ------------------------------------------------------------------------------------ a site of files


@needs_shared
def test_monitor_looped_files_events_metrics_and_an_unreachable_camera(engine, tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    from maskwatch.watch import Monitor, parse_site

    site = parse_site({"site": {"name": "t"}, "defaults": {"fps": 4, "alert_after_s": 1},
                       "camera": [{"name": "airport", "source": str(AIRPORT)},
                                  {"name": "door", "source": str(UNMASKED)},
                                  {"name": "dead", "source": "rtsp://127.0.0.1:9/none",
                                   "reconnect_min_s": 0.2, "reconnect_max_s": 0.5}]})
    db = tmp_path / "events.db"
    with Monitor(site, engine=engine, db=str(db)) as mon:
        t_start = time.monotonic()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            snap = mon.snapshot()
            elapsed = time.monotonic() - t_start
            cams = {c["name"]: c for c in snap["cameras"]}
            if cams["airport"]["frames"] >= 12 and cams["door"]["frames"] >= 12 and cams["door"]["alerts"]:
                break
            time.sleep(0.5)
        timeline = mon.timeline("airport")["points"]
        site_line = mon.timeline()["points"]
        metrics = mon.metrics.render().decode()
        assert mon.ready
    assert cams["airport"]["status"] == "connected" and cams["airport"]["people"] >= 0
    assert cams["door"]["alerts"] >= 1 and cams["door"]["alert_active"]  # the unmasked man
    assert cams["dead"]["status"] == "unavailable" and cams["dead"]["frames"] == 0
    assert "cannot open" in cams["dead"]["error"]
    assert cams["airport"]["dropped"] > 0  # 25 fps clip, 4 fps analysed: the rest dropped, not queued
    assert cams["airport"]["lag_s"] < 5
    for name in ("airport", "door"):  # the fps cap holds (over the run; a frame or two of catch-up at the start)
        assert cams[name]["frames"] <= 4 * elapsed + 3, (name, cams[name]["frames"], elapsed)
    assert timeline and all(len(p) == 3 for p in timeline) and site_line
    assert any(r["kind"] == "stream_unavailable" and r["camera"] == "dead" for r in snap["recent"])
    assert any(r["kind"] == "unmasked_alert" and r["camera"] == "door" for r in snap["recent"])

    families = {f.name: f for f in text_string_to_metric_families(metrics)}
    frames = {s.labels["camera"]: s.value for s in families["maskwatch_watch_frames"].samples
              if s.name.endswith("_total")}
    assert frames["airport"] >= 12 and frames["dead"] == 0
    assert {"maskwatch_watch_compliance", "maskwatch_watch_lag_seconds", "maskwatch_watch_reconnects",
            "maskwatch_watch_classifier_queue_depth", "maskwatch_watch_faces", "maskwatch_watch_alerts",
            "maskwatch_watch_people", "maskwatch_watch_frames_dropped"} <= set(families)

    con = sqlite3.connect(db)
    rows = dict(con.execute("SELECT s.path || ':' || e.kind, count(*) FROM events e JOIN sources s "
                            "ON s.id = e.source_id GROUP BY 1").fetchall())
    status = con.execute("SELECT status, ended_at FROM runs").fetchall()
    con.close()
    assert rows.get("airport:track_started", 0) > 0 and rows.get("door:unmasked_alert", 0) >= 1
    assert rows.get("dead:stream_unavailable") == 1
    assert rows.get("airport:track_started") == rows.get("airport:track_ended")  # tracks closed at the end
    assert status[0][1] is not None


# ------------------------------------------------------------------------------------ the command


def _get(url: str, timeout: float = 10.0):
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback
        return resp.status, resp.headers.get("content-type", ""), resp.read()


@pytest.mark.slow
@needs_shared
def test_watch_command_serves_dashboard_metrics_health_and_stops_on_sigterm(tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    from rtsp import free_port

    pytest.importorskip("uvicorn", reason="the serve extra is not installed")
    port = free_port()
    db = tmp_path / "watch.db"
    proc = subprocess.Popen([sys.executable, "-m", "maskwatch", "watch", "examples/site.toml", "--serve",
                             "--port", str(port), "--db", str(db), "--log-json"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        ready = False
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                ready = _get(base + "/readyz")[0] == 200
            except OSError:
                ready = False
            if ready:
                break
            time.sleep(0.5)
        assert ready, proc.stderr.read() if proc.poll() is not None else "not ready in 120 s"
        time.sleep(3)
        assert _get(base + "/healthz")[0] == 200
        status, ctype, body = _get(base + "/metrics")
        assert status == 200 and ctype.startswith("text/plain")
        families = {f.name: f for f in text_string_to_metric_families(body.decode())}
        cams = {s.labels["camera"] for s in families["maskwatch_watch_frames"].samples}
        assert cams == {"airport", "entrance", "lobby"}
        snap = json.loads(_get(base + "/v1/watch")[2])
        assert [c["name"] for c in snap["cameras"]] == ["airport", "entrance", "lobby"]
        assert all(c["connected"] for c in snap["cameras"])
        status, ctype, jpg = _get(base + "/v1/watch/cameras/airport/thumbnail.jpg")
        assert ctype == "image/jpeg" and jpg[:2] == b"\xff\xd8"
        assert b"uPlot" in _get(base + "/watch")[2] and _get(base + "/static/vendor/uPlot.iife.min.js")[0] == 200
        points = json.loads(_get(base + "/v1/watch/timeline?camera=airport")[2])["points"]
        assert points
        with pytest.raises(urllib.error.HTTPError) as err:
            _get(base + "/v1/watch/timeline?camera=nope")
        assert err.value.code == 404 and "no camera named 'nope'" in err.value.read().decode()
        assert _get(base + "/")[0] == 200  # the server's own page is there too
        import socket

        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:  # uvicorn logs a warning...
            raw.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            raw.recv(100)
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err_text = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err_text = proc.communicate()
    assert proc.returncode == 0, err_text
    lines = [json.loads(line) for line in err_text.splitlines() if line.strip()]  # --log-json: every line JSON
    assert any(d["logger"].startswith("uvicorn") for d in lines)  # ...as JSON too
    assert any("stopped by SIGTERM" in d["message"] for d in lines)
    con = sqlite3.connect(db)
    run = con.execute("SELECT ended_at, command, status FROM runs").fetchone()
    n_sources = con.execute("SELECT count(DISTINCT path) FROM sources").fetchone()[0]
    con.close()
    assert run[0] is not None and "watch" in run[1]  # closed cleanly: the run has its end
    assert run[2] == "stopped by SIGTERM"
    assert n_sources == 3


def test_watch_command_refuses_a_busy_port_and_an_unsupported_db_url(tmp_path):
    import socket

    site = write_site(tmp_path / "site.toml", '[[camera]]\nname = "a"\nsource = "rtsp://127.0.0.1:9/x"\n')
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert_one_line_error(run_cli("watch", str(site), "--serve", "--port", str(port), timeout=300),
                              f"--port {port}", "choose another port")
    proc = run_cli("watch", str(site), "--db", "mysql://u@127.0.0.1:5/db", timeout=300)
    assert_one_line_error(proc, "mysql", "sqlite")
    assert not (tmp_path / "mysql:").exists() and not Path("mysql:").exists()


@needs_shared
def test_monitor_reads_an_http_mjpeg_stream(engine):
    """An http:// camera (MJPEG, as many IP cameras serve it) is read through OpenCV's FFmpeg."""
    import http.server

    import cv2

    from maskwatch.watch import Monitor, parse_site

    cap = cv2.VideoCapture(str(UNMASKED))
    jpegs = []
    for _ in range(20):
        ok, frame = cap.read()
        assert ok
        jpegs.append(cv2.imencode(".jpg", cv2.resize(frame, (320, 180)))[1].tobytes())
    cap.release()
    stop = threading.Event()

    class Mjpeg(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            k = 0
            try:
                while not stop.is_set():
                    jpg = jpegs[k % len(jpegs)]
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                     + str(len(jpg)).encode() + b"\r\n\r\n" + jpg + b"\r\n")
                    k += 1
                    time.sleep(0.04)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args):  # quiet
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Mjpeg)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/video.mjpg"
    try:
        site = parse_site({"camera": [{"name": "ipcam", "source": url, "fps": 5}]})
        with Monitor(site, engine=engine) as mon:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and mon.cameras["ipcam"].frames < 5:
                time.sleep(0.3)
            snap = mon.cameras["ipcam"].snapshot()
    finally:
        stop.set()
        httpd.shutdown()
        httpd.server_close()
    assert snap["kind"] == "stream" and snap["frames"] >= 5, snap
    assert snap["people"] == 1  # the man in the clip


def test_yaml_site_file_reads_like_toml(tmp_path):
    pytest.importorskip("yaml", reason="PyYAML is not installed: pip install 'maskwatch[watch]'")
    from maskwatch.errors import InputError
    from maskwatch.watch import load_site

    toml = write_site(tmp_path / "site.toml", '[site]\nname = "s"\n[defaults]\nfps = 2\n'
                                              '[[camera]]\nname = "a"\nsource = "rtsp://h/x"\n')
    yaml_site = write_site(tmp_path / "site.yaml", "site:\n  name: s\ndefaults:\n  fps: 2\n"
                                                   "camera:\n  - name: a\n    source: rtsp://h/x\n")
    assert load_site(yaml_site).cameras == load_site(toml).cameras
    bad = write_site(tmp_path / "bad.yml", "camera:\n  - name: a\n    fps: [\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_site(bad)
    wrong = write_site(tmp_path / "wrong.yaml", "camera:\n  - name: a\n    source: rtsp://h/x\n    fps: zero\n")
    with pytest.raises(InputError, match=r"camera\[1\]\.fps: expected a number"):
        load_site(wrong)


def test_timeline_points_per_second():
    from maskwatch.watch.camera import Timeline

    tl = Timeline()
    tl.add(100.1, 4, 1, 2)
    tl.add(100.6, 6, 2, 2)
    tl.add(101.2, 3, 0, 0)  # nobody sure: no compliance
    tl.add(110.3, 2, 2, 2)  # a stream gap: no points in between (the chart breaks its line there)
    assert tl.series() == [(100, 5.0, 0.75), (101, 3.0, None), (110, 2.0, 1.0)]
    assert tl.series(since=101) == [(101, 3.0, None), (110, 2.0, 1.0)]


@needs_shared
def test_camera_webhook_receives_its_alerts(engine):
    import http.server

    from maskwatch.watch import Monitor, parse_site

    received: list[dict] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        site = parse_site({"camera": [{"name": "door", "source": str(UNMASKED), "fps": 4, "alert_after_s": 1,
                                       "webhook": f"http://127.0.0.1:{httpd.server_address[1]}/alerts"}]})
        with Monitor(site, engine=engine):
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not received:
                time.sleep(0.3)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert received, "no alert reached the webhook"
    assert received[0]["kind"] == "unmasked_alert" and received[0]["source"] == "door"


def test_watch_without_serve_stops_cleanly_on_sigterm(tmp_path):
    site = write_site(tmp_path / "site.toml", '[[camera]]\nname = "gone"\nsource = "rtsp://127.0.0.1:9/x"\n'
                                              "reconnect_max_s = 1\n")
    db = tmp_path / "events.db"
    proc = subprocess.Popen([sys.executable, "-m", "maskwatch", "watch", str(site), "--db", str(db)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        def unavailable() -> bool:
            try:
                con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
                try:
                    return con.execute("SELECT count(*) FROM events WHERE kind = 'stream_unavailable'").fetchone()[0]
                finally:
                    con.close()
            except sqlite3.Error:  # not created yet
                return False

        while time.monotonic() < deadline and not unavailable():
            time.sleep(0.2)
        assert proc.poll() is None  # a camera that cannot connect does not end the watch
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stopped by SIGTERM" in err and "Traceback" not in err
    assert "gone: 0 frames analysed, 0 dropped, 0 reconnects, 0 alerts (unavailable: cannot open" in err
    con = sqlite3.connect(db)
    assert con.execute("SELECT status FROM runs").fetchone()[0] == "stopped by SIGTERM"
    con.close()


def test_routes_before_any_frame_readyz_503_and_json_404s(engine):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from maskwatch.watch import Monitor, parse_site
    from maskwatch.watch.web import mount

    site = parse_site({"camera": [{"name": "gate", "source": "rtsp://127.0.0.1:9/x"}]})
    mon = Monitor(site, engine=engine)  # not started: no frame yet
    try:
        client = TestClient(mount(FastAPI(), mon))
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "starting"
        thumb = client.get("/v1/watch/cameras/gate/thumbnail.jpg")
        assert thumb.status_code == 404 and "no frame yet" in thumb.json()["detail"]
        missing = client.get("/v1/watch/cameras/nope/thumbnail.jpg")
        assert missing.status_code == 404 and "the site has gate" in missing.json()["detail"]
        snap = client.get("/v1/watch").json()
        assert snap["cameras"][0]["status"] == "connecting" and snap["cameras"][0]["source"] == "rtsp://127.0.0.1:9/x"
        assert client.get("/v1/watch/timeline").json() == {"camera": None, "points": []}
    finally:
        mon.close()


def test_stream_passwords_never_reach_the_dashboard():
    from maskwatch.events.backends import redact as _redact

    assert _redact("rtsp://admin:s3cret@10.0.0.2:554/s1") == "rtsp://admin:***@10.0.0.2:554/s1"
    assert _redact("rtsp://10.0.0.2/s1") == "rtsp://10.0.0.2/s1"


@needs_shared
def test_the_monitor_engine_reads_the_spec_variables(monkeypatch, model_path):
    """watch builds its engine from the one spec: MASKWATCH_* variables apply, the site file names the detector."""
    import os

    from maskwatch.watch import load_site
    from maskwatch.watch.monitor import Monitor

    monkeypatch.setenv("MASKWATCH_MODEL", str(model_path))
    monkeypatch.setenv("MASKWATCH_FACE_THRESHOLD", "0.7")
    monkeypatch.setenv("MASKWATCH_RECLASSIFY_EVERY", "3")
    old = os.getcwd()
    os.chdir(ROOT)
    try:
        site = load_site(ROOT / "examples" / "site.toml")
    finally:
        os.chdir(old)
    mon = Monitor(site)  # not started
    assert mon.engine.spec.face_threshold == 0.7 and mon.engine.spec.reclassify_every == 3
    assert mon.engine.spec.detector == site.detector
    assert all(cam.engine.spec == mon.engine.spec for cam in mon.cameras.values())
