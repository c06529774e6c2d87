"""Events in PostgreSQL as well as SQLite: one schema, one writer, the same rows (issue 14 item 5).

These run against a real PostgreSQL server started by the ``postgres_server`` fixture (see
tests/postgres.py); without one they skip and say what to install.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import threading

import pytest

import postgres
from conftest import HAS_SHARED, SHARED, assert_one_line_error, run_cli

postgres_server, postgres_url = postgres.postgres_server, postgres.postgres_url  # pytest fixtures

CLIP = SHARED / "data" / "video" / "single-unmasked.mp4"
needs_clip = pytest.mark.skipif(not HAS_SHARED or not CLIP.is_file(), reason=f"needs {CLIP} (the shared data folder)")


def pg_rows(url: str, sql: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(url) as con:
        return con.execute(sql).fetchall()


TRACK_COLUMNS = "track_id, first_at, last_at, first_s, last_s, frames, label, labels_seen, unmasked_s, changes, alerted"


@needs_clip
def test_one_run_into_both_stores_gives_the_same_rows(engine, tmp_path, postgres_url):
    import maskwatch
    from maskwatch.events import EventLog, query_events

    sqlite_log = EventLog(tmp_path / "site.db", command="same run")
    pg_log = EventLog(postgres_url, command="same run")
    summary = maskwatch.run([CLIP], [sqlite_log, pg_log], engine, vid_stride=4, tracker_options={"alert_after_s": 1.0})
    assert summary.frames > 0
    from_sqlite, from_pg = query_events(tmp_path / "site.db"), query_events(postgres_url)
    assert from_sqlite == from_pg
    kinds = {e["kind"] for e in from_pg}
    assert {"track_started", "track_ended", "unmasked_alert"} <= kinds
    con = sqlite3.connect(tmp_path / "site.db")
    sqlite_tracks = con.execute(f"SELECT {TRACK_COLUMNS} FROM tracks ORDER BY id").fetchall()
    sqlite_runs = con.execute("SELECT status, frames, command FROM runs").fetchall()
    sqlite_version = con.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
    con.close()
    assert [tuple(r) for r in pg_rows(postgres_url, f"SELECT {TRACK_COLUMNS} FROM tracks ORDER BY id")] == sqlite_tracks
    assert [tuple(r) for r in pg_rows(postgres_url, "SELECT status, frames, command FROM runs")] == sqlite_runs
    assert [tuple(r) for r in pg_rows(postgres_url, "SELECT version FROM schema_version ORDER BY version")] \
        == sqlite_version == [(1,), (2,)]


@needs_clip
def test_detect_and_events_with_a_postgresql_url(tmp_path, postgres_url):
    for db in (postgres_url, str(tmp_path / "site.db")):
        proc = run_cli("detect", str(CLIP), "--db", db, "--vid-stride", "4", "--alert-after", "1",
                       "--retention-days", "30", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site.db", "site.db-shm", "site.db-wal"] or \
        sorted(p.name for p in tmp_path.iterdir()) == ["site.db"]  # no "postgresql:" folder
    out = {}
    for name, db in (("pg", postgres_url), ("sqlite", str(tmp_path / "site.db"))):
        proc = run_cli("events", "--db", db, "--json")
        assert proc.returncode == 0, proc.stderr
        out[name] = [json.loads(x) for x in proc.stdout.splitlines()]
    assert out["pg"] and len(out["pg"]) == len(out["sqlite"])
    same = [{k: v for k, v in r.items() if k != "at"} for r in out["pg"]]  # two runs: only the wall clock differs
    assert same == [{k: v for k, v in r.items() if k != "at"} for r in out["sqlite"]]
    # the filters speak PostgreSQL too
    newest = run_cli("events", "--db", postgres_url, "--json", "--limit", "2").stdout
    newest = [json.loads(x) for x in newest.splitlines()]
    assert newest == out["pg"][-2:]
    part = run_cli("events", "--db", postgres_url, "--json", "--source", "unmasked", "--kind", "unmasked_alert")
    rows = [json.loads(x) for x in part.stdout.splitlines()]
    assert rows and all(r["kind"] == "unmasked_alert" and r["source"] == str(CLIP) for r in rows)
    assert run_cli("events", "--db", postgres_url, "--source", "elsewhere", "--json").stdout == ""
    table = run_cli("events", "--db", postgres_url)
    assert table.returncode == 0 and "track_started" in table.stdout


def _create_at_once(url: str, barrier, results) -> None:
    from maskwatch.events import EventLog

    barrier.wait()
    try:
        EventLog(url, command="racer").close()
        results.put("ok")
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        results.put(f"{type(exc).__name__}: {exc}")


def test_eight_processes_creating_the_schema_at_once_all_succeed(postgres_url):
    import multiprocessing

    from maskwatch.events import SCHEMA_VERSION

    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(8), ctx.Queue()
    procs = [ctx.Process(target=_create_at_once, args=(postgres_url, barrier, results)) for _ in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [results.get(timeout=5) for _ in procs] == ["ok"] * 8
    assert pg_rows(postgres_url, "SELECT count(*) FROM runs WHERE status = 'finished'")[0][0] == 8
    assert pg_rows(postgres_url, "SELECT max(version) FROM schema_version")[0][0] == SCHEMA_VERSION


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_writes_from_one_thread_per_camera(store, tmp_path, request):
    """What ``watch`` does: one EventLog, written by a thread per camera at once."""
    from maskwatch.events import EventLog, query_events
    from maskwatch.results import FrameResult, SourceInfo
    from maskwatch.track import TrackEvent

    target = request.getfixturevalue("postgres_url") if store == "postgresql" else tmp_path / "site.db"
    log = EventLog(target)
    cameras, frames = 6, 200

    def camera(k: int) -> None:
        name = f"rtsp://cam{k}/live"
        info = SourceInfo("stream", name, 64, 48)
        for f in range(frames):
            events = [TrackEvent("track_started", name, f, f, f / 10, "with_mask", box=(1, 2, 3, 4))
                      ] if f % 4 == 0 else []
            log.write(FrameResult(name, 64, 48, [], frame=f, time_s=f / 10, events=events, source_info=info))

    threads = [threading.Thread(target=camera, args=(k,)) for k in range(cameras)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    rows = query_events(target)
    assert len(rows) == cameras * frames // 4 and log.dropped == 0
    for k in range(cameras):
        mine = [r["track_id"] for r in rows if r["source"] == f"rtsp://cam{k}/live"]
        assert sorted(mine) == list(range(0, frames, 4))
    assert log.frames == cameras * frames


def test_retention_prunes_postgresql_too(postgres_url):
    from datetime import datetime, timedelta, timezone

    from maskwatch.events import EventLog, connect, query_events
    from maskwatch.events.store import utc_iso

    store = connect(postgres_url)
    now = datetime.now(timezone.utc)

    def fill() -> None:
        run = store.insert("INSERT INTO runs (started_at) VALUES (?)", (utc_iso(),))
        sid = store.insert("INSERT INTO sources (run_id, path, kind, started_at) VALUES (?, 'cam', 'camera', ?)",
                           (run, utc_iso()))
        for days in (40, 31, 29, 1):
            store.execute("INSERT INTO events (source_id, kind, at, time_s) VALUES (?, 'track_started', ?, 0)",
                          (sid, utc_iso(now - timedelta(days=days))))

    store.transact(fill, doing="test")
    store.close()
    EventLog(postgres_url, retention_days=30).close()
    assert len(query_events(postgres_url)) == 2


@needs_clip
def test_an_unreachable_server_and_a_bad_url_are_one_line(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here afterwards
    url = f"postgresql://maskwatch:secret@127.0.0.1:{port}/site"
    for args in (["events", "--db", url], ["detect", str(CLIP), "--db", url, "--vid-stride", "8"]):
        proc = run_cli(*args)
        assert proc.returncode == 2
        assert_one_line_error(proc, "cannot connect to PostgreSQL", f"127.0.0.1:{port}")
        assert "secret" not in proc.stderr  # the password is never shown


def test_a_table_dropped_under_a_run_ends_it_with_one_line(postgres_url):
    from maskwatch.errors import InputError
    from maskwatch.events import EventLog
    from maskwatch.results import FrameResult
    from maskwatch.track import TrackEvent

    log = EventLog(postgres_url)
    pg_rows_exec = __import__("psycopg").connect(postgres_url, autocommit=True)
    pg_rows_exec.execute("DROP TABLE events CASCADE")
    pg_rows_exec.close()
    log.write(FrameResult("cam", 4, 4, [], frame=0, time_s=0, events=[TrackEvent("track_started", "cam", 1, 0, 0.0)]))
    with pytest.raises(InputError, match="tables were changed"):
        log.close()


def test_python_api_without_psycopg_says_what_to_install(tmp_path):
    code = ("import sys; sys.modules['psycopg'] = None\n"
            "from maskwatch.cli import main\n"
            "sys.exit(main(['events', '--db', 'postgresql://u@127.0.0.1:5/x']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert_one_line_error(proc, "maskwatch[pg]")


@pytest.mark.parametrize("release_after", [None, 1.0])
def test_a_locked_postgresql_table_is_waited_for_then_one_clear_error(postgres_url, release_after):
    import time

    import psycopg

    from maskwatch.errors import InputError
    from maskwatch.events import EventLog, query_events
    from maskwatch.results import FrameResult
    from maskwatch.track import TrackEvent

    log = EventLog(postgres_url, lock_timeout_s=3)
    holder = psycopg.connect(postgres_url)
    holder.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")  # inside the holder's transaction
    log.write(FrameResult("cam", 4, 4, [], frame=0, time_s=0, events=[TrackEvent("track_started", "cam", 1, 0, 0.0)]))
    if release_after is None:
        with pytest.raises(InputError, match="locked for more than 3 s"):
            log.close()
        holder.rollback()
    else:
        time.sleep(release_after)
        holder.rollback()
        log.close()
        assert [e["track_id"] for e in query_events(postgres_url)] == [1]
    holder.close()
