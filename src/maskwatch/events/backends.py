"""The two event stores' dialects: SQLite (a file) and PostgreSQL (a ``postgresql://`` URL).

Everything else (schema, queries, the writer thread, retention) is shared and lives in
:mod:`maskwatch.events.store`; a backend only knows how to connect, how its SQL differs (column
types, placeholders, how a new row's id comes back, substring search), which driver errors mean
"locked, try again", and how to turn the others into one clear message.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from maskwatch.errors import InputError

#: URL schemes that name a PostgreSQL server.
POSTGRES_SCHEMES = ("postgresql", "postgres")
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(//)?")
_KNOWN_SCHEMES = {"sqlite", "mysql", "mariadb", "mssql", "oracle", "redis", "mongodb", "http", "https", "file", "s3",
                  "gs", "ftp", *POSTGRES_SCHEMES}


class EventLogError(InputError):
    """The event log cannot be opened, read or written (locked, damaged, unwritable, unreachable)."""


def is_url(target: str | Path) -> bool:
    """True when ``target`` is a URL (``scheme://...``, or a known scheme such as ``postgresql:``), not a path."""
    if isinstance(target, Path):
        return False
    m = _URL.match(str(target))
    if not m:
        return False
    scheme = m.group(1).lower()
    return bool(m.group(2)) and len(scheme) > 1 or scheme in _KNOWN_SCHEMES


def redact(url: str) -> str:
    """A URL without its password, for messages and the log."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = (parts.username or "") + ":***"
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc[-1]}"))


class Backend:
    """One store's dialect. Subclasses: :class:`SQLiteBackend`, :class:`PostgresBackend`."""

    name = "?"
    #: DDL type names, filled into the shared schema (``{id}``, ``{key}``, ``{real}``).
    types: dict[str, str] = {}
    #: SQL for "column contains the parameter" (substring search).
    contains = ""

    def __init__(self, target: str) -> None:
        self.target = target
        self.label = target  # how messages name the store (no password)

    def connect(self, *, readonly: bool, busy_timeout_s: float):
        raise NotImplementedError

    def sql(self, text: str) -> str:
        """Shared SQL (``?`` placeholders) in this driver's placeholder style."""
        return text

    def insert_id(self, con, sql: str, args: tuple) -> int:
        raise NotImplementedError

    def begin_write(self, con) -> None:
        raise NotImplementedError

    def batching(self, con):
        """A context in which a transaction's statements go to the store together (PostgreSQL's
        pipeline mode: no round trip per statement); a no-op for SQLite."""
        return contextlib.nullcontext()

    def begin_read(self, con) -> None:
        """Start a read transaction that sees one snapshot."""
        con.execute("BEGIN")

    def lock_schema(self, con) -> None:
        """Inside a write transaction: hold off other processes creating or migrating the schema."""

    def stored_version(self, con) -> int:
        raise NotImplementedError

    def set_version(self, con, version: int) -> None:
        """Besides the ``schema_version`` table (SQLite also keeps ``PRAGMA user_version``)."""

    def is_locked(self, exc: BaseException) -> bool:
        raise NotImplementedError

    def driver_errors(self) -> tuple[type[BaseException], ...]:
        raise NotImplementedError

    def explain(self, exc: BaseException, doing: str) -> EventLogError:
        """A driver error as one message a user can act on."""
        return EventLogError(f"{self.label}: {doing} failed ({_first_line(exc)}).")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class SQLiteBackend(Backend):
    """An SQLite file (WAL mode, so that readers never block the writer)."""

    name = "sqlite"
    types = {"id": "INTEGER PRIMARY KEY", "key": "INTEGER", "real": "REAL"}
    contains = "instr({col}, ?) > 0"

    def __init__(self, target: str | Path) -> None:
        super().__init__(str(target))
        self.path = Path(target).expanduser()
        self.label = str(target)
        if self.path.is_dir():
            raise EventLogError(f"{self.path}: is a folder; --db wants a file (e.g. {self.path / 'events.db'}).")
        if self.path.exists() and not self.path.is_file():
            raise EventLogError(f"{self.path}: not a regular file (a device or pipe); --db wants an SQLite file, "
                                "e.g. events.db.")

    def connect(self, *, readonly: bool, busy_timeout_s: float) -> sqlite3.Connection:
        path = self.path
        if readonly and not path.exists():
            raise EventLogError(f"{path}: no such event log; pass the file a detect run wrote with --db.")
        if not readonly:
            try:
                if not path.parent.exists():
                    path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise EventLogError(f"{path}: cannot create the event log's folder ({exc.strerror}); choose a "
                                    "writable place.") from exc
        try:
            if readonly:
                con = self._connect_readonly(busy_timeout_s)
            else:
                con = sqlite3.connect(str(path), timeout=busy_timeout_s, isolation_level=None,
                                      check_same_thread=False)
            con.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise self.explain(exc, "opening the event log") from exc
        return con

    def _connect_readonly(self, busy_timeout_s: float) -> sqlite3.Connection:
        uri = "file:" + quote(str(self.path.resolve())) + "?mode=ro"
        con = sqlite3.connect(uri, uri=True, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
        try:
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return con
        except sqlite3.OperationalError as exc:
            con.close()
            if "unable to open" not in str(exc) and "readonly" not in str(exc):
                raise
        # A WAL file whose -shm this user may not create (a folder they cannot write): read the file as
        # it is on disk. What a running writer has not checkpointed yet is not seen.
        con = sqlite3.connect(uri.replace("mode=ro", "immutable=1"), uri=True, isolation_level=None,
                              check_same_thread=False)
        con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return con

    def prepare(self, con: sqlite3.Connection) -> None:
        """Writers only: WAL mode (readers never block the writer), safe and fast syncing."""
        if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            con.execute("PRAGMA journal_mode = WAL")
        con.execute("PRAGMA synchronous = NORMAL")

    def insert_id(self, con, sql: str, args: tuple) -> int:
        return con.execute(sql, args).lastrowid

    def begin_write(self, con) -> None:
        con.execute("BEGIN IMMEDIATE")

    def stored_version(self, con) -> int:
        if con.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
                       ).fetchone()[0]:
            return int(con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0])
        return int(con.execute("PRAGMA user_version").fetchone()[0])

    def other_tables(self, con) -> int:
        return con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]

    def set_version(self, con, version: int) -> None:
        con.execute(f"PRAGMA user_version = {int(version)}")  # older maskwatch versions read this

    def is_locked(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))

    def driver_errors(self) -> tuple[type[BaseException], ...]:
        return (sqlite3.Error,)

    def explain(self, exc: BaseException, doing: str) -> EventLogError:
        text = str(exc)
        low = text.lower()
        if "not a database" in low:
            return EventLogError(f"{self.label}: not an SQLite event log ({_first_line(exc)}); pass a file written "
                                 "by --db, or a new path.")
        if "readonly" in low or "read-only" in low:
            hint = "the file or its folder is read-only; choose a writable place, or read it with maskwatch events"
        elif "malformed" in low:
            hint = "the file is damaged; restore a copy or start a new file"
        elif "no such table" in low or "no such column" in low or "has no column" in low:
            hint = "its tables were changed by another program; start a new file"
        elif "disk" in low or "full" in low or "i/o" in low:
            hint = "the disk is full or failing; free space or choose another place"
        elif "unable to open" in low:
            hint = "check that the file and its folder exist and may be read (and written, for --db of detect)"
        elif "locked" in low or "busy" in low:
            hint = "another program holds it; try again when it is done"
        else:
            hint = "pass a file written by --db, or a new path"
        return EventLogError(f"{self.label}: {doing} failed ({_first_line(exc)}); {hint}.")


