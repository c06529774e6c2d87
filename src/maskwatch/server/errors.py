"""One HTTP error type and the handlers that turn every error into a JSON ``{"detail": ...}`` answer.

Routes raise :class:`HTTPError` (status, a sentence for a person, optional headers); a
:class:`~maskwatch.errors.MaskwatchError` from the library becomes 413 (too many pixels), 422 (bad
input) or 500; FastAPI's own 404 / 405 / validation errors and anything unexpected get the same
shape. A client that went away gets one quiet log line, never a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from maskwatch.errors import ImageTooLargeError, InputError, MaskwatchError

log = logging.getLogger("maskwatch.server")


class HTTPError(Exception):
    """An answer other than success: the HTTP status, what went wrong and what to do, extra headers."""

    def __init__(self, status_code: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.headers = headers or {}

    @property
    def status(self) -> int:
        """The HTTP status (the same as :attr:`status_code`)."""
        return self.status_code


class ClientGone(Exception):
    """The client closed the connection (mid-upload, or while its request waited): nobody to answer."""


def status_for(exc: MaskwatchError) -> int:
    """The HTTP status of a library error: 413 over a pixel limit, 422 bad input, else 500."""
    if isinstance(exc, ImageTooLargeError):
        return 413
    if isinstance(exc, InputError):
        return 422
    return 500


def error_response(status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any):  # noqa: ANN201
    """The JSON answer every error gets."""
    from fastapi.responses import JSONResponse

    return JSONResponse({"detail": detail, **extra}, status_code=status, headers=headers or None)


def jsonable_errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Request validation errors with only JSON-safe values."""
    out = []
    for err in errors:
        item: dict[str, Any] = {"loc": [str(p) for p in err.get("loc", ())], "msg": str(err.get("msg", ""))}
        if "type" in err:
            item["type"] = str(err["type"])
        if isinstance(err.get("input"), (str, int, float, bool)):
            item["input"] = err["input"]
        out.append(item)
    return out


def install_error_handlers(app: Any) -> None:
    """Register the handlers on a FastAPI ``app``."""
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.requests import ClientDisconnect

    @app.exception_handler(HTTPError)
    async def _http_error(request: Request, exc: HTTPError):  # noqa: ANN202
        return error_response(exc.status_code, exc.detail, exc.headers)

    @app.exception_handler(ClientGone)
    @app.exception_handler(ClientDisconnect)
    async def _client_gone(request: Request, exc: Exception):  # noqa: ANN202
        # Nobody will read this answer: one quiet line, no traceback.
        log.info("%s %s: client went away (%s)", request.method, request.url.path, exc or "disconnected")
        return error_response(400, "the client disconnected before the request was complete.")

    @app.exception_handler(MaskwatchError)
    async def _maskwatch_error(request: Request, exc: MaskwatchError):  # noqa: ANN202
        status = status_for(exc)
        if status >= 500:
            log.error("%s: %s", type(exc).__name__, exc)
        return error_response(status, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):  # noqa: ANN202
        msgs = [f"{' '.join(str(p) for p in err.get('loc', ()))}: {err.get('msg', 'invalid')}" for err in exc.errors()]
        detail = "invalid request: " + "; ".join(msgs) + ". See /docs for the parameters."
        return error_response(422, detail, errors=jsonable_errors(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _starlette_error(request: Request, exc: StarletteHTTPException):  # noqa: ANN202
        detail = exc.detail
        if exc.status_code == 404:
            detail = f"no such page or endpoint: {request.url.path}. The API is documented at /docs."
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}. See /docs for the methods."
        return error_response(exc.status_code, str(detail), exc.headers)

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception):  # noqa: ANN202
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error_response(500, f"internal server error ({type(exc).__name__}); the server log has the details.")


__all__ = ["ClientGone", "HTTPError", "error_response", "install_error_handlers", "status_for"]
