"""The event log under attack: locked, damaged, raced, unwritable, bad values (issue 16 items 1, 5, 9, 10)."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import HAS_SHARED, SHARED, assert_one_line_error, run_cli

CLIP = SHARED / "data" / "video" / "single-masked.mp4"
needs_clip = pytest.mark.skipif(not HAS_SHARED or not CLIP.is_file(), reason=f"needs {CLIP} (the shared data folder)")


def start_detect(db: Path, *extra: str) -> subprocess.Popen:
    """``python -m maskwatch detect <shared clip> --db DB`` in the background, as a user would start it."""
    return subprocess.Popen([sys.executable, "-m", "maskwatch", "detect", str(CLIP), "--db", str(db),
                             "--vid-stride", "4", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_run_row(db: Path, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Wait until the run has recorded itself (its runs row), i.e. it is past opening the log."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        assert proc.poll() is None, proc.communicate()
        try:
            con = sqlite3.connect(db, timeout=5)
            n = con.execute("SELECT count(*) FROM runs WHERE pid = ?", (proc.pid,)).fetchone()[0]
            con.close()
            if n:
                return
        except sqlite3.OperationalError:
            pass
        time.sleep(0.05)
    raise AssertionError("the run never recorded itself")


def new_log(path: Path) -> Path:
    from maskwatch.events import EventLog

    EventLog(path, command="setup").close()
    return path


def finish(proc: subprocess.Popen, timeout: float) -> tuple[int, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"the run did not end within {timeout} s: {err[-2000:]}") from None
    return proc.returncode, err


# ------------------------------------------------------------------ item 1: a locked log never hangs a run


@needs_clip
def test_a_log_locked_for_good_mid_run_ends_the_run_with_one_clear_error(tmp_path):
    db = new_log(tmp_path / "x.db")
    proc = start_detect(db)
    wait_for_run_row(db, proc)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # held until the run is over
    try:
        code, err = finish(proc, timeout=60)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert code == 2, err

    class P:  # assert_one_line_error wants a CompletedProcess
        returncode, stderr = code, err

    assert_one_line_error(P, "locked", str(db))


@needs_clip
def test_a_lock_held_for_a_moment_is_waited_for(tmp_path):
    db = new_log(tmp_path / "x.db")
    proc = start_detect(db)
    wait_for_run_row(db, proc)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    time.sleep(3)
    holder.execute("COMMIT")
    holder.close()
    code, err = finish(proc, timeout=60)
    assert code == 0, err
    con = sqlite3.connect(db)
    assert con.execute("SELECT status FROM runs ORDER BY id DESC LIMIT 1").fetchone()[0] == "finished"
    assert con.execute("SELECT count(*) FROM events WHERE kind = 'track_ended'").fetchone()[0] >= 1
    con.close()


@needs_clip
def test_sigterm_ends_a_run_waiting_on_a_locked_log(tmp_path):
    db = new_log(tmp_path / "x.db")
    proc = start_detect(db)
    wait_for_run_row(db, proc)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        time.sleep(4)  # the clip (61 frames) is done by now: the run waits for the lock to write its end
        proc.send_signal(signal.SIGTERM)
        code, err = finish(proc, timeout=8)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert code == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and "SIGTERM" in err


@needs_clip
@pytest.mark.parametrize("damage", ["DROP TABLE events", "ALTER TABLE tracks DROP COLUMN unmasked_s"])
def test_a_dropped_table_or_column_ends_the_run_with_one_clear_error(tmp_path, damage):
    db = new_log(tmp_path / "x.db")
    proc = start_detect(db)
    wait_for_run_row(db, proc)
    con = sqlite3.connect(db, isolation_level=None, timeout=10)
    con.execute(damage)
    con.close()
    code, err = finish(proc, timeout=60)

    class P:
        returncode, stderr = code, err

    assert_one_line_error(P, str(db))
    assert code == 2


# ------------------------------------------------------------------ item 5: runs racing to create one new log


def _open_log_at_once(path: str, barrier, results) -> None:
    from maskwatch.events import EventLog

    barrier.wait()
    try:
        EventLog(path, command="racer").close()
        results.put("ok")
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        results.put(f"{type(exc).__name__}: {exc}")


def test_eight_processes_creating_one_new_log_at_once_all_succeed(tmp_path):
    ctx = multiprocessing.get_context("fork")
    db = tmp_path / "new.db"
    for attempt in range(3):  # a race: give it a few chances to show
        if db.exists():
            for p in tmp_path.glob("new.db*"):
                p.unlink()
        barrier, results = ctx.Barrier(8), ctx.Queue()
        procs = [ctx.Process(target=_open_log_at_once, args=(str(db), barrier, results)) for _ in range(8)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        outcomes = [results.get(timeout=5) for _ in procs]
        assert outcomes == ["ok"] * 8, outcomes
    con = sqlite3.connect(db)
    assert con.execute("SELECT count(*) FROM runs WHERE status = 'finished'").fetchone()[0] == 8
    from maskwatch.events import SCHEMA_VERSION

    assert con.execute("SELECT max(version) FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    con.close()


@pytest.mark.skipif(not HAS_SHARED, reason=f"needs the shared data folder at {SHARED}")
def test_four_detect_runs_started_together_on_a_new_log_all_finish(tmp_path):
    photo = next((SHARED / "data" / "scenes-dev" / "images").glob("*.jpg"))
    db = tmp_path / "site.db"
    procs = [subprocess.Popen([sys.executable, "-m", "maskwatch", "detect", str(photo), "--db", str(db)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    codes = [finish(p, timeout=120) for p in procs]
    assert [c for c, _ in codes] == [0] * 4, codes
    con = sqlite3.connect(db)
    assert con.execute("SELECT count(*) FROM runs WHERE status = 'finished'").fetchone()[0] == 4
    assert con.execute("SELECT count(DISTINCT run_id) FROM sources").fetchone()[0] == 4
    con.close()
