"""``maskwatch serve``: the web page and HTTP API.

Importing this package is cheap and needs no web framework; :func:`serve` and
:func:`create_app` import FastAPI / uvicorn (the ``serve`` extra) when called.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from maskwatch.errors import DependencyError, InputError

if TYPE_CHECKING:  # pragma: no cover
    from fastapi import FastAPI

    from maskwatch.faces.detector import DetectorSettings
    from maskwatch.server.settings import ServerSettings

log = logging.getLogger(__name__)

_EXTRA_HINT = "the web server needs the 'serve' extra: pip install 'maskwatch[serve]'"


def is_loopback(host: str) -> bool:
    """True when ``host`` is only reachable from this machine (``127.0.0.1``, ``::1``, ``localhost``)."""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def server_url(host: str, port: int) -> str:
    """The URL to open in a browser for a server bound to ``host:port``."""
    name = host.strip("[]")
    if name in ("0.0.0.0", ""):
        name = "127.0.0.1"
    elif name == "::":
        name = "::1"
    if ":" in name:
        name = f"[{name}]"
    return f"http://{name}:{port}/"


def _bind(host: str, port: int) -> socket.socket:
    """Open the listening socket now, so a busy port is a clear error before anything starts."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise InputError(f"cannot listen on {host!r}: unknown host name ({exc.strerror}).") from exc
    family, socktype, proto, _, addr = infos[0]
    sock = socket.socket(family, socktype, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(addr)
        sock.listen(2048)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        raise InputError(
            f"cannot listen on {host}:{port} ({reason}); stop the program using that port or choose another "
            "one with --port."
        ) from exc
    return sock


#: The most header bytes uvicorn's HTTP parser (h11) buffers for one request. Past it, h11 answers
#: a bare "400 Invalid HTTP request"; under it, the app's guard answers an oversized header block
#: (more than 100 lines or 16 KiB) with a 431 and a JSON ``detail``.
MAX_HEADER_BUFFER = 512 * 1024


def uvicorn_options(settings: ServerSettings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.Config`` that ``maskwatch serve`` uses (the tests use them too)."""
    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "access_log": False,
        "server_header": False,
        "lifespan": "on",
        "h11_max_incomplete_event_size": MAX_HEADER_BUFFER,
    }


_state_lock = threading.Lock()


def lazy_state(app: Any, name: str, factory: Callable[[], Any]) -> Any:
    """``app.state.<name>``, made by ``factory()`` on first use (once, whatever the threads).

    Video jobs and live sessions start their threads, temporary folder or event log only when a
    server is first asked for them; the lifespan closes whatever was made.
    """
    value = getattr(app.state, name, None)
    if value is None:
        with _state_lock:
            value = getattr(app.state, name, None)
            if value is None:
                value = factory()
                setattr(app.state, name, value)
    return value


def _log_requests_to_stderr() -> None:
    """Requests go to stderr, one line each, whatever the log level (``MASKWATCH_ACCESS_LOG=0`` turns them off)."""
    import sys

    access = logging.getLogger("maskwatch.access")
    if not any(getattr(h, "_maskwatch_access", False) for h in access.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._maskwatch_access = True  # type: ignore[attr-defined]
        access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False


def create_app(settings: ServerSettings | None = None, engine: Any = None) -> FastAPI:
    """Build the FastAPI application (see :func:`maskwatch.server.app.create_app`)."""
    try:
        from maskwatch.server.app import create_app as _create_app
    except ImportError as exc:
        raise DependencyError(f"{_EXTRA_HINT} ({exc})") from exc
    return _create_app(settings, engine)


def serve(
    host: str | None = None,
    port: int | None = None,
    model: str | None = None,
    detector: str = "auto",
    detector_model: str | None = None,
    max_upload_mb: float | None = None,
    log_level: str | None = None,
    on_ready: Callable[[str], None] | None = None,
    detector_settings: DetectorSettings | None = None,
    mirror_photos: bool | None = None,
    db: str | None = None,
) -> None:
    """Load the model and face detector once, then serve the web page and API until interrupted.

    The arguments that are not ``None`` win over the ``MASKWATCH_*`` environment variables (the log
    level comes from ``MASKWATCH_LOG_LEVEL`` unless given; it sets maskwatch's and uvicorn's loggers,
    requests are logged one line each on ``maskwatch.access``); the other settings (pixel
    limit, workers, live detection size, ...) come from the environment (see
    :class:`~maskwatch.server.app.ServerSettings`). The model is loaded and the port bound before
    the server starts, so a bad model or a busy port raises a :class:`~maskwatch.errors.MaskwatchError`
    at once. ``on_ready(url)`` is called when the server is about to accept requests (the CLI
    prints the URL there); nothing is printed here.
    """
    try:
        import uvicorn

        from maskwatch.server.app import create_app as _create_app, load_engine
        from maskwatch.server.settings import ServerSettings
    except ImportError as exc:
        raise DependencyError(f"{_EXTRA_HINT} ({exc})") from exc

    settings = ServerSettings.from_env(
        host=host, port=port, model=model, detector=detector, detector_model=detector_model,
        max_upload_mb=max_upload_mb, log_level=log_level, detector_settings=detector_settings,
        mirror_photos=mirror_photos, db=db,
    )
    logging.getLogger("maskwatch").setLevel(settings.log_level.upper())
    if settings.access_log:
        _log_requests_to_stderr()
    if not is_loopback(settings.host):
        log.warning(
            "maskwatch serve is listening on %s, reachable from other machines: the API has no "
            "authentication, anyone who can reach this port can send images. Browsers allow the live "
            "camera only on http://localhost / 127.0.0.1 or over HTTPS. Use --host 127.0.0.1 to keep "
            "it local.", settings.host,
        )
    engine = load_engine(settings)
    sock = _bind(settings.host, settings.port)
    app = _create_app(settings, engine)
    config = uvicorn.Config(app, **uvicorn_options(settings))
    server = uvicorn.Server(config)
    url = server_url(settings.host, settings.port)
    log.info("maskwatch serving on %s", url)
    if on_ready is not None:
        on_ready(url)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


__all__ = ["create_app", "is_loopback", "serve", "server_url", "uvicorn_options"]
