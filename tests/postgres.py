"""A real PostgreSQL server for tests: Debian's initdb and pg_ctl in a temporary folder, on a free
port on 127.0.0.1, stopped at the end of the session.

Use the ``postgres_url`` fixture (a fresh, empty database per test) or ``postgres_server`` (the
server's URL, for one session). Import them into a test module::

    from postgres import postgres_server, postgres_url  # noqa: F401 - pytest fixtures

Tests skip with the install command when PostgreSQL (``apt-get install -y postgresql``) or psycopg
(``pip install "maskwatch[pg]"``) is missing. PostgreSQL refuses to run as root: as root, the server
runs as the ``postgres`` user (``runuser``), which owns the temporary folder.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

INSTALL = "install PostgreSQL: apt-get install -y postgresql"


def find_pg_bin() -> Path | None:
    """The newest Debian PostgreSQL ``bin`` folder with initdb and pg_ctl (or those on PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: [int(x) if x.isdigit() else 0 for x in Path(p).parent.parent.name.split(".")])
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and shutil.which("pg_ctl") else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server():
    """``postgresql://maskwatch@127.0.0.1:PORT/postgres`` of a server started for this test session."""
    bindir = find_pg_bin()
    if bindir is None:
        pytest.skip(INSTALL)
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip('install psycopg 3: pip install "maskwatch[pg]"')
    root = Path(tempfile.mkdtemp(prefix="maskwatch-pg-"))
    as_user: list[str] = []
    if os.getuid() == 0:
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root, ignore_errors=True)
            pytest.skip(f"running as root needs the postgres user to start PostgreSQL; {INSTALL}")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, logfile = root / "data", root / "server.log"
    port = _free_port()

    def run(*args: str) -> None:
        proc = subprocess.run([*as_user, *args], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            log_text = logfile.read_text(errors="replace")[-2000:] if logfile.exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed: {proc.stderr[-2000:]} {log_text}")

    run(str(bindir / "initdb"), "-D", str(data), "-U", "maskwatch", "--auth=trust", "-E", "UTF8", "--no-sync")
    run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(logfile), "-w", "-t", "60", "-o",
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off", "start")
    try:
        yield f"postgresql://maskwatch@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture()
def postgres_url(postgres_server):
    """A new, empty database on the session's server (dropped after the test)."""
    import psycopg

    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(postgres_server, autocommit=True) as con:
        con.execute(f"CREATE DATABASE {name}")
    yield postgres_server.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(postgres_server, autocommit=True) as con:
        con.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
