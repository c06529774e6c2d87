"""Read uploaded images from an HTTP request: size and time limits, in-memory multipart, byte sniffing.

Nothing here touches the disk: Starlette's own form parser spools files over 1 MB to a temporary
file, so multipart bodies are parsed in memory with ``python-multipart``'s low-level parser instead.
The declared ``Content-Type`` of an upload is never trusted: :func:`sniff_format` looks at the bytes,
and only the formats maskwatch decodes (:data:`maskwatch.io.images.DECODED_FORMATS`) count as images.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from maskwatch.io.images import ACCEPTED_FORMATS_TEXT, sniff_image_format
from maskwatch.server.errors import ClientGone, HTTPError

#: Image formats recognised by their first bytes (the rest falls back to Pillow's own sniffing).
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)

ACCEPTED_FORMATS = ACCEPTED_FORMATS_TEXT


#: The one HTTP error type (kept under its old name here: upload problems are HTTP errors).
UploadError = HTTPError


@dataclass(frozen=True)
class Upload:
    """One uploaded file: its bytes, the file name the client gave (if any) and its declared type."""

    data: bytes
    filename: str | None = None
    declared_type: str | None = None
    field: str | None = None

    @property
    def label(self) -> str:
        """How to name this upload in messages."""
        return self.filename or self.field or "the upload"


def _mb(n: int | float) -> str:
    mb = n / (1 << 20)
    return f"{mb:.1f} MB" if mb >= 1 or mb == 0 else f"{mb:.2g} MB"


def too_large_detail(size: int | None, limit: int) -> str:
    got = f"{_mb(size)} " if size is not None else ""
    return (
        f"the upload {got}is over the limit of {_mb(limit)}; send a smaller image (shrink or re-encode it "
        "as JPEG), or start the server with a higher limit (MASKWATCH_MAX_UPLOAD_MB)."
    )


async def read_body(
    request: Request, limit: int, timeout_s: float | None = None, on_chunk: Callable[[int], None] | None = None
) -> bytes:
    """Read the whole request body into memory, refusing (413) anything over ``limit`` bytes.

    A declared ``Content-Length`` over the limit is refused before any byte is kept (the server's
    drain then reads and discards the rest, so the client sees the answer); a chunked body is counted
    as it arrives and refused as soon as it passes the limit. A body that takes longer than
    ``timeout_s`` seconds to arrive gets 408. A client that disconnects raises :class:`ClientGone`.
    ``on_chunk(n)`` is called with the size of every piece that arrives (it may raise to refuse).
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise UploadError(400, f"invalid Content-Length header {declared!r}; expected a byte count.") from None
        if size > limit:
            raise UploadError(413, too_large_detail(size, limit))
    buf = bytearray()

    async def receive_all() -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                raise ClientGone("the client disconnected during the upload")
            chunk = message.get("body", b"")
            if on_chunk is not None and chunk:
                on_chunk(len(chunk))
            buf.extend(chunk)
            if len(buf) > limit:
                raise UploadError(413, too_large_detail(None, limit))
            if not message.get("more_body", False):
                return

    try:
        if timeout_s is None:
            await receive_all()
        else:
            async with asyncio.timeout(timeout_s):
                await receive_all()
    except TimeoutError:
        raise UploadError(
            408, f"the upload did not arrive within {timeout_s:g} s ({_mb(len(buf))} received); check the "
            "connection and send it again.", headers={"Connection": "close"},
        ) from None
    return bytes(buf)


@dataclass
class _Part:
    headers: list[tuple[bytes, bytes]]
    chunks: list[bytes]
    name: str | None = None
    filename: str | None = None
    content_type: str | None = None


def _first_delimiter(body: bytes, boundary: bytes) -> int:
    """Where the first ``--boundary`` line starts, skipping a preamble (RFC 2046 5.1.1); -1 if none."""
    delim = b"--" + boundary
    if body.startswith(delim):
        return 0
    at = body.find(b"\r\n" + delim)
    if at < 0:
        at = body.find(b"\n" + delim)
        return at + 1 if at >= 0 else -1
    return at + 2


