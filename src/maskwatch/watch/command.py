"""``maskwatch watch SITE.toml``: run a site until SIGTERM / Ctrl-C, optionally serving the dashboard."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from maskwatch.errors import InputError
from maskwatch.watch.config import load_site

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger(__name__)


def run_watch(site_path: str | Path, *, serve: bool = False, host: str = "127.0.0.1", port: int = 8000,
              db: str | Path | None = None, log_json: bool = False, duration_s: float | None = None,
              engine=None, app_factory: Callable[[object], FastAPI] | None = None) -> int:
    """Watch every camera of the site file until a stop signal (or ``duration_s``); returns 0.

    With ``serve``, the dashboard (``/watch``), ``/metrics``, ``/healthz`` and ``/readyz`` are
    served on ``host:port``, mounted on ``app_factory(engine)`` (the launcher passes the server's
    app, with its photo page and API; default: a bare FastAPI app).
    """
    from maskwatch.watch.monitor import Monitor

    if log_json:
        from maskwatch.watch.logs import use_json_logs

        use_json_logs()
    site = load_site(site_path)
    if db is not None:  # an SQLite file or a postgresql:// URL; another scheme fails here, in one line
        from maskwatch.events.backends import backend_for

        backend_for(str(db))
    if serve:
        _check_port(host, port)
    monitor = Monitor(site, engine=engine, db=None if db is None else str(db), command=f"watch {site_path}")
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum, frame) -> None:  # noqa: ARG001
        received.append(signum)
        stop.set()

    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            old[sig] = signal.signal(sig, on_signal)
    try:
        monitor.start()
        log.warning("watching %s of %s%s", _count(len(monitor.cameras), "camera"), site.name,
                    f"; dashboard on http://{host}:{port}/watch" if serve else "")
        if serve:
            _serve(monitor, host, port, stop, duration_s, app_factory, log_json)
        else:
            stop.wait(duration_s)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        monitor.close(received[0] if received else None)
        for cam in monitor.snapshot()["cameras"]:  # the closing lines: what each camera did
            log.warning("%s: %s analysed, %d dropped, %s, %s%s", cam["name"], _count(cam["frames"], "frame"),
                        cam["dropped"], _count(cam["reconnects"], "reconnect"), _count(cam["alerts"], "alert"),
                        f" ({cam['status']}: {cam['error']})" if cam["error"] else "")
    if received:
        log.warning("stopped by %s", signal.Signals(received[0]).name)
    return 0


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _check_port(host: str, port: int) -> None:
    import socket

    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            raise InputError(f"--port {port}: cannot listen on {host}:{port} ({exc.strerror}); choose another port.") \
                from exc


def _serve(monitor, host: str, port: int, stop: threading.Event, duration_s: float | None, app_factory,
           log_json: bool = False) -> None:
    import uvicorn

    from maskwatch.watch.web import mount

    if app_factory is None:
        from fastapi import FastAPI

        app = FastAPI(title="maskwatch watch")
    else:
        app = app_factory(monitor.engine)
    mount(app, monitor)
    # With --log-json uvicorn keeps the JSON handlers set up above (its own config would replace them).
    extra = {"log_config": None} if log_json else {}
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on", **extra)
    # uvicorn takes SIGINT/SIGTERM while serving, shuts down, then restores our handlers and raises the
    # signal again: ours then set `stop`, and the monitor closes after the server.
    server = uvicorn.Server(config)

    def watch_stop() -> None:
        stop.wait(duration_s)
        server.should_exit = True

    threading.Thread(target=watch_stop, name="maskwatch-watch-stop", daemon=True).start()
    server.run()
