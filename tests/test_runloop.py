"""The run loop as users meet it: sinks, saved videos at the right speed, clean stops on signals,
outputs that refuse to collide, and a quiet exit when the reader of stdout goes away."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import assert_one_line_error, needs_shared, run_cli, write_clip


class Collect:
    """A sink that keeps what it is given and remembers being closed."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.results, self.closed, self.stop_after = [], False, stop_after

    def write(self, result) -> None:
        self.results.append(result)
        if self.stop_after is not None and len(self.results) >= self.stop_after:
            from maskwatch.runloop import StopRun

            raise StopRun

    def close(self) -> None:
        self.closed = True


def test_run_hands_every_frame_to_every_sink_with_its_source(tmp_path, engine):
    import maskwatch

    clip = write_clip(tmp_path / "corridor.mp4", [np.full((240, 320, 3), 100, np.uint8)] * 6, fps=12)
    a, b = Collect(), Collect()
    summary = maskwatch.run([clip], [a, b], engine, vid_stride=2)
    assert summary.frames == 3 and summary.signal is None and a.closed and b.closed
    assert [r.frame for r in a.results] == [0, 2, 4] and a.results == b.results
    info = a.results[0].source_info
    assert (info.kind, info.width, info.height, info.vid_stride) == ("video", 320, 240, 2)
    assert info.fps == pytest.approx(12) and info.output_fps == pytest.approx(6)
    assert "source_info" not in a.results[0].to_dict()  # the JSON contract is unchanged


def test_a_sink_can_stop_the_run_and_everything_is_still_closed(tmp_path, engine):
    import maskwatch

    clip = write_clip(tmp_path / "corridor.mp4", [np.full((240, 320, 3), 100, np.uint8)] * 20)
    stopper, other = Collect(stop_after=3), Collect()
    summary = maskwatch.run([clip], [stopper, other], engine)
    assert summary.stopped_by_sink and stopper.closed and other.closed
    assert 3 <= summary.frames < 20


def test_a_failing_sink_still_closes_the_others(tmp_path, engine):
    import maskwatch

    class Broken(Collect):
        def write(self, result):
            raise OSError("disk full")

    clip = write_clip(tmp_path / "corridor.mp4", [np.full((240, 320, 3), 100, np.uint8)] * 5)
    ok, broken = Collect(), Broken()
    with pytest.raises(OSError, match="disk full"):
        maskwatch.run([clip], [ok, broken], engine)
    assert ok.closed and broken.closed


def test_same_path_for_two_outputs_is_refused_before_anything_is_created(tmp_path, blank_image):
    out = tmp_path / "out.txt"
    proc = run_cli("detect", str(blank_image), "--json", str(out), "--csv", str(tmp_path / "." / "out.txt"))
    assert_one_line_error(proc, "--json and --csv", "own file")
    assert not out.exists()


def test_an_existing_second_output_leaves_no_first_output_behind(tmp_path, blank_image):
    (tmp_path / "faces.csv").write_text("keep me\n")
    proc = run_cli("detect", str(blank_image), "--json", str(tmp_path / "frames.jsonl"),
                   "--csv", str(tmp_path / "faces.csv"))
    assert_one_line_error(proc, "already exists")
    assert not (tmp_path / "frames.jsonl").exists()
    assert (tmp_path / "faces.csv").read_text() == "keep me\n"


@pytest.fixture()
def blank_image(tmp_path) -> Path:
    p = tmp_path / "wall.png"
    cv2.imwrite(str(p), np.full((48, 64, 3), 128, np.uint8))
    return p


