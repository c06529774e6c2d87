"""The event log: runs, sources, face tracks and their events, in SQLite or PostgreSQL.

``--db`` takes an SQLite file path (``events.db``) or a ``postgresql://user@host:5432/dbname`` URL;
both stores hold the same versioned schema (a ``schema_version`` table; SQLite also keeps
``PRAGMA user_version``) and are written by the same code: only the dialect differs
(:mod:`maskwatch.events.backends`).

One background thread owns the writing connection and writes in short transactions, so the frame
loop only puts items on a queue and never waits on the disk or the network. :meth:`EventLog.write`
may be called from several threads at once (one per camera). SQLite files are in WAL mode (readers
such as ``maskwatch events`` never block the writer), so several processes (one per camera) can
share one file; a write that finds the store locked is retried for up to ``lock_timeout_s`` seconds,
then the run ends with one clear error. Times are UTC (ISO 8601 text, ``...+00:00``, which sorts as
time) with the source time (``time_s``, seconds into the video, or since the start for cameras)
alongside.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

from maskwatch.errors import InputError
from maskwatch.events.backends import Backend, EventLogError, backend_for, describe, is_url

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Schema migrations, shared by both stores: ``MIGRATIONS[k]`` takes a store from version ``k`` to
#: ``k + 1``. ``{id}``, ``{key}`` and ``{real}`` are filled with the backend's column types.
MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE runs (
            id {id},
            started_at TEXT NOT NULL,
            ended_at TEXT,
            status TEXT NOT NULL DEFAULT 'running',
            frames INTEGER NOT NULL DEFAULT 0,
            command TEXT,
            host TEXT,
            pid INTEGER,
            version TEXT
        )""",
        """CREATE TABLE sources (
            id {id},
            run_id {key} NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            path TEXT NOT NULL,
            kind TEXT NOT NULL,
            width INTEGER, height INTEGER, fps {real}, frame_count INTEGER, vid_stride INTEGER,
            started_at TEXT NOT NULL
        )""",
        """CREATE TABLE tracks (
            id {id},
            source_id {key} NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
            track_id INTEGER NOT NULL,
            first_at TEXT, last_at TEXT,
            first_s {real}, last_s {real},
            frames INTEGER,
            label TEXT,
            labels_seen TEXT,
            unmasked_s {real},
            changes TEXT,
            alerted INTEGER NOT NULL DEFAULT 0,
            UNIQUE (source_id, track_id)
        )""",
        """CREATE TABLE events (
            id {id},
            source_id {key} NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
            kind TEXT NOT NULL,
            at TEXT NOT NULL,
            time_s {real},
            frame INTEGER,
            track_id INTEGER,
            label TEXT,
            previous TEXT,
            box TEXT,
            probs TEXT
        )""",
        "CREATE INDEX events_at ON events(at)",
        "CREATE INDEX events_kind_at ON events(kind, at)",
        "CREATE INDEX sources_path ON sources(path)",
    ],
    [  # 2: the version in a table, the same in SQLite and PostgreSQL
        "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)

#: ``--retention-days`` at most (100 years); beyond, dates fall off the calendar.
MAX_RETENTION_DAYS = 36500.0
#: Seconds a write waits for a store another program holds locked before the run ends with an error.
LOCK_TIMEOUT_S = 10.0
#: Seconds one attempt waits for a lock (between attempts, a stop signal is noticed).
_ATTEMPT_S = 1.0

#: After a stop signal, seconds the writer still gets to finish before the run ends without it.
_SIGNAL_GRACE_S = 5.0

_STOP = object()


class EventLogInterrupted(EventLogError):
    """A stop signal ended a run while its events could not be written (the store was locked)."""


def utc_iso(dt: datetime | None = None) -> str:
    """``dt`` (default: now) as UTC ISO 8601 with milliseconds, the one format stored (sorts as text)."""
    dt = dt or datetime.now(timezone.utc)
    return dt.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def check_retention_days(days: float | None) -> float | None:
    """``--retention-days``: a finite number of days above 0 and at most 100 years (``None``: keep all)."""
    if days is None:
        return None
    try:
        value = float(days)
    except (TypeError, ValueError):
        value = math.nan
    if not (0 < value <= MAX_RETENTION_DAYS):  # also refuses nan
        raise InputError(f"--retention-days {days}: expected a number of days above 0 and at most "
                         f"{MAX_RETENTION_DAYS:g} (100 years), e.g. 30.")
    return value


class Store:
    """One open connection to an event store (SQLite file or PostgreSQL), speaking the shared SQL.

    Use :func:`connect` (writers: creates or migrates the schema) or :func:`open_reader`.
    ``?`` placeholders work for both backends. Not for use by two threads at once.
    """

    def __init__(self, target: str | Path, *, readonly: bool, busy_timeout_s: float = _ATTEMPT_S) -> None:
        self.backend: Backend = backend_for(target)
        self.label = self.backend.label
        self.readonly = readonly
        self.con = self.backend.connect(readonly=readonly, busy_timeout_s=busy_timeout_s)

    # -- plain statements
    def execute(self, sql: str, args: Iterable[Any] = ()):
        """Run one statement (``?`` placeholders); returns the driver's cursor."""
        return self.con.execute(self.backend.sql(sql), tuple(args))

    def insert(self, sql: str, args: Iterable[Any] = ()) -> int:
        """Run one ``INSERT`` and return the new row's id."""
        return self.backend.insert_id(self.con, self.backend.sql(sql), tuple(args))

    def guarded(self, fn: Callable[[], T], doing: str) -> T:
        """``fn()``, with driver errors turned into one clear :class:`EventLogError`."""
        try:
            return fn()
        except EventLogError:
            raise
        except self.backend.driver_errors() as exc:
            raise self.backend.explain(exc, doing) from exc

    def transact(self, fn: Callable[[], T], *, doing: str, timeout_s: float = LOCK_TIMEOUT_S,
                 abort: threading.Event | None = None) -> T:
        """``fn()`` in one write transaction. While another program holds the store locked, retry for
        up to ``timeout_s`` seconds (sooner when ``abort`` is set), then raise :class:`EventLogError`."""
        deadline = time.monotonic() + timeout_s
        delay = 0.05
        while True:
            try:
                try:
                    with self.backend.batching(self.con):
                        self.backend.begin_write(self.con)
                        out = fn()
                        self.con.execute("COMMIT")
                    return out
                except BaseException:
                    self._rollback()
                    raise
            except EventLogError:
                raise
            except self.backend.driver_errors() as exc:
                if not self.backend.is_locked(exc):
                    raise self.backend.explain(exc, doing) from exc
                left = deadline - time.monotonic()
                if left <= 0 or (abort is not None and abort.is_set()):
                    raise EventLogError(
                        f"{self.label}: {doing} failed: another program kept the event log locked for more than "
                        f"{timeout_s:g} s; try again when it is done (or give this run its own --db)") from exc
                time.sleep(min(delay, left))
                delay = min(delay * 2, 0.5)

    def _rollback(self) -> None:
        try:
            self.con.execute("ROLLBACK")
        except Exception:  # noqa: BLE001 - no transaction left to roll back
            pass

    # -- schema
    def version(self) -> int:
        """The schema version stored (0: empty)."""
        return self.guarded(lambda: self.backend.stored_version(self.con), "reading the event log")

    def migrate(self, timeout_s: float = LOCK_TIMEOUT_S) -> None:
        """Create the schema, or bring an older one up to :data:`SCHEMA_VERSION`. Safe when several
        processes do it at once: the check and the change happen in one write transaction."""
        version = self._retrying(self._survey, "opening the event log", timeout_s)
        self._retrying(lambda: self.backend.prepare(self.con), "opening the event log", timeout_s)
        # (after the check: a file that is not ours is left as it is)
        if version == SCHEMA_VERSION:
            return  # the common case, without taking the write lock

        def step() -> None:
            self.backend.lock_schema(self.con)
            version = self.backend.stored_version(self.con)
            self._check_version(version, writing=True)
            if version == SCHEMA_VERSION:
                return  # another process got there first
            for k in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[k]:
                    self.execute(statement.format(**self.backend.types))
            for v in range(1, SCHEMA_VERSION + 1):
                self.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, ?) "
                             "ON CONFLICT (version) DO NOTHING", (v, utc_iso()))
            self.backend.set_version(self.con, SCHEMA_VERSION)
            log.info("event log %s: schema %d -> %d", self.label, version, SCHEMA_VERSION)

        self.transact(step, doing="creating the event log's tables", timeout_s=timeout_s)

    def _survey(self) -> int:
        """The stored version, checked (not ours, newer), read in one snapshot: another process may be
        creating the schema at this very moment."""
        self.backend.begin_read(self.con)
        try:
            version = self.backend.stored_version(self.con)
            self._check_version(version, writing=True)
        finally:
            self._rollback()
        return version

    def _retrying(self, fn: Callable[[], T], doing: str, timeout_s: float) -> T:
        """``fn()`` outside a write transaction (a check, WAL mode: SQLite switches it alone with the
        file), tried again while the store is locked."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return fn()
            except EventLogError:
                raise
            except self.backend.driver_errors() as exc:
                if not self.backend.is_locked(exc) or time.monotonic() > deadline:
                    raise self.backend.explain(exc, doing) from exc
                time.sleep(0.05)

    def _check_version(self, version: int, *, writing: bool) -> None:
        if version == 0 and self.backend.other_tables(self.con):
            raise EventLogError(f"{self.label}: not a maskwatch event log (it holds other tables); choose another "
                                "--db (it is left as it is).")
        if version == 0 and not writing:
            raise EventLogError(f"{self.label}: not a maskwatch event log (no schema); pass one written with --db.")
        if version > SCHEMA_VERSION:
            raise EventLogError(f"{self.label}: written by a newer maskwatch (schema {version}, this one knows "
                                f"{SCHEMA_VERSION}); upgrade maskwatch.")

    def close(self) -> None:
        try:
            self.con.close()
        except Exception:  # noqa: BLE001 - closing a broken connection
            pass


def connect(target: str | Path, *, create: bool = True, lock_timeout_s: float = LOCK_TIMEOUT_S) -> Store:
    """Open an event store for writing: an SQLite path or a ``postgresql://`` URL; the schema is
    created or migrated (``create=False``: open for reading only, see :func:`open_reader`)."""
    if not create:
        return open_reader(target)
    store = Store(target, readonly=False)
    try:
        store.migrate(lock_timeout_s)
    except BaseException:
        store.close()
        raise
    return store


def open_reader(target: str | Path) -> Store:
    """Open an event store read-only (an SQLite file the user may read but not write works too)."""
    store = Store(target, readonly=True, busy_timeout_s=LOCK_TIMEOUT_S)
    try:
        store._check_version(store.version(), writing=False)
    except BaseException:
        store.close()
        raise
    return store


def prune(store: Store, retention_days: float) -> int:
    """Delete events, tracks, sources and runs older than ``retention_days``; returns events deleted."""
    days = check_retention_days(retention_days)
    cutoff = utc_iso(datetime.now(timezone.utc) - timedelta(days=days))

    def step() -> int:
        n = store.execute("DELETE FROM events WHERE at < ?", (cutoff,)).rowcount
        store.execute("DELETE FROM tracks WHERE last_at < ?", (cutoff,))
        store.execute("DELETE FROM runs WHERE ended_at IS NOT NULL AND ended_at < ?", (cutoff,))
        return n

    return store.transact(step, doing="deleting old events (--retention-days)")


class EventLog:
    """Sink that records runs, sources, face tracks and their events (see the module doc).

    Args:
        path: an SQLite file (created, or migrated, when needed) or a ``postgresql://`` URL.
        command: what was run (stored with the run).
        retention_days: on opening, delete what is older than this many days (``None``: keep all).
        max_queue: items waiting for the writer thread at most; beyond, new events are counted as
            dropped (the frame loop is never held up by a slow disk).
        lock_timeout_s: how long a write waits while another program holds the store locked; then
            the next :meth:`write` (or :meth:`close`) raises :class:`EventLogError`.

    :meth:`write` is thread-safe (one thread per camera may share one log). A failed store makes
    the next ``write`` raise, which ends a run with one clear message. A stop signal (SIGTERM,
    Ctrl-C) while the log waits for a lock ends the wait at once.
    """

    def __init__(self, path: str | Path, command: str = "", retention_days: float | None = None,
                 max_queue: int = 100_000, lock_timeout_s: float = LOCK_TIMEOUT_S) -> None:
        from maskwatch._version import __version__

        retention_days = check_retention_days(retention_days)
        self.path = path if is_url(path) else Path(path)
        self.label = describe(path)
        self.lock_timeout_s = lock_timeout_s
        store = connect(path, lock_timeout_s=lock_timeout_s)  # errors here, in the caller's thread
        try:
            if retention_days is not None:
                n = prune(store, retention_days)
                if n:
                    log.info("event log: %d events older than %g days deleted", n, retention_days)
            row = (utc_iso(), command, socket.gethostname(), os.getpid(), __version__)
            self.run_id = store.transact(
                lambda: store.insert("INSERT INTO runs (started_at, command, host, pid, version) "
                                     "VALUES (?, ?, ?, ?, ?)", row),
                doing="recording the run", timeout_s=lock_timeout_s)
        except BaseException:
            store.close()
            raise
        self._store: Store | None = store
        self._q: queue.Queue = queue.Queue(maxsize=max_queue)
        self._lock = threading.Lock()
        self._sources: dict[str, int] = {}  # source name -> key (the writer maps keys to row ids)
        self._next_key = 0
        self.frames = 0
        self.events_written = 0
        self.dropped = 0
        self.lost = 0  # queued but not written because the store failed
        self.status = "finished"
        self._error: EventLogError | None = None
        self._reported = False
        self._closed = False
        self._signal: int | None = None
        self._abort = threading.Event()  # stop waiting for locks (a stop signal arrived)
        self._thread = threading.Thread(target=self._work, name="maskwatch-event-log", daemon=True)
        self._thread.start()

    # -- the frame loop's side: never blocks
    def _put(self, item: tuple) -> None:
        try:
            self._q.put_nowait(item)
        except queue.Full:
            self.dropped += 1

    def write(self, result) -> None:
        """Queue what ``result`` recorded (thread-safe, never waits); raises once the store has failed."""
        if self._error is not None:
            self._reported = True
            raise self._error
        with self._lock:
            self.frames += 1
            if not result.events and result.source in self._sources:
                return
            key = self._sources.get(result.source)
            if key is None:
                key = self._sources[result.source] = self._next_key
                self._next_key += 1
                self._put(("source", key, result.source, result.source_info, utc_iso()))
            for ev in result.events:
                self._put(("event", key, ev))

    def finish(self, summary) -> None:
        """Called by the run loop before :meth:`close`: how the run ended."""
        if summary.signal_name:
            self.status = f"stopped by {summary.signal_name}"
            self._signal = summary.signal
            self._abort.set()  # write what is left if the store is free, but do not wait for a lock
        elif summary.stopped_by_sink:
            self.status = "stopped"

    def failed(self, error: BaseException) -> None:
        """Called by the run loop instead of :meth:`finish` when the run ended with ``error``."""
        if error is not self._error:
            self.status = f"failed: {type(error).__name__}"

    def close(self) -> None:
        """Write what is queued and the run's end, then close. Raises :class:`EventLogError` when the
        store failed (unless :meth:`write` already did), :class:`EventLogInterrupted` when a stop
        signal cut the wait for a locked store short."""
        if self._closed:
            return
        self._closed = True
        restore = self._catch_stop_signals()
        try:
            while self._thread.is_alive():
                try:
                    self._q.put(_STOP, timeout=0.1)
                    break
                except queue.Full:
                    continue
            aborted_at = None
            while self._thread.is_alive():
                self._thread.join(0.1)
                if self._abort.is_set():  # a stop signal: the writer gets a few seconds, no more
                    aborted_at = aborted_at or time.monotonic()
                    if time.monotonic() - aborted_at > _SIGNAL_GRACE_S and self._thread.is_alive():
                        self.lost = self._q.qsize()
                        self._error = self._error or EventLogError(
                            f"{self.label}: the last writes did not finish within {_SIGNAL_GRACE_S:g} s")
                        break
        finally:
            restore()
        if self._store is not None and not self._thread.is_alive():
            self._store.close()
            self._store = None
        if self.dropped:
            log.warning("event log: %d events dropped (the store could not keep up)", self.dropped)
        if self._error is None:
            return
        if self._signal is not None:
            name = signal.Signals(self._signal).name
            err = EventLogInterrupted(f"stopped by {name} while the event log {self.label} could not be written "
                                      f"({self._error}); {self.lost} item(s) were not recorded")
            err.exit_code = 128 + self._signal
            raise err from self._error
        if not self._reported:
            self._reported = True
            raise self._error

    def _catch_stop_signals(self) -> Callable[[], None]:
        """While closing (main thread only): a stop signal ends any wait for a lock, then goes on to
        the handler that was there (the run loop's, which records it)."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        old: dict[int, Any] = {}

        def handler(signum, frame) -> None:
            self._signal = self._signal or signum
            self._abort.set()
            previous = old.get(signum)
            if callable(previous):
                previous(signum, frame)
            elif previous == signal.SIG_DFL:
                signal.signal(signum, signal.SIG_DFL)
                signal.raise_signal(signum)

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                previous = signal.getsignal(sig)
                if previous in (signal.SIG_IGN, None):
                    continue
                old[sig] = previous
                signal.signal(sig, handler)
            except (ValueError, OSError):
                pass

        def restore() -> None:
            for sig, previous in old.items():
                try:
                    signal.signal(sig, previous)
                except (ValueError, OSError):
                    pass

        return restore

    # -- the writer thread
    def _take(self) -> tuple[list, bool]:
        batch = [self._q.get()]
        deadline = time.monotonic() + 0.2
        while len(batch) < 2000 and batch[-1] is not _STOP:
            try:
                batch.append(self._q.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        stop = batch[-1] is _STOP
        return ([b for b in batch if b is not _STOP], stop)

    def _work(self) -> None:
        store = self._store
        rows: dict[int, int] = {}
        batch: list = []
        try:
            while True:
                batch, stop = self._take()
                written = store.transact(lambda b=batch, s=stop: self._write_batch(store, rows, b, s),
                                         doing="writing the event log", timeout_s=self.lock_timeout_s,
                                         abort=self._abort)
                self.events_written += written
                if stop:
                    return
        except BaseException as exc:  # noqa: BLE001 - reported by write() or close()
            self.lost = len(batch) + self._q.qsize()
            self._error = exc if isinstance(exc, EventLogError) else EventLogError(
                f"{self.label}: writing the event log failed ({exc})")
            log.debug("event log writer stopped: %s", exc)

    def _write_batch(self, store: Store, rows: dict[int, int], batch: list, stop: bool) -> int:
        written = 0
        for item in batch:
            written += self._write_item(store, rows, item)
        if stop:
            store.execute("UPDATE runs SET ended_at = ?, status = ?, frames = ? WHERE id = ?",
                          (utc_iso(), self.status, self.frames, self.run_id))
        return written

    def _write_item(self, store: Store, rows: dict[int, int], item: tuple) -> int:
        if item[0] == "source":
            _, key, name, info, at = item
            rows[key] = store.insert(
                "INSERT INTO sources (run_id, path, kind, width, height, fps, frame_count, vid_stride, started_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (self.run_id, name, info.kind if info else "unknown", info.width if info else None,
                 info.height if info else None, info.fps if info else None, info.frame_count if info else None,
                 info.vid_stride if info else None, at))
            return 0
        _, key, ev = item
        sid = rows.get(key)
        if sid is None:  # its source was dropped with a full queue
            with self._lock:
                self.dropped += 1
            return 0
        at = utc_iso(ev.at)
        store.execute(
            "INSERT INTO events (source_id, kind, at, time_s, frame, track_id, label, previous, box, probs) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (sid, ev.kind, at, ev.time_s, ev.frame, ev.track_id, ev.label, ev.previous,
             None if ev.box is None else json.dumps([int(v) for v in ev.box]),
             None if ev.probs is None else json.dumps({k: round(float(v), 4) for k, v in ev.probs.items()})))
        if ev.kind == "track_started":
            store.execute("INSERT INTO tracks (source_id, track_id, first_at, first_s, label) VALUES (?, ?, ?, ?, ?) "
                          "ON CONFLICT (source_id, track_id) DO NOTHING", (sid, ev.track_id, at, ev.time_s, ev.label))
        elif ev.kind == "unmasked_alert":
            store.execute("UPDATE tracks SET alerted = 1 WHERE source_id = ? AND track_id = ?", (sid, ev.track_id))
        elif ev.kind == "track_ended" and ev.track is not None:
            t = ev.track
            store.execute(
                "INSERT INTO tracks (source_id, track_id, first_at, last_at, first_s, last_s, frames, label, "
                "labels_seen, unmasked_s, changes, alerted) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (source_id, track_id) DO UPDATE SET last_at = excluded.last_at, "
                "first_s = excluded.first_s, last_s = excluded.last_s, frames = excluded.frames, "
                "label = excluded.label, labels_seen = excluded.labels_seen, unmasked_s = excluded.unmasked_s, "
                "changes = excluded.changes, alerted = excluded.alerted",
                (sid, ev.track_id, at, at, t["first_s"], t["last_s"], t["frames"], t["label"],
                 json.dumps(t["labels_seen"]), t["unmasked_s"], json.dumps(t["changes"]), int(t["alerted"])))
        return 1