class PostgresBackend(Backend):
    """A PostgreSQL database (``postgresql://user[:password]@host[:port]/db``), through psycopg 3."""

    name = "postgresql"
    types = {"id": "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", "key": "BIGINT",
             "real": "DOUBLE PRECISION"}
    contains = "strpos({col}, ?) > 0"
    #: the advisory lock that serialises schema creation across processes and machines.
    SCHEMA_LOCK = 0x6D61736B  # "mask"

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.label = redact(target)
        try:
            parts = urlsplit(target)
            port = parts.port
        except ValueError as exc:
            raise EventLogError(f"--db {self.label}: not a valid PostgreSQL URL ({exc}); expected "
                                "postgresql://user@host:5432/dbname.") from exc
        if not parts.hostname and not parts.path.strip("/"):
            raise EventLogError(f"--db {self.label}: no host or database; expected postgresql://user@host:5432/dbname.")
        self.port = port

    def _driver(self):
        try:
            import psycopg
        except ImportError as exc:
            raise EventLogError(f"--db {self.label}: PostgreSQL needs psycopg 3: pip install \"maskwatch[pg]\" "
                                f"({exc.name} missing).") from exc
        return psycopg

    def connect(self, *, readonly: bool, busy_timeout_s: float):
        psycopg = self._driver()
        try:
            con = psycopg.connect(self.target, autocommit=True, connect_timeout=10, application_name="maskwatch",
                                  keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=3)
        except psycopg.Error as exc:
            raise EventLogError(f"{self.label}: cannot connect to PostgreSQL ({_first_line(exc)}); check the host, "
                                "port, user and database in the URL, and that the server is running.") from exc
        try:
            con.execute(f"SET lock_timeout = {max(1, int(busy_timeout_s * 1000))}")
            con.execute("SET statement_timeout = 60000")  # no statement of ours takes a minute
            con.execute("SET TIME ZONE 'UTC'")
            if readonly:
                con.execute("SET default_transaction_read_only = on")
        except psycopg.Error as exc:
            con.close()
            raise self.explain(exc, "opening the event log") from exc
        return con

    def prepare(self, con) -> None:
        pass

    def sql(self, text: str) -> str:
        return text.replace("?", "%s")

    def insert_id(self, con, sql: str, args: tuple) -> int:
        return con.execute(sql + " RETURNING id", args).fetchone()[0]

    def begin_write(self, con) -> None:
        con.execute("BEGIN")

    def batching(self, con):
        return con.pipeline()

    def begin_read(self, con) -> None:
        # The catalog is not read from a transaction's snapshot: wait until no one is creating the schema.
        con.execute("BEGIN")
        con.execute(f"SELECT pg_advisory_xact_lock_shared({self.SCHEMA_LOCK})")

    def lock_schema(self, con) -> None:
        con.execute(f"SELECT pg_advisory_xact_lock({self.SCHEMA_LOCK})")

    def stored_version(self, con) -> int:
        # information_schema, not to_regclass(): the name cache is not refreshed by an advisory lock,
        # and another process may have just created the table.
        if not con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema() "
                           "AND table_name = 'schema_version'").fetchone()[0]:
            return 0
        return int(con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0])

    def other_tables(self, con) -> int:
        return con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema() "
                           "AND table_name IN ('runs', 'sources', 'tracks', 'events')").fetchone()[0]

    def is_locked(self, exc: BaseException) -> bool:
        import psycopg

        return isinstance(exc, (psycopg.errors.LockNotAvailable, psycopg.errors.SerializationFailure,
                                psycopg.errors.DeadlockDetected))

    def driver_errors(self) -> tuple[type[BaseException], ...]:
        import psycopg

        return (psycopg.Error,)

    def explain(self, exc: BaseException, doing: str) -> EventLogError:
        import psycopg

        low = str(exc).lower()
        if isinstance(exc, (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn)):
            hint = "its tables were changed by another program; use a new database"
        elif isinstance(exc, psycopg.errors.InsufficientPrivilege) or "read-only" in low:
            hint = "this user may not write there; grant it or use another database"
        elif isinstance(exc, psycopg.OperationalError):
            hint = "the connection to the server was lost; check that it is running"
        else:
            hint = "check the database named in the URL"
        return EventLogError(f"{self.label}: {doing} failed ({_first_line(exc)}); {hint}.")


def backend_for(target: str | Path) -> Backend:
    """The backend for ``--db TARGET``: a file path (SQLite) or a ``postgresql://`` URL.

    Raises :class:`EventLogError` for other URL schemes (``mysql://``, ``sqlite://``, ``http://``, ...).
    """
    if isinstance(target, Path) or not is_url(target):
        text = str(target)
        if not text.strip():
            raise EventLogError("--db '': expected an SQLite file path (events.db) or a postgresql:// URL.")
        return SQLiteBackend(target)
    scheme = _URL.match(str(target)).group(1).lower()
    if scheme in POSTGRES_SCHEMES:
        if not str(target).lower().startswith(f"{scheme}://"):
            raise EventLogError(f"--db {redact(str(target))}: expected postgresql://user@host:5432/dbname.")
        return PostgresBackend(str(target))
    raise EventLogError(f"--db {redact(str(target))}: the {scheme}: scheme is not supported; give an SQLite file "
                        "path (events.db) or a postgresql://user@host:5432/dbname URL.")


def describe(target: str | Path) -> str:
    """How to name ``target`` in messages (a URL without its password)."""
    return redact(str(target)) if is_url(target) else str(target)

