"""The event log: runs, sources, face tracks and their events in an SQLite file.

One background thread owns the connection and writes in short transactions, so the frame loop
only puts items on a queue and never waits on the disk. The file is in WAL mode (readers such as
``maskwatch events`` never block the writer) with a busy timeout, so several processes (one per
camera) can share one file. The schema is versioned (``PRAGMA user_version``) and migrated forward
when an older file is opened. Times are UTC (ISO 8601, ``...+00:00``) with the source time
(``time_s``, seconds into the video, or since the start for cameras) alongside.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from maskwatch.errors import InputError

log = logging.getLogger(__name__)

#: Schema migrations: ``MIGRATIONS[k]`` takes a file from version ``k`` to ``k + 1``.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        started_at TEXT NOT NULL,
        ended_at TEXT,
        status TEXT NOT NULL DEFAULT 'running',
        frames INTEGER NOT NULL DEFAULT 0,
        command TEXT,
        host TEXT,
        pid INTEGER,
        version TEXT
    );
    CREATE TABLE sources (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        path TEXT NOT NULL,
        kind TEXT NOT NULL,
        width INTEGER, height INTEGER, fps REAL, frame_count INTEGER, vid_stride INTEGER,
        started_at TEXT NOT NULL
    );
    CREATE TABLE tracks (
        id INTEGER PRIMARY KEY,
        source_id INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
        track_id INTEGER NOT NULL,
        first_at TEXT, last_at TEXT,
        first_s REAL, last_s REAL,
        frames INTEGER,
        label TEXT,
        labels_seen TEXT,
        unmasked_s REAL,
        changes TEXT,
        alerted INTEGER NOT NULL DEFAULT 0,
        UNIQUE (source_id, track_id)
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        source_id INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        at TEXT NOT NULL,
        time_s REAL,
        frame INTEGER,
        track_id INTEGER,
        label TEXT,
        previous TEXT,
        box TEXT,
        probs TEXT
    );
    CREATE INDEX events_at ON events(at);
    CREATE INDEX events_kind_at ON events(kind, at);
    CREATE INDEX sources_path ON sources(path);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)

_STOP = object()


def utc_iso(dt: datetime | None = None) -> str:
    """``dt`` (default: now) as UTC ISO 8601 with milliseconds, the one format stored (sorts as text)."""
    dt = dt or datetime.now(timezone.utc)
    return dt.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def connect(path: str | Path, *, create: bool = True) -> sqlite3.Connection:
    """Open (and create or migrate) an event log file; WAL mode, foreign keys on, 10 s busy timeout."""
    path = Path(path)
    if not create and not path.is_file():
        raise InputError(f"{path}: no such event log; pass the file a detect run wrote with --db.")
    if path.is_dir():
        raise InputError(f"{path}: is a folder; --db wants a file (e.g. {path / 'events.db'}).")
    try:
        if create and path.parent and not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{path}: cannot create the event log's folder ({exc.strerror}); choose a writable "
                         "place.") from exc
    try:
        con = sqlite3.connect(str(path), timeout=10.0, isolation_level=None, check_same_thread=False)
        con.execute("PRAGMA foreign_keys = ON")
        version = con.execute("PRAGMA user_version").fetchone()[0]
        if version == 0 and not create:
            con.close()
            raise InputError(f"{path}: not a maskwatch event log (no schema); pass a file written with --db.")
        if version == 0 and con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            con.close()
            raise InputError(f"{path}: an SQLite file that is not a maskwatch event log; choose another path "
                             "(it is left as it is).")
        if create and version <= SCHEMA_VERSION:
            con.execute("PRAGMA journal_mode = WAL")
            con.execute("PRAGMA synchronous = NORMAL")
    except sqlite3.OperationalError as exc:
        raise InputError(f"{path}: cannot open the event log ({exc}); check that the place is writable.") from exc
    except sqlite3.DatabaseError as exc:
        raise InputError(f"{path}: not an SQLite event log ({exc}); pass a file written by --db, or a new "
                         "path.") from exc
    except PermissionError as exc:
        raise InputError(f"{path}: cannot open the event log ({exc.strerror}); choose a writable place.") from exc
    if version > SCHEMA_VERSION:
        con.close()
        raise InputError(f"{path}: written by a newer maskwatch (schema {version}, this one knows {SCHEMA_VERSION}); "
                         "upgrade maskwatch.")
    if version < SCHEMA_VERSION:
        if not create:
            con.close()
            raise InputError(f"{path}: event log schema {version} is older than {SCHEMA_VERSION}; open it once with "
                             "detect --db to migrate it.")
        for k in range(version, SCHEMA_VERSION):
            con.executescript(f"BEGIN IMMEDIATE;\n{MIGRATIONS[k]}\nPRAGMA user_version = {k + 1};\nCOMMIT;")
            log.info("event log %s migrated to schema %d", path, k + 1)
    return con


def prune(con: sqlite3.Connection, retention_days: float) -> int:
    """Delete events, tracks, sources and runs older than ``retention_days``; returns events deleted."""
    cutoff = utc_iso(datetime.now(timezone.utc) - timedelta(days=retention_days))
    con.execute("BEGIN IMMEDIATE")
    try:
        n = con.execute("DELETE FROM events WHERE at < ?", (cutoff,)).rowcount
        con.execute("DELETE FROM tracks WHERE last_at < ?", (cutoff,))
        con.execute("DELETE FROM runs WHERE ended_at IS NOT NULL AND ended_at < ?", (cutoff,))
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return n


class EventLog:
    """Sink that records sources, face tracks and their events into an SQLite file (see module doc).

    Args:
        path: the SQLite file (created, or migrated, when needed).
        command: what was run (stored with the run).
        retention_days: on opening, delete what is older than this many days (``None``: keep all).
        max_queue: items waiting for the writer thread at most; beyond, new events are counted as
            dropped (the frame loop is never held up by a slow disk).
    """

    def __init__(self, path: str | Path, command: str = "", retention_days: float | None = None,
                 max_queue: int = 100_000) -> None:
        from maskwatch._version import __version__

        self.path = Path(path)
        con = connect(self.path)  # errors here, in the caller's thread, before anything runs
        try:
            if retention_days is not None:
                n = prune(con, retention_days)
                if n:
                    log.info("event log: %d events older than %g days deleted", n, retention_days)
            cur = con.execute("INSERT INTO runs (started_at, command, host, pid, version) VALUES (?, ?, ?, ?, ?)",
                              (utc_iso(), command, socket.gethostname(), os.getpid(), __version__))
            self.run_id = cur.lastrowid
        except BaseException:
            con.close()
            raise
        self._con = con
        self._q: queue.Queue = queue.Queue(maxsize=max_queue)
        self._sources: dict[str, int] = {}  # source name -> key (the writer maps keys to row ids)
        self._next_key = 0
        self.frames = 0
        self.events_written = 0
        self.dropped = 0
        self.status = "finished"
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="maskwatch-event-log", daemon=True)
        self._thread.start()

    # -- the frame loop's side: never blocks
    def _put(self, item: tuple) -> None:
        try:
            self._q.put_nowait(item)
        except queue.Full:
            self.dropped += 1

    def write(self, result) -> None:
        self.frames += 1
        if not result.events and result.source in self._sources:
            return
        key = self._sources.get(result.source)
        if key is None:
            key = self._sources[result.source] = self._next_key
            self._next_key += 1
            info = result.source_info
            self._put(("source", key, result.source, info, utc_iso()))
        for ev in result.events:
            self._put(("event", key, ev))

    def finish(self, summary) -> None:
        """Called by the run loop before :meth:`close`: how the run ended."""
        if summary.signal_name:
            self.status = f"stopped by {summary.signal_name}"
        elif summary.stopped_by_sink:
            self.status = "stopped"

    def close(self) -> None:
        if self._thread.is_alive():
            self._q.put(_STOP)
            self._thread.join()
        if self._con is not None:
            self._con.close()
            self._con = None
        if self.dropped:
            log.warning("event log: %d events dropped (the disk could not keep up)", self.dropped)
        if self._error is not None:
            raise InputError(f"{self.path}: writing the event log failed: {self._error}") from self._error

    # -- the writer thread
    def _work(self) -> None:
        con = self._con
        rows: dict[int, int] = {}
        try:
            stop = False
            while not stop:
                batch = [self._q.get()]
                deadline = time.monotonic() + 0.2
                while len(batch) < 2000:
                    try:
                        batch.append(self._q.get(timeout=max(0.0, deadline - time.monotonic())))
                    except queue.Empty:
                        break
                if batch[-1] is _STOP or _STOP in batch:
                    stop = True
                    batch = [b for b in batch if b is not _STOP]
                con.execute("BEGIN IMMEDIATE")
                try:
                    for item in batch:
                        self._write_item(con, rows, item)
                    if stop:
                        con.execute("UPDATE runs SET ended_at = ?, status = ?, frames = ? WHERE id = ?",
                                    (utc_iso(), self.status, self.frames, self.run_id))
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
        except BaseException as exc:  # noqa: BLE001 - reported by close()
            log.error("event log writer stopped: %s", exc)
            self._error = exc
            while True:  # keep draining so that producers never block
                try:
                    if self._q.get(timeout=0.5) is _STOP:
                        return
                except queue.Empty:
                    continue

    def _write_item(self, con: sqlite3.Connection, rows: dict[int, int], item: tuple) -> None:
        if item[0] == "source":
            _, key, name, info, at = item
            cur = con.execute(
                "INSERT INTO sources (run_id, path, kind, width, height, fps, frame_count, vid_stride, started_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (self.run_id, name, info.kind if info else "unknown", info.width if info else None,
                 info.height if info else None, info.fps if info else None, info.frame_count if info else None,
                 info.vid_stride if info else None, at))
            rows[key] = cur.lastrowid
            return
        _, key, ev = item
        sid = rows[key]
        at = utc_iso(ev.at)
        con.execute(
            "INSERT INTO events (source_id, kind, at, time_s, frame, track_id, label, previous, box, probs) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (sid, ev.kind, at, ev.time_s, ev.frame, ev.track_id, ev.label, ev.previous,
             None if ev.box is None else json.dumps(list(ev.box)),
             None if ev.probs is None else json.dumps({k: round(v, 4) for k, v in ev.probs.items()})))
        self.events_written += 1
        if ev.kind == "track_started":
            con.execute("INSERT OR IGNORE INTO tracks (source_id, track_id, first_at, first_s, label) "
                        "VALUES (?, ?, ?, ?, ?)", (sid, ev.track_id, at, ev.time_s, ev.label))
        elif ev.kind == "unmasked_alert":
            con.execute("UPDATE tracks SET alerted = 1 WHERE source_id = ? AND track_id = ?", (sid, ev.track_id))
        elif ev.kind == "track_ended" and ev.track is not None:
            t = ev.track
            con.execute(
                "INSERT INTO tracks (source_id, track_id, first_at, last_at, first_s, last_s, frames, label, "
                "labels_seen, unmasked_s, changes, alerted) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (source_id, track_id) DO UPDATE SET last_at = excluded.last_at, "
                "first_s = excluded.first_s, last_s = excluded.last_s, frames = excluded.frames, "
                "label = excluded.label, labels_seen = excluded.labels_seen, unmasked_s = excluded.unmasked_s, "
                "changes = excluded.changes, alerted = excluded.alerted",
                (sid, ev.track_id, at, at, t["first_s"], t["last_s"], t["frames"], t["label"],
                 json.dumps(t["labels_seen"]), t["unmasked_s"], json.dumps(t["changes"]), int(t["alerted"])))


# ------------------------------------------------------------------------------------------ reading

EVENT_COLUMNS = ("at", "source", "kind", "time_s", "frame", "track_id", "label", "previous", "box", "probs")


def parse_since(text: str, now: datetime | None = None) -> str:
    """``--since``: an ISO date/time (UTC unless it says otherwise) or an age such as ``30m``, ``2h``, ``7d``."""
    now = now or datetime.now(timezone.utc)
    t = text.strip()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    if t and t[-1] in units and t[:-1].replace(".", "", 1).isdigit():
        return utc_iso(now - timedelta(seconds=float(t[:-1]) * units[t[-1]]))
    try:
        dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"--since {text!r}: expected an ISO time (2026-05-01, 2026-05-01T08:00) or an age "
                         "(30m, 2h, 7d).") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return utc_iso(dt)


def query_events(path: str | Path, since: str | None = None, source: str | None = None,
                 kind: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """Recorded events, oldest first. ``since``: see :func:`parse_since`; ``source``: a path or a
    substring of one; ``kind``: one of the event kinds."""
    con = connect(path, create=False)
    try:
        sql = ("SELECT e.at, s.path, e.kind, e.time_s, e.frame, e.track_id, e.label, e.previous, e.box, e.probs "
               "FROM events e JOIN sources s ON s.id = e.source_id WHERE 1 = 1")
        args: list[Any] = []
        if since:
            sql += " AND e.at >= ?"
            args.append(parse_since(since))
        if source:
            sql += " AND (s.path = ? OR instr(s.path, ?) > 0)"
            args += [source, source]
        if kind:
            sql += " AND e.kind = ?"
            args.append(kind)
        sql += " ORDER BY e.at, e.id"
        if limit:
            sql += f" LIMIT {int(limit)}"
        rows = con.execute(sql, args).fetchall()
    finally:
        con.close()
    out = []
    for r in rows:
        d = dict(zip(EVENT_COLUMNS, r))
        d["box"] = None if d["box"] is None else json.loads(d["box"])
        d["probs"] = None if d["probs"] is None else json.loads(d["probs"])
        out.append(d)
    return out


def format_table(rows: Iterable[dict[str, Any]]) -> str:
    """Events as an aligned text table for a terminal."""
    cols = ("at", "source", "kind", "time_s", "track_id", "label", "previous")
    body = []
    for r in rows:
        src = str(r["source"])
        body.append([str(r["at"]).replace("+00:00", "Z"), src if len(src) <= 32 else "..." + src[-29:], r["kind"],
                     "" if r["time_s"] is None else f"{r['time_s']:.2f}",
                     "" if r["track_id"] is None else str(r["track_id"]),
                     r["label"] or "", r["previous"] or ""])
    widths = [max([len(c)] + [len(b[i]) for b in body]) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(b, widths)) for b in body]
    return "\n".join(line.rstrip() for line in lines)