# ------------------------------------------------------------------------------------------ reading

EVENT_COLUMNS = ("at", "source", "kind", "time_s", "frame", "track_id", "label", "previous", "box", "probs")
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, now: datetime | None = None) -> str:
    """``--since``: an ISO date/time (UTC unless it says otherwise) or an age such as ``30m``, ``2h``, ``7d``."""
    now = now or datetime.now(timezone.utc)
    t = text.strip()
    try:
        if t and t[-1] in _AGE_UNITS and t[:-1].replace(".", "", 1).isdigit():
            return utc_iso(now - timedelta(seconds=float(t[:-1]) * _AGE_UNITS[t[-1]]))
    except (OverflowError, ValueError):
        raise InputError(f"--since {text!r}: an age too far back for the calendar; give at most 100 years "
                         "(36500d), or an ISO time such as 2026-05-01.") from None
    try:
        dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"--since {text!r}: expected an ISO time (2026-05-01, 2026-05-01T08:00) or an age "
                         "(30m, 2h, 7d).") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    try:
        return utc_iso(dt)
    except (OverflowError, ValueError):
        raise InputError(f"--since {text!r}: this time is outside the years 1-9999 in UTC; give an ISO time "
                         "such as 2026-05-01T08:00.") from None


def query_events(path: str | Path, since: str | None = None, source: str | None = None,
                 kind: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """Recorded events, oldest first (the store is opened read-only). ``since``: see
    :func:`parse_since`; ``source``: a path or a substring of one; ``kind``: one of the event kinds;
    ``limit``: the NEWEST ``limit`` events (still listed oldest first)."""
    cutoff = parse_since(since) if since else None
    if limit is not None and not (1 <= int(limit) <= 2 ** 63 - 1):
        raise InputError(f"--limit {limit}: expected a whole number from 1 to {2 ** 63 - 1}.")
    store = open_reader(path)
    try:
        sql = ("SELECT e.at, s.path, e.kind, e.time_s, e.frame, e.track_id, e.label, e.previous, e.box, e.probs "
               "FROM events e JOIN sources s ON s.id = e.source_id WHERE 1 = 1")
        args: list[Any] = []
        if cutoff:
            sql += " AND e.at >= ?"
            args.append(cutoff)
        if source:
            sql += " AND (s.path = ? OR " + store.backend.contains.format(col="s.path") + ")"
            args += [source, source]
        if kind:
            sql += " AND e.kind = ?"
            args.append(kind)
        if limit:
            sql += " ORDER BY e.at DESC, e.id DESC LIMIT ?"
            args.append(int(limit))
        else:
            sql += " ORDER BY e.at, e.id"
        rows = store.guarded(lambda: store.execute(sql, args).fetchall(), "reading the event log")
    finally:
        store.close()
    if limit:
        rows = rows[::-1]
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