@needs_shared
def test_reader_of_stdout_going_away_ends_quietly_with_0(shared, model_path):
    clip = shared / "data" / "video" / "putting-mask-on.mp4"
    proc = subprocess.Popen([sys.executable, "-m", "maskwatch", "detect", str(clip), "-m", str(model_path),
                             "--json", "-"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()  # as `| head -1` does
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert json.loads(first)["frame"] == 0
    assert proc.returncode == 0, err
    assert b"Traceback" not in err and b"error" not in err.lower()


@needs_shared
def test_saved_video_keeps_the_source_frame_rate_divided_by_the_stride(shared, model_path, tmp_path):
    av = pytest.importorskip("av")
    clip = shared / "data" / "video" / "putting-mask-on.mp4"  # 25 fps, 234 frames
    proc = run_cli("detect", str(clip), "-m", str(model_path), "--save", "--vid-stride", "5",
                   "--project", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stderr
    saved = tmp_path / "runs" / "detect" / "exp" / "putting-mask-on.mp4"
    with av.open(str(saved)) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.name == "h264"  # plays in browsers (mp4v does not)
        assert float(stream.average_rate) == pytest.approx(5.0)
        n = sum(1 for _ in c.decode(stream))
    assert n == 47
    assert n / 5.0 == pytest.approx(234 / 25, abs=0.3)  # plays as long as the source


@needs_shared
@pytest.mark.parametrize("sig,code,word", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGHUP, 129, "SIGHUP")])
def test_signal_mid_run_leaves_complete_outputs(shared, model_path, tmp_path, sig, code, word):
    clip = shared / "data" / "video" / "airport-crowd.mp4"  # 661 frames: still running when signalled
    out_json, out_csv, db = tmp_path / "frames.jsonl", tmp_path / "faces.csv", tmp_path / "events.db"
    proc = subprocess.Popen([sys.executable, "-m", "maskwatch", "detect", str(clip), "-m", str(model_path),
                             "--save", "--json", str(out_json), "--csv", str(out_csv), "--db", str(db),
                             "--project", str(tmp_path / "runs")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if out_json.exists() and len(out_json.read_text().splitlines()) >= 20:
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    stops = [line for line in err.splitlines() if word in line]
    assert len(stops) == 1 and "closed" in stops[0]
    frames = [json.loads(line) for line in out_json.read_text().splitlines()]  # every line whole
    assert 20 <= len(frames) < 661 and [f["frame"] for f in frames] == list(range(len(frames)))
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == sum(len(f["faces"]) for f in frames)
    saved = tmp_path / "runs" / "detect" / "exp" / "airport-crowd.mp4"
    cap = cv2.VideoCapture(str(saved))
    assert cap.isOpened()
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == len(frames)  # the file was finished: every written frame plays
    import sqlite3

    con = sqlite3.connect(db)
    assert con.execute("SELECT status, frames FROM runs").fetchone() == (f"stopped by {word}", len(frames))
    started = con.execute("SELECT count(*) FROM events WHERE kind = 'track_started'").fetchone()[0]
    ended = con.execute("SELECT count(*) FROM events WHERE kind = 'track_ended'").fetchone()[0]
    assert started > 0 and ended == started  # open tracks closed with their last time
    last = con.execute("SELECT max(last_s) FROM tracks").fetchone()[0]
    assert last == pytest.approx(frames[-1]["time_s"], abs=0.05)
    con.close()


@needs_shared
def test_putting_a_mask_on_is_seen_both_ways_and_switches_quickly(engine, shared):
    clip = str(shared / "data" / "video" / "putting-mask-on.mp4")
    raw = list(engine.process([clip], track=False))
    covered = next(r.time_s for r in raw if r.faces and r.faces[0].probs["with_mask"] >= 0.5
                   and r.frame > 5)  # first frame the classifier alone sees the mask
    results = list(engine.process([clip]))
    events = [e for r in results for e in r.events]
    changes = [e for e in events if e.kind == "label_changed"]
    assert changes and changes[0].previous == "without_mask" and changes[0].label == "with_mask"
    assert 0 <= changes[0].time_s - covered <= 0.5
    ended = [e.track for e in events if e.kind == "track_ended" and e.track["frames"] >= 3]
    assert any({"with_mask", "without_mask"} <= set(t["labels_seen"]) for t in ended)
    main = max(ended, key=lambda t: t["frames"])
    assert main["unmasked_s"] == pytest.approx(changes[0].time_s - main["first_s"], abs=0.05)
    labels = [r.faces[0].label for r in results if r.faces and r.time_s > changes[0].time_s + 0.5]
    assert np.mean([x == "with_mask" for x in labels]) > 0.95  # stays masked: no flicker


@needs_shared
def test_detect_says_the_person_was_seen_with_and_without_a_mask(shared, model_path):
    clip = shared / "data" / "video" / "putting-mask-on.mp4"
    proc = run_cli("detect", str(clip), "-m", str(model_path), "--vid-stride", "2")
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if "face tracks:" in x)
    assert "seen with_mask 1" in line and "seen without_mask 1" in line and "changed label 1" in line


@needs_shared
@pytest.mark.slow
def test_saved_video_plays_in_chromium(shared, model_path, tmp_path):
    """The annotated video is one a browser plays (Debian's Chromium, headless, as in test_browser)."""
    import functools
    import http.server
    import threading

    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = Path("/usr/bin/chromium")
    if not chromium.is_file():
        pytest.skip("apt-get install chromium")
    proc = run_cli("detect", str(shared / "data" / "video" / "putting-mask-on.mp4"), "-m", str(model_path),
                   "--save", "--vid-stride", "3", "--project", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stderr
    folder = tmp_path / "runs" / "detect" / "exp"
    (folder / "index.html").write_text('<video id="v" src="putting-mask-on.mp4" muted></video>')
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(chromium), args=["--headless", "--no-sandbox"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/index.html")
            page.wait_for_function("document.getElementById('v').readyState >= 2", timeout=20000)
            state = page.evaluate("""async () => { const v = document.getElementById('v');
                await v.play(); await new Promise(r => setTimeout(r, 500));
                return {duration: v.duration, time: v.currentTime, w: v.videoWidth, error: v.error}; }""")
            browser.close()
    finally:
        server.shutdown()
    assert state["error"] is None and state["w"] == 388
    assert state["duration"] == pytest.approx(234 / 25, abs=0.3) and state["time"] > 0
