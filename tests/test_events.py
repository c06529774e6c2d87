"""Event log, alerts, webhook, compliance report and blurring, as a site operator would use them."""

from __future__ import annotations

import csv
import http.server
import json
import socket
import sqlite3
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import HAS_SHARED, SHARED, assert_one_line_error, needs_shared, run_cli, scene_frame, write_clip


@pytest.fixture()
def crowd_clip(tmp_path) -> Path:
    """3 s of a crowd photo (mostly masked) beside an unmasked person, at 10 fps, then 1 s of nobody."""
    if not HAS_SHARED:
        pytest.skip(f"needs the shared data folder at {SHARED}")
    cap = cv2.VideoCapture(str(SHARED / "data" / "video" / "single-unmasked.mp4"))
    for _ in range(30):
        ok, person = cap.read()
    cap.release()
    frame = np.hstack([scene_frame(), cv2.resize(person, (640, 360), interpolation=cv2.INTER_AREA)])
    empty = np.full((360, 1280, 3), 90, np.uint8)
    return write_clip(tmp_path / "entrance.mp4", [frame] * 30 + [empty] * 10)


def run_with(clip, sinks, engine, **kw):
    import maskwatch

    return maskwatch.run([clip], sinks, engine, **kw)


# ------------------------------------------------------------------------------------ event log


def test_event_log_records_runs_sources_tracks_and_events(crowd_clip, engine, tmp_path):
    from maskwatch.events import EventLog, query_events
    from maskwatch.events.store import SCHEMA_VERSION

    db = tmp_path / "site.db"
    log = EventLog(db, command="test")
    summary = run_with(crowd_clip, [log], engine, tracker_options={"alert_after_s": 1.0})
    assert summary.frames == 40
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    status, frames, ended = con.execute("SELECT status, frames, ended_at FROM runs").fetchone()
    assert (status, frames) == ("finished", 40) and ended.endswith("+00:00")
    (path, kind, w, h, fps), = con.execute("SELECT path, kind, width, height, fps FROM sources").fetchall()
    assert (path, kind, w, h, fps) == (str(crowd_clip), "video", 1280, 360, 10.0)
    tracks = con.execute("SELECT track_id, first_s, last_s, frames, label, alerted FROM tracks").fetchall()
    assert len(tracks) >= 5
    assert all(last is not None and last <= 2.95 for _, _, last, _, _, _ in tracks)  # every track closed
    events = query_events(db)
    kinds = [e["kind"] for e in events]
    assert kinds.count("track_started") == kinds.count("track_ended") == len(tracks)
    alerts = [e for e in events if e["kind"] == "unmasked_alert"]
    assert alerts and all(e["label"] == "without_mask" and e["time_s"] >= 1.0 for e in alerts)
    assert {t[0] for t in tracks if t[5]} == {e["track_id"] for e in alerts}
    assert all(e["at"] <= f["at"] for e, f in zip(events, events[1:]))  # oldest first
    con.close()


def test_events_command_filters_and_formats(crowd_clip, engine, tmp_path):
    from maskwatch.events import EventLog

    db = tmp_path / "site.db"
    run_with(crowd_clip, [EventLog(db)], engine, tracker_options={"alert_after_s": 1.0})
    table = run_cli("events", "--db", str(db))
    assert table.returncode == 0, table.stderr
    header = table.stdout.splitlines()[0].split()
    assert header[:3] == ["at", "source", "kind"] and "track_started" in table.stdout
    alerts = run_cli("events", "--db", str(db), "--kind", "unmasked_alert", "--json")
    rows = [json.loads(x) for x in alerts.stdout.splitlines()]
    assert rows and {r["kind"] for r in rows} == {"unmasked_alert"} and all(len(r["box"]) == 4 for r in rows)
    out = run_cli("events", "--db", str(db), "--csv", "--source", "entrance").stdout
    as_csv = list(csv.DictReader(out.splitlines()))
    assert len(as_csv) > len(rows) and all(r["source"].endswith("entrance.mp4") for r in as_csv)
    assert run_cli("events", "--db", str(db), "--source", "elsewhere.mp4", "--json").stdout == ""
    future = (datetime.now(timezone.utc) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    assert run_cli("events", "--db", str(db), "--since", future, "--json").stdout == ""
    assert run_cli("events", "--db", str(db), "--since", "1h", "--json").stdout.count("\n") == len(
        run_cli("events", "--db", str(db), "--json").stdout.splitlines())
    assert_one_line_error(run_cli("events", "--db", str(db), "--since", "yesterday-ish"), "--since", "30m")
    assert_one_line_error(run_cli("events", "--db", str(tmp_path / "none.db")), "no such event log")


def test_a_file_that_is_not_an_event_log_is_left_alone(tmp_path, engine):
    from maskwatch.errors import InputError
    from maskwatch.events import EventLog

    other = tmp_path / "accounts.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE customers (name TEXT)")
    con.commit()
    con.close()
    before = other.read_bytes()
    with pytest.raises(InputError, match="not a maskwatch event log"):
        EventLog(other)
    assert other.read_bytes() == before
    text = tmp_path / "notes.db"
    text.write_text("not a database at all, just words " * 50)
    with pytest.raises(InputError, match="not an SQLite event log"):
        EventLog(text)