def parse_multipart(body: bytes, content_type: str, max_parts: int = 256) -> list[Upload]:
    """Split a ``multipart/form-data`` body into its parts, in memory (a preamble is skipped)."""
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise UploadError(
            422, "multipart/form-data body without a boundary in its Content-Type; let your HTTP client build "
            "the multipart body (e.g. curl -F file=@photo.jpg), or send the image as the raw request body."
        )
    parts: list[_Part] = []
    header_name = bytearray()
    header_value = bytearray()

    def on_part_begin() -> None:
        if len(parts) >= max_parts:
            raise UploadError(413, f"too many parts in the multipart body (limit {max_parts}).")
        parts.append(_Part(headers=[], chunks=[]))

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1].chunks.append(data[start:end])

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_name.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        parts[-1].headers.append((bytes(header_name).lower(), bytes(header_value)))
        header_name.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        part = parts[-1]
        for key, value in part.headers:
            if key == b"content-disposition":
                _, opts = parse_options_header(value)
                if b"name" in opts:
                    part.name = opts[b"name"].decode("utf-8", "replace")
                if b"filename" in opts:
                    part.filename = opts[b"filename"].decode("utf-8", "replace")
            elif key == b"content-type":
                part.content_type = value.decode("latin-1").strip()

    callbacks = {
        "on_part_begin": on_part_begin,
        "on_part_data": on_part_data,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished,
    }
    start = _first_delimiter(body, boundary)
    if start > 0:
        body = body[start:]
    try:
        parser = MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
        parser.write(body)
        parser.finalize()
    except UploadError:
        raise
    except Exception as exc:  # noqa: BLE001 - python-multipart raises several error types
        raise UploadError(
            422, f"malformed multipart/form-data body ({exc}); send the image as a file field "
            "(e.g. curl -F file=@photo.jpg) or as the raw request body."
        ) from exc
    return [
        Upload(b"".join(p.chunks), filename=p.filename, declared_type=p.content_type, field=p.name)
        for p in parts
    ]


async def read_uploads(
    request: Request, limit: int, max_parts: int = 256, timeout_s: float | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> list[Upload]:
    """The files in a request: the file parts of a multipart form, or the raw body as one file.

    A body declared ``multipart/form-data`` is parsed as such only when it holds a line with its
    boundary (after an optional preamble); anything else is taken as the raw bytes of one file,
    whatever its declared type.
    """
    body = await read_body(request, limit, timeout_s, on_chunk)
    content_type = request.headers.get("content-type", "")
    if content_type.lower().startswith("multipart/"):
        _, params = parse_options_header(content_type)
        boundary = params.get(b"boundary") or b""
        if not boundary or _first_delimiter(body, boundary) >= 0:
            parts = parse_multipart(body, content_type, max_parts=max_parts)
            files = [p for p in parts if p.filename is not None]
            if not files:  # a form field holding the bytes, without a file name
                files = [p for p in parts if p.field in ("file", "image", "files", "crop", "crops")]
            if not files:
                names = ", ".join(repr(p.field) for p in parts) or "none"
                raise UploadError(
                    422, f"the multipart form holds no file (fields: {names}); send the image as a file "
                    "field named 'file', e.g. curl -F file=@photo.jpg URL."
                )
            return files
    return [Upload(body, filename=None, declared_type=content_type or None)]


def sniff_format(data: bytes) -> str | None:
    """The image format of ``data`` judged from its bytes (``"JPEG"``, ``"PNG"``, ...), else ``None``."""
    head = bytes(data[:16])
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    # Short signatures (BMP "BM", PNM "P1".."P6") and formats without one are left to Pillow, which
    # also checks the header that follows them.
    return sniff_image_format(data)


def describe_bytes(data: bytes, n: int = 8) -> str:
    """The first bytes of an upload for a person: quoted text when they are text, else hex."""
    head = bytes(data[:n])
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(ch.isprintable() or ch in "\t\r\n" for ch in text):
        shown = text.replace("\r", " ").replace("\n", " ").replace("\t", " ").strip() or "blank space"
        more = "…" if len(data) > n else ""
        return f'the text "{shown}{more}"' if shown != "blank space" else "blank space"
    return "the bytes " + " ".join(f"{b:02x}" for b in head)


def require_image(upload: Upload) -> str:
    """Return the sniffed format of an upload or raise a 415/422 :class:`UploadError` saying why not."""
    if not upload.data:
        raise UploadError(
            422, f"{upload.label}: the body is empty; send the image bytes as the raw request body or as a "
            "multipart file field named 'file'."
        )
    fmt = sniff_format(upload.data)
    if fmt is None:
        declared = f" (declared as {upload.declared_type})" if upload.declared_type else ""
        raise UploadError(
            415, f"{upload.label}{declared} is not an image: it starts with {describe_bytes(upload.data)}. "
            f"Send a {ACCEPTED_FORMATS} file."
        )
    return fmt
