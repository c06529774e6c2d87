"""The HTTP guard in front of every route: header limits, Host check, security headers, lingering drain.

:class:`RequestGuard` is a plain ASGI middleware (it sees every response, errors included):

* **Header limits**: a request with more than ``max_headers`` header lines or ``max_header_bytes``
  bytes of headers gets ``431`` before any route runs.
* **Host check** (DNS rebinding): when the server listens on loopback only, a request whose
  ``Host`` is not a loopback name (``localhost``, ``127.0.0.1``, ``[::1]``, ...) gets ``400``: a
  web page on another site cannot reach the API through a domain that resolves to 127.0.0.1.
* **Security headers** on every response: a ``Content-Security-Policy`` that lets the page load
  only from this server (and blocks framing), ``X-Content-Type-Options: nosniff``,
  ``X-Frame-Options: DENY`` and ``Referrer-Policy: no-referrer``.
* **Access log**: one line per request on the ``maskwatch.access`` logger (INFO), in the combined
  log format of Apache and nginx plus the time taken:
  ``127.0.0.1 - - [07/Dec/2026:22:13:28 +0000] "POST /v1/detect HTTP/1.1" 200 1234 "-" "curl/8.5" 0.212``.
* **Lingering drain**: when a response starts before the request body was read to its end (an
  upload refused at once for its ``Content-Length``, a full queue, an unknown route), the rest of
  the body is read and discarded first, up to ``drain_bytes`` or ``drain_seconds``, or until the
  client sends nothing for ``drain_idle_seconds`` (as nginx's lingering close does). Otherwise the
  server closes a connection with unread data in it, the kernel resets it, and clients that send the
  whole body before reading (Python's urllib and
  requests) see ``Connection reset by peer`` instead of the answer. A client that asked
  ``Expect: 100-continue`` and was never told to continue has sent no body: nothing is drained.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from datetime import datetime, timezone
from typing import Any

from maskwatch.server import is_loopback

log = logging.getLogger(__name__)
access_log = logging.getLogger("maskwatch.access")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The page and API load nothing from elsewhere: scripts, styles, images, fetches from this server
#: only (images also from blob:/data: URLs the page makes itself), no plugins, no framing.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "media-src 'self' blob: mediastream:; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
)


def host_name(host_header: str) -> str:
    """The name part of a ``Host`` header value (``[::1]:8000`` -> ``::1``, ``a.b:80`` -> ``a.b``)."""
    value = host_header.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[1:end] if end > 0 else value
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


class RequestGuard:
    """ASGI middleware; see the module docstring."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        loopback_only: bool,
        allowed_hosts: Iterable[str] = (),
        max_headers: int = 100,
        max_header_bytes: int = 16 * 1024,
        drain_bytes: int = 64 * 1024 * 1024,
        drain_seconds: float = 10.0,
        drain_idle_seconds: float = 1.0,
        access_log: bool = True,
    ) -> None:
        self.app = app
        self.loopback_only = loopback_only
        self.allowed_hosts = {h.lower() for h in allowed_hosts}
        self.max_headers = max_headers
        self.max_header_bytes = max_header_bytes
        self.drain_bytes = drain_bytes
        self.drain_seconds = drain_seconds
        self.drain_idle_seconds = drain_idle_seconds
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = {"body_done": False, "received": False, "drained": False}
        started = time.time()
        answer = {"status": 0, "bytes": 0}
        headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
        expects_continue = any(k == b"expect" and v.lower() == b"100-continue" for k, v in headers)
        declared_len = next((v for k, v in headers if k == b"content-length"), None)
        chunked = any(k == b"transfer-encoding" for k, _ in headers)
        # No Content-Length and no chunked encoding: an HTTP/1.1 request without a body.
        state["body_done"] = (declared_len is None and not chunked) or declared_len == b"0"

        async def guarded_receive() -> Message:
            state["received"] = True
            message = await receive()
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                state["body_done"] = True
            return message

        async def guarded_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                if not state["body_done"] and not (expects_continue and not state["received"]):
                    await self._drain(receive, state)
                out = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _SECURITY_NAMES]
                out.extend(SECURITY_HEADERS)
                if not state["body_done"] and (state["received"] or not expects_continue):
                    out.append((b"connection", b"close"))
                message = {**message, "headers": out}
                answer["status"] = message["status"]
            elif message["type"] == "http.response.body":
                answer["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            refusal = self._refusal(headers)
            if refusal is not None:
                status, detail = refusal
                await _send_json(guarded_send, status, detail)
                return
            await self.app(scope, guarded_receive, guarded_send)
        finally:
            if self.access_log and access_log.isEnabledFor(logging.INFO):
                access_log.info("%s", access_line(scope, headers, answer["status"], answer["bytes"], started))

    def _refusal(self, headers: list[tuple[bytes, bytes]]) -> tuple[int, str] | None:
        size = sum(len(k) + len(v) + 4 for k, v in headers)
        if len(headers) > self.max_headers or size > self.max_header_bytes:
            return 431, (
                f"the request has {len(headers)} header lines ({size:,} bytes); the limit is {self.max_headers} "
                f"lines and {self.max_header_bytes:,} bytes. Send fewer or smaller headers."
            )
        if self.loopback_only:
            host = next((v.decode("latin-1") for k, v in headers if k == b"host"), "")
            name = host_name(host)
            if not (is_loopback(name) or name in self.allowed_hosts):
                return 400, (
                    f"this server listens on loopback only and does not answer for host {host!r} (a guard "
                    "against DNS rebinding); open it as http://127.0.0.1:PORT or http://localhost:PORT."
                )
        return None

    async def _drain(self, receive: Receive, state: dict[str, bool]) -> None:
        """Read and discard the rest of the request body, within the byte and time bounds."""
        if state["drained"]:
            return
        state["drained"] = True
        discarded = 0
        deadline = time.monotonic() + self.drain_seconds
        try:
            while discarded <= self.drain_bytes:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                message = await asyncio.wait_for(receive(), min(left, self.drain_idle_seconds))
                if message["type"] == "http.disconnect":
                    state["body_done"] = True
                    break
                discarded += len(message.get("body", b""))
                if not message.get("more_body", False):
                    state["body_done"] = True
                    break
        except TimeoutError:
            pass
        if not state["body_done"]:
            log.info("closing a connection with %d bytes of its request body unread", discarded)


_SECURITY_NAMES = {k for k, _ in SECURITY_HEADERS}


def access_line(scope: Scope, headers: list[tuple[bytes, bytes]], status: int, size: int, started: float) -> str:
    """One request in the combined log format, plus the seconds it took (status 0: no answer was sent)."""
    client = scope.get("client")
    host = client[0] if client else "-"
    when = datetime.fromtimestamp(started, timezone.utc).strftime("%d/%b/%Y:%H:%M:%S +0000")
    path = scope.get("raw_path") or scope.get("path", "").encode()
    query = scope.get("query_string") or b""
    target = path.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
    request = f"{scope.get('method', '-')} {target} HTTP/{scope.get('http_version', '1.1')}"

    def header(name: bytes) -> str:
        value = next((v for k, v in headers if k == name), b"")
        return value.decode("latin-1").replace('"', "'")[:200] or "-"

    request = request.replace('"', "%22")
    return (f'{host} - - [{when}] "{request}" {status or "-"} {size or "-"} "{header(b"referer")}" '
            f'"{header(b"user-agent")}" {time.time() - started:.3f}')


async def _send_json(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    })
    await send({"type": "http.response.body", "body": body})


__all__ = ["CONTENT_SECURITY_POLICY", "RequestGuard", "SECURITY_HEADERS", "access_line", "host_name"]