def test_newer_schema_is_refused(tmp_path):
    from maskwatch.errors import InputError
    from maskwatch.events import connect

    db = tmp_path / "future.db"
    store = connect(db)
    store.execute("INSERT INTO schema_version (version, applied_at) VALUES (99, 'later')")
    store.close()
    with pytest.raises(InputError, match="newer maskwatch"):
        connect(db)


def test_retention_deletes_only_what_is_older(tmp_path):
    from maskwatch.events import connect, prune, query_events
    from maskwatch.events.store import utc_iso

    db = tmp_path / "site.db"
    con = connect(db)
    con.execute("INSERT INTO runs (started_at) VALUES (?)", (utc_iso(),))
    con.execute("INSERT INTO sources (run_id, path, kind, started_at) VALUES (1, 'cam', 'camera', ?)", (utc_iso(),))
    now = datetime.now(timezone.utc)
    for days in (40, 31, 29, 1):
        con.execute("INSERT INTO events (source_id, kind, at, time_s) VALUES (1, 'track_started', ?, 0)",
                    (utc_iso(now - timedelta(days=days)),))
    assert prune(con, 30) == 2
    con.close()
    assert len(query_events(db)) == 2


def test_detect_with_db_appends_runs_and_prunes(crowd_clip, model_path, tmp_path):
    db = tmp_path / "site.db"
    for _ in range(2):
        proc = run_cli("detect", str(crowd_clip), "-m", str(model_path), "--db", str(db), "--vid-stride", "2",
                       "--retention-days", "30")
        assert proc.returncode == 0, proc.stderr
    con = sqlite3.connect(db)
    assert con.execute("SELECT count(*) FROM runs WHERE status = 'finished'").fetchone()[0] == 2
    assert con.execute("SELECT count(DISTINCT run_id) FROM sources").fetchone()[0] == 2
    con.close()
    assert_one_line_error(run_cli("detect", str(crowd_clip), "--retention-days", "3"), "--db")


# ------------------------------------------------------------------------------------ alerts


class Receiver:
    """A webhook receiver on 127.0.0.1 that keeps every JSON body it is sent."""

    def __init__(self) -> None:
        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def test_alerts_are_posted_once_per_track_with_scores_and_no_face_unless_asked(crowd_clip, engine):
    from maskwatch.alerts import Alerts

    rx = Receiver()
    try:
        alerts = Alerts(rx.url)
        run_with(crowd_clip, [alerts], engine, tracker_options={"alert_after_s": 1.0})
        with_thumbs = Alerts(rx.url, thumbnails=True)
        n_before = len(rx.received)
        run_with(crowd_clip, [with_thumbs], engine, tracker_options={"alert_after_s": 1.0})
    finally:
        rx.close()
    first = rx.received[:n_before]
    assert len(first) == len(alerts.alerts) >= 1 and alerts.sender.sent == len(first)
    assert len({a["track_id"] for a in first}) == len(first)  # once per track
    a = first[0]
    assert a["kind"] == "unmasked_alert" and a["source"].endswith("entrance.mp4") and a["time_s"] >= 1.0
    assert len(a["box"]) == 4 and a["probs"]["without_mask"] > 0.5 and a["at"].endswith("+00:00")
    assert not any("thumbnail_jpeg_base64" in x for x in first)
    import base64

    thumb = rx.received[n_before]["thumbnail_jpeg_base64"]
    img = cv2.imdecode(np.frombuffer(base64.b64decode(thumb), np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and max(img.shape[:2]) <= 128


@pytest.mark.parametrize("dead", ["refused", "silent"])
def test_a_dead_receiver_never_stops_detection(crowd_clip, engine, dead):
    from maskwatch.alerts import Alerts

    if dead == "refused":
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()  # nothing listens there
        listener = None
    else:  # accepts connections, never answers
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        port = listener.getsockname()[1]
    try:
        alerts = Alerts(f"http://127.0.0.1:{port}/hook", timeout=0.5, retries=1, backoff=0.1)
        summary = run_with(crowd_clip, [alerts], engine, tracker_options={"alert_after_s": 1.0})
    finally:
        if listener:
            listener.close()
    assert summary.frames == 40 and alerts.alerts
    assert alerts.sender.sent == 0 and alerts.sender.failed + alerts.sender.dropped == len(alerts.alerts)


def test_a_full_alert_queue_drops_instead_of_waiting():
    from maskwatch.alerts import WebhookSender

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    try:
        sender = WebhookSender(f"http://127.0.0.1:{listener.getsockname()[1]}/", timeout=0.3, retries=0, max_queue=2)
        for k in range(10):
            sender.send({"n": k})  # returns at once even though nothing is answered
        sender.close(grace=0.5)
    finally:
        listener.close()
    assert sender.dropped >= 7 and sender.sent == 0


def test_bad_webhook_url_is_one_line(crowd_clip, model_path):
    assert_one_line_error(run_cli("detect", str(crowd_clip), "--alert-webhook", "ftp://example/hook"), "http")


# ------------------------------------------------------------------------------------ report


def test_wilson_interval_known_values():
    from maskwatch.report import wilson_interval

    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-3) and hi == pytest.approx(0.9433, abs=1e-3)
    assert wilson_interval(0, 0) is None
    assert wilson_interval(5, 5)[1] == 1.0


def test_report_files_and_the_block_at_the_end_of_detect(crowd_clip, model_path, tmp_path):
    proc = run_cli("detect", str(crowd_clip), "-m", str(model_path), "--report", "--project", str(tmp_path / "runs"),
                   "--alert-after", "1")
    assert proc.returncode == 0, proc.stderr
    folder = tmp_path / "runs" / "detect" / "exp"
    summary = json.loads((folder / "summary.json").read_text())
    src = summary["sources"][str(crowd_clip)]
    tracks = summary["tracks"][str(crowd_clip)]
    people = [t for t in tracks if t["frames"] >= 3]
    assert src["people"] == len(people) >= 5 and src["frames"] == 40
    assert src["people_mostly"]["with_mask"] + src["people_mostly"]["without_mask"] == src["people"]
    assert src["compliance_rate"] == pytest.approx(src["people_mostly"]["with_mask"] / src["people"], abs=1e-3)
    lo, hi = src["compliance_ci95"]
    assert lo <= src["compliance_rate"] <= hi and src["alerts"] >= 1
    rows = list(csv.DictReader((folder / "timeline.csv").open()))
    assert [float(r["start_s"]) for r in rows] == [0.0, 1.0, 2.0, 3.0]
    for r in rows:
        assert int(r["with_mask"]) + int(r["without_mask"]) == int(r["tracks"])
    assert int(rows[-1]["tracks"]) == 0 and int(rows[0]["tracks"]) >= 5  # nobody in the last second
    chart = cv2.imread(str(folder / "timeline.png"))
    assert chart is not None and chart.shape[1] == 1000
    assert (chart[:, :, 1] > 150).sum() > 1000 and ((chart[:, :, 2] > 180) & (chart[:, :, 1] < 80)).sum() > 100
    block = [x for x in proc.stdout.splitlines() if "compliance" in x]
    assert len(block) == 1 and f"{src['people']} people" in block[0] and "95% CI" in block[0]


# ------------------------------------------------------------------------------------ privacy


def _detail(image, box):
    """Fine detail (mean absolute Laplacian) in the middle of a face box."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    roi = cv2.cvtColor(image[y1 + h // 4:y2 - h // 4, x1 + w // 4:x2 - w // 4], cv2.COLOR_BGR2GRAY)
    return float(np.abs(cv2.Laplacian(roi, cv2.CV_64F)).mean())


@needs_shared
def test_blur_removes_the_detail_of_the_chosen_faces_only(engine, shared):
    from maskwatch.privacy import blur_faces

    img = cv2.imread(str(shared / "data" / "scenes-dev" / "images" / "01242020_masks-qa_151720-780x520.jpg"))
    faces = engine.detect(img).faces
    assert {f.label for f in faces} == {"with_mask", "without_mask"}
    for blur in ("all", "with_mask", "without_mask"):
        out = blur_faces(img, faces, blur)
        for f in faces:
            if blur in ("all", f.label):
                assert _detail(out, f.box) < 0.5 * _detail(img, f.box), (blur, f)
    assert blur_faces(img, faces, "none") is img


def _mean_diff(a, b, box):
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    sl = (slice(y1 + h // 4, y2 - h // 4), slice(x1 + w // 4, x2 - w // 4))
    return float(np.abs(a[sl].astype(int) - b[sl].astype(int)).mean())


@needs_shared
def test_detect_blur_changes_the_saved_faces_it_names(shared, model_path, tmp_path):
    img = shared / "data" / "scenes-dev" / "images" / "01242020_masks-qa_151720-780x520.jpg"
    out = {}
    for blur in ("none", "without_mask"):
        proc = run_cli("detect", str(img), "-m", str(model_path), "--save", "--blur", blur, "--json",
                       str(tmp_path / f"{blur}.jsonl"), "--project", str(tmp_path / blur))
        assert proc.returncode == 0, proc.stderr
        out[blur] = cv2.imread(str(tmp_path / blur / "detect" / "exp" / img.name))
    faces = json.loads((tmp_path / "none.jsonl").read_text())["faces"]
    unmasked = [f["box"] for f in faces if f["label"] == "without_mask"]
    assert unmasked
    for f in faces:
        diff = _mean_diff(out["none"], out["without_mask"], f["box"])
        if f["label"] == "without_mask":
            assert diff > 8
        elif all(f["box"][2] < b[0] or b[2] < f["box"][0] or f["box"][3] < b[1] or b[3] < f["box"][1]
                 for b in unmasked):  # a masked face apart from every unmasked one is untouched
            assert diff < 2


def test_report_counts_people_by_the_label_they_held_longest():
    from maskwatch.report import ComplianceReport
    from maskwatch.results import Face, FrameResult
    from maskwatch.track import TrackEvent

    def face(tid, label):
        p = {"with_mask": 0.9, "without_mask": 0.1} if label == "with_mask" else {"with_mask": 0.1, "without_mask": 0.9}
        return Face((0, 0, 10, 10), 0.9, label, 0.9, p, tid)

    def ended(tid, frames, seconds, seen):
        track = {"track_id": tid, "frames": frames, "label": seen[-1], "labels_seen": seen, "label_seconds": seconds,
                 "unmasked_s": seconds.get("without_mask", 0.0), "changes": [{}] * (len(seen) - 1)}
        return TrackEvent("track_ended", "cam", tid, frames, 0.0, seen[-1], track=track)

    rep = ComplianceReport(min_track_frames=3)
    for k in range(30):  # 3 s at 10 fps; track 1 masked, track 2 unmasked then masked at 2 s, track 3 a blip
        faces = [face(1, "with_mask"), face(2, "without_mask" if k < 20 else "with_mask")]
        if k == 5:
            faces.append(face(3, "without_mask"))
        r = FrameResult("cam", 100, 100, faces, frame=k, time_s=k / 10)
        if k == 29:
            r.events = [ended(1, 30, {"with_mask": 2.9}, ["with_mask"]),
                        ended(2, 30, {"without_mask": 2.0, "with_mask": 0.9}, ["without_mask", "with_mask"]),
                        ended(3, 1, {}, ["without_mask"])]
        rep.write(r)
    s = rep.summary()["sources"]["cam"]
    assert s["people"] == 2 and s["people_mostly"] == {"with_mask": 1, "without_mask": 1}
    assert s["people_seen"] == {"with_mask": 2, "without_mask": 1} and s["changed_label"] == 1
    assert s["compliance_rate"] == 0.5 and s["unmasked_s"] == 2.0
    timeline = rep.timeline("cam")
    assert [(r["tracks"], r["with_mask"], r["without_mask"]) for r in timeline] == [(3, 1, 2), (2, 1, 1), (2, 2, 0)]
    assert "2 people (1 mostly with_mask, 1 mostly without_mask); compliance 50%" in rep.text()
