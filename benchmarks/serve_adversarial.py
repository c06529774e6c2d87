"""Adversarial load on ``maskwatch serve``: hostile uploads mixed with ordinary photo requests.

Starts a real server (``maskwatch.server.serve``, default settings) on 127.0.0.1 in a subprocess,
like ``serve_load.py``, then runs three phases:

0. **One at a time**: a 7000x7000 16-bit PNG and a 7000x7000 PNG to ``/v1/detect``, then 32 copies of
   that PNG to ``/v1/classify``, each alone, with the server's RSS before, at its peak and after.

1. **Abandoned requests**: ``--abandon`` (100) clients each upload a scene photo and give up after
   ``--give-up`` (1) second without reading the answer; then one ordinary request is timed (before
   the fix it waited ~24 s for the abandoned work).
2. **Mixed load**: ``--clients`` (16) threads for ``--duration`` (60) seconds. Half send ordinary
   scene photos to ``/v1/detect`` (their latency is reported); the other half cycle through hostile
   requests, each with the answer it must get:

   * an EPS with an endless loop (415: never handed to Ghostscript),
   * a pixel bomb: a 100-byte PNG claiming 30000x30000 pixels (413),
   * a 7000x7000 PNG (143 KB) and a 7000x7000 16-bit PNG to ``/v1/detect`` (200, under the budget),
   * 32 copies of the 7000x7000 PNG to ``/v1/classify`` (413: over the per-request pixel budget),
   * a JPEG whose header lies about its size (422),
   * a slow client that trickles a photo over ~3 s (200),
   * a client that disconnects mid-upload (no answer; must not log tracebacks),
   * 10,000 headers (431), and an oversized upload sent whole by a client that reads only afterwards (413).

3. **Slow clients**: ``--slow`` (36) connections from ``--slow-addresses`` (1) other loopback
   addresses (127.0.0.2, ...) each send a request head and then one body byte per second; a
   refused or timed-out one reconnects at once. Meanwhile ``--slow-ordinary`` (4) clients on
   127.0.0.1 send ordinary photos for ``--slow-duration`` (20) seconds: their answers (all must be
   200) and latency p50 / p95 are reported, with how the slow connections were answered.

4. **Frame budgets** (``--only budgets`` runs only this): a 198 KB H.264 video of three 8192x8192
   frames to ``/v1/jobs`` and a real 7000x7000 PNG to ``/v1/live``, each alone, with the server's
   RSS before, at its peak and after (both must answer 4xx and stay under 1 GiB).

It prints the server's peak RSS (sampled every 0.1 s), errors (an unexpected status, a reset, a
traceback in the server log), latency p50 / p95 of the ordinary requests, and how many requests
got 503 (queue full). Exit status 1 when there was any error.

Run (from the repository root)::

    MASKWATCH_MODELS=../shared/weights/face python benchmarks/serve_adversarial.py
"""

from __future__ import annotations

import argparse
import collections
import http.client
import io
import json
import os
import re
import socket
import struct
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import DEFAULT_IMAGES, free_port, percentile, rss_mb, start_server, wait_ready  # noqa: E402

EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\n%%EndComments\n"
       b"{ } loop\n%%EOF\n")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + _png_chunk(b"IEND", b""))


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def lying_jpeg(photo: bytes) -> bytes:
    data = bytearray(encode(Image.open(io.BytesIO(photo)).convert("RGB").resize((160, 120)), "JPEG"))
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", 3000, 4000)
    return bytes(data)


def multipart(files: list[tuple[str, bytes]], field: str = "files") -> tuple[bytes, str]:
    boundary = "maskwatchbench"
    out = bytearray()
    for name, data in files:
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\n"
                "Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


def raw_exchange(port: int, head: bytes, body: bytes = b"", *, trickle_s: float = 0.0, close_after: int | None = None,
                 timeout: float = 120.0) -> int | None:
    """Send one request on a new connection; the status, or None when the client hung up on purpose."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head)
        if close_after is not None:
            s.sendall(body[:close_after])
            return None
        if trickle_s > 0:
            pieces = 30
            step = max(1, len(body) // pieces)
            for i in range(0, len(body), step):
                s.sendall(body[i:i + step])
                time.sleep(trickle_s / pieces)
        else:
            s.sendall(body)
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                raise ConnectionError("connection closed without an answer")
            data += chunk
        return int(data.split(b" ", 2)[1])


def request_head(path: str, length: int, content_type: str = "application/octet-stream", extra: bytes = b"") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {length}\r\nConnection: close\r\n").encode() + extra + b"\r\n"


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies_ms: list[float] = []
        self.ordinary = 0
        self.status = collections.Counter()  # (case, status)
        self.errors: list[str] = []
        self.busy = 0

    def record(self, case: str, status: int | None, expected: set[int | None], ms: float | None = None) -> None:
        with self.lock:
            self.status[(case, status)] += 1
            if status == 503:
                self.busy += 1
            elif status not in expected:
                self.errors.append(f"{case}: got {status}, expected {sorted(map(str, expected))}")
            if ms is not None and status == 200:
                self.latencies_ms.append(ms)
                self.ordinary += 1


def ordinary_client(port: int, photos: list[tuple[str, bytes]], idx: int, stop: float, tally: Tally) -> None:
    i = idx * 5
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    while time.monotonic() < stop:
        name, data = photos[i % len(photos)]
        i += 1
        t0 = time.perf_counter()
        try:
            conn.request("POST", "/v1/detect", body=data, headers={"Content-Type": "image/jpeg"})
            r = conn.getresponse()
            r.read()
            if r.getheader("Retry-After") and r.status == 503:
                time.sleep(float(r.getheader("Retry-After")))
            tally.record("photo", r.status, {200}, (time.perf_counter() - t0) * 1e3)
        except (OSError, http.client.HTTPException) as exc:
            tally.record("photo", None, {200})
            with tally.lock:
                tally.errors.append(f"photo: {type(exc).__name__}: {exc}")
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.close()


def hostile_cases(photos: list[tuple[str, bytes]]) -> list[tuple[str, set, object]]:
    """(name, expected statuses, callable(port) -> status)."""
    big = encode(Image.new("RGB", (7000, 7000), (200, 180, 160)), "PNG", compress_level=9)
    big16 = encode(Image.fromarray(np.full((7000, 7000), 40000, np.uint16)), "PNG", compress_level=9)
    crops, crops_type = multipart([(f"c{i}.png", big) for i in range(32)])
    photo = photos[0][1]
    oversized = b"\xff\xd8\xff" + b"\x00" * (21 * 1024 * 1024)
    many_headers = b"".join(b"X-Header-%d: v\r\n" % i for i in range(10_000))
    print(f"hostile payloads: EPS {len(EPS)} B, pixel bomb {len(png_bomb())} B, 7000x7000 PNG {len(big) / 1e3:.0f} KB, "
          f"16-bit 7000x7000 PNG {len(big16) / 1e3:.0f} KB, 32 crops {len(crops) / 1e6:.1f} MB", flush=True)

    def post(path: str, body: bytes, ctype: str = "application/octet-stream", **kw):
        return lambda port: raw_exchange(port, request_head(path, len(body), ctype), body, **kw)

    return [
        ("eps", {415}, post("/v1/detect", EPS, "application/postscript")),
        ("pixel-bomb", {413}, post("/v1/detect", png_bomb(), "image/png")),
        ("png-7000", {200}, post("/v1/detect", big, "image/png")),
        ("png16-7000", {200}, post("/v1/detect", big16, "image/png")),
        ("32-crops-7000", {413}, post("/v1/classify", crops, crops_type)),
        ("lying-jpeg", {422}, post("/v1/detect", lying_jpeg(photo), "image/jpeg")),
        ("slow-client", {200}, post("/v1/detect", photo, "image/jpeg", trickle_s=3.0)),
        ("gone-mid-upload", {None}, post("/v1/detect", photo, "image/jpeg", close_after=len(photo) // 2)),
        ("10000-headers", {431}, lambda port: raw_exchange(
            port, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + many_headers + b"\r\n")),
        ("oversized-21MB", {413}, post("/v1/detect", oversized, "image/jpeg")),
    ]


def hostile_client(port: int, cases, idx: int, stop: float, tally: Tally) -> None:
    i = idx
    while time.monotonic() < stop:
        name, expected, fn = cases[i % len(cases)]
        i += 1
        try:
            status = fn(port)
        except (OSError, ConnectionError) as exc:
            with tally.lock:
                tally.errors.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        tally.record(name, status, expected)


def one_at_a_time(port: int, pid: int, cases) -> list[dict]:
    """Send the memory-heavy cases alone; the server's RSS before, at its peak (0.02 s sampling) and after."""
    out = []
    for name, expected, fn in cases:
        before = rss_mb(pid)
        peak = [before]
        stop = threading.Event()

        def sample(stop=stop, peak=peak) -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], rss_mb(pid))
                time.sleep(0.02)

        t = threading.Thread(target=sample)
        t.start()
        status = fn(port)
        time.sleep(0.5)
        stop.set()
        t.join()
        after = rss_mb(pid)
        out.append({"case": name, "status": status, "rss_before": before, "rss_peak": peak[0], "rss_after": after})
        print(f"phase 0: {name:14s} HTTP {status} (expected {sorted(expected)}); RSS MiB before {before:.0f}, peak "
              f"{peak[0]:.0f} (+{peak[0] - before:.0f}), after {after:.0f}", flush=True)
    return out


def abandon(port: int, photo: bytes, give_up: float, answers: collections.Counter) -> None:
    """Upload a photo, wait ``give_up`` seconds for the answer's status line, then hang up."""
    status: int | str = "gave up"
    with socket.create_connection(("127.0.0.1", port), timeout=give_up + 5) as s:
        s.sendall(request_head("/v1/detect", len(photo), "image/jpeg") + photo)
        s.settimeout(give_up)
        try:
            line = s.recv(64)
            status = int(line.split(b" ", 2)[1]) if line else "closed"
        except OSError:
            pass
    answers[status] += 1


def huge_video(side: int = 8192, frames: int = 3) -> bytes:
    """A small H.264 MP4 whose frames are ``side`` x ``side`` pixels (about 198 KB at 8192)."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as c:
        stream = c.add_stream("libx264", rate=10)
        stream.width = stream.height = side
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast"}
        black = np.zeros((side, side, 3), np.uint8)
        for _ in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(black, format="rgb24")):
                c.mux(packet)
        for packet in stream.encode():
            c.mux(packet)
    return buf.getvalue()


def job_status(port: int, body: bytes) -> int | str:
    """POST a video job; its HTTP status when refused, else its final state (polled)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        conn.request("POST", "/v1/jobs?name=huge.mp4", body=body, headers={"Content-Type": "video/mp4"})
        r = conn.getresponse()
        answer = json.loads(r.read())
        if r.status != 202:
            return r.status
        while True:
            time.sleep(0.2)
            conn.request("GET", f"/v1/jobs/{answer['id']}")
            job = json.loads(conn.getresponse().read())
            if job["status"] not in ("queued", "running"):
                return f"202, then {job['status']}: {job.get('error')}"
    finally:
        conn.close()


def budget_cases() -> list[tuple[str, set, object]]:
    video = huge_video()
    png = encode(Image.new("RGB", (7000, 7000), (200, 180, 160)), "PNG", compress_level=9)
    print(f"budget payloads: 8192x8192 video {len(video) / 1e3:.0f} KB, 7000x7000 PNG {len(png) / 1e3:.0f} KB",
          flush=True)
    return [
        ("video-8192", {413}, lambda port: job_status(port, video)),
        ("live-png-7000", {413}, lambda port: raw_exchange(
            port, request_head("/v1/live?session=benchmark-big-frame", len(png), "image/png"), png)),
    ]


def slow_client(port: int, source: str, stop: float, answers: collections.Counter) -> None:
    """Trickle one byte a second into a photo upload; reconnect when answered, until ``stop``."""
    while time.monotonic() < stop:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0)) as s:
                s.sendall(request_head("/v1/detect", 1_000_000, "image/jpeg"))
                s.setblocking(False)
                status: int | str = "held to the end"
                while time.monotonic() < stop:
                    try:
                        line = s.recv(64)
                        status = int(line.split(b" ", 2)[1]) if line else "closed"
                        break
                    except BlockingIOError:
                        pass
                    s.sendall(b"\x00")
                    time.sleep(1.0)
        except OSError as exc:
            status = type(exc).__name__
        answers[status] += 1


def slow_phase(port: int, photos, n_slow: int, addresses: int, n_ordinary: int, duration: float) -> dict:
    """Phase 3: ``n_slow`` one-byte-a-second uploads held open while ordinary clients are timed."""
    answers: collections.Counter = collections.Counter()
    stop = time.monotonic() + duration
    slow = [threading.Thread(target=slow_client, args=(port, f"127.0.0.{2 + k % max(1, addresses)}", stop, answers))
            for k in range(n_slow)]
    for t in slow:
        t.start()
    time.sleep(2.0)  # they all hold their connections before the ordinary requests begin
    tally = Tally()
    ordinary = [threading.Thread(target=ordinary_client, args=(port, photos, k, stop, tally))
                for k in range(n_ordinary)]
    for t in ordinary:
        t.start()
    for t in ordinary + slow:
        t.join()
    lat = tally.latencies_ms
    statuses = {str(s): n for (c, s), n in tally.status.items() if c == "photo"}
    seen = ", ".join(f"{k}: {v}" for k, v in sorted(answers.items(), key=str))
    print(f"phase 3: {n_slow} slow clients (1 byte/s) from {addresses} address(es) for {duration:.0f} s; their "
          f"answers: {seen}", flush=True)
    print(f"  ordinary requests from 127.0.0.1 meanwhile: {statuses}, latency p50 {percentile(lat, 0.5):.0f} ms, "
          f"p95 {percentile(lat, 0.95):.0f} ms", flush=True)
    return {"slow_clients": n_slow, "slow_answers": {str(k): v for k, v in answers.items()},
            "ordinary_statuses": statuses, "ordinary_ok": tally.ordinary, "p50_ms": percentile(lat, 0.5),
            "p95_ms": percentile(lat, 0.95), "errors": tally.errors}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=os.environ.get("MASKWATCH_MODEL"), help="classifier .onnx (default: bundled)")
    ap.add_argument("--detector", default="auto", choices=["auto", "yunet", "yuface"])
    ap.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="folder of ordinary photos")
    ap.add_argument("--clients", type=int, default=16, help="clients in phase 2")
    ap.add_argument("--hostile", type=int, default=None,
                    help="how many of them send hostile requests (default: half; 0 gives the baseline)")
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--abandon", type=int, default=100, help="clients that give up in phase 1")
    ap.add_argument("--give-up", type=float, default=1.0, help="seconds before an abandoning client leaves")
    ap.add_argument("--workers", type=int, default=None, help="MASKWATCH_WORKERS for the server")
    ap.add_argument("--mirror", action="store_true", default=None, help="MASKWATCH_MIRROR for the server")
    ap.add_argument("--slow", type=int, default=36, help="slow clients in phase 3 (0 skips it)")
    ap.add_argument("--slow-addresses", type=int, default=1, help="loopback addresses they come from")
    ap.add_argument("--slow-ordinary", type=int, default=4, help="ordinary clients timed in phase 3")
    ap.add_argument("--slow-duration", type=float, default=20.0)
    ap.add_argument("--only", choices=["slow", "budgets"], default=None, help="run only this phase")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    photos = [(p.name, p.read_bytes()) for p in sorted(args.images.iterdir())
              if p.suffix.lower() in (".jpg", ".jpeg")][:60]
    if not photos:
        ap.error(f"no JPEG photos in {args.images}")
    cases = hostile_cases(photos)
    port = free_port()
    log_path = Path(tempfile.gettempdir()) / f"maskwatch-serve-adversarial-{os.getpid()}.log"
    proc = start_server(args, port, log_path)
    url = f"http://127.0.0.1:{port}/"
    peak = [0.0]
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            try:
                peak[0] = max(peak[0], rss_mb(proc.pid))
            except (OSError, RuntimeError):
                return
            time.sleep(0.1)

    result: dict = {}
    slow = None
    try:
        health = wait_ready(url, proc)
        rss_start = rss_mb(proc.pid)
        threading.Thread(target=sample, daemon=True).start()
        print(f"server {url}: {health['workers']} workers, queue {health.get('max_queue')}, detector "
              f"{health['detector']}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}", flush=True)

        if args.only == "budgets" or args.only is None:
            budgets = one_at_a_time(port, proc.pid, budget_cases())
            over = [b for b in budgets if b["rss_peak"] > 1024 or b["status"] not in (413, 422)]
            if args.only == "budgets":
                if args.json:
                    args.json.write_text(json.dumps(budgets, indent=2))
                return 1 if over else 0
        if args.only == "slow":
            slow = slow_phase(port, photos, args.slow, args.slow_addresses, args.slow_ordinary, args.slow_duration)
            if args.json:
                args.json.write_text(json.dumps(slow, indent=2))
            return 1 if slow["errors"] or set(slow["ordinary_statuses"]) - {"200"} else 0

        # Phase 0: the memory-heavy requests one at a time.
        heavy = one_at_a_time(port, proc.pid, [c for c in cases if c[0] in ("png16-7000", "png-7000", "32-crops-7000")])

        # Phase 1: abandoned requests, then one ordinary request.
        answers: collections.Counter = collections.Counter()
        threads = [threading.Thread(target=abandon, args=(port, photos[k % len(photos)][1], args.give_up, answers))
                   for k in range(args.abandon)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        t1 = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        conn.request("POST", "/v1/detect", body=photos[0][1], headers={"Content-Type": "image/jpeg"})
        r = conn.getresponse()
        r.read()
        next_ms = (time.perf_counter() - t1) * 1e3
        conn.close()
        seen = ", ".join(f"{k}: {v}" for k, v in sorted(answers.items(), key=str))
        print(f"phase 1: {args.abandon} clients, each waiting {args.give_up:g} s for an answer ({seen}); the next "
              f"request answered {r.status} in {next_ms:.0f} ms", flush=True)

        # Phase 2: mixed load.
        tally = Tally()
        stop = time.monotonic() + args.duration
        n_host = args.clients // 2 if args.hostile is None else min(args.hostile, args.clients)
        workers = [threading.Thread(target=ordinary_client, args=(port, photos, k, stop, tally))
                   for k in range(args.clients - n_host)]
        workers += [threading.Thread(target=hostile_client, args=(port, cases, k, stop, tally)) for k in range(n_host)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        time.sleep(1.0)
        rss_end = rss_mb(proc.pid)

        # Phase 3: slow clients holding connections while ordinary requests are timed.
        slow = slow_phase(port, photos, args.slow, args.slow_addresses, args.slow_ordinary,
                          args.slow_duration) if args.slow else None
    finally:
        sampling.set()
        proc.terminate()
        try:
            proc.wait(10)
        except Exception:  # noqa: BLE001
            proc.kill()

    log_text = log_path.read_text(errors="replace")
    tracebacks = log_text.count("Traceback")
    error_lines = len(re.findall(r"^(ERROR|CRITICAL)", log_text, re.M))
    lat = tally.latencies_ms
    errors = len(tally.errors) + tracebacks + error_lines
    print(f"phase 2: {args.clients} clients for {args.duration:.0f} s "
          f"({args.clients - n_host} ordinary, {n_host} hostile)")
    for (case, status), n in sorted(tally.status.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
        print(f"  {case:16s} {str(status):>5s} x {n}")
    print(f"ordinary requests: {tally.ordinary} answered 200, latency p50 {percentile(lat, 0.5):.0f} ms, "
          f"p95 {percentile(lat, 0.95):.0f} ms")
    print(f"503 (queue full): {tally.busy} in phase 2, {answers.get(503, 0)} in phase 1")
    print(f"errors: {errors} ({len(tally.errors)} unexpected answers or resets, {tracebacks} tracebacks and "
          f"{error_lines} ERROR lines in the server log)")
    print(f"server RSS MiB: start {rss_start:.0f}, peak {peak[0]:.0f}, end {rss_end:.0f}")
    for e in tally.errors[:8]:
        print("error:", e)
    result = {
        "one_at_a_time": heavy, "abandoned": args.abandon, "abandon_answers": {str(k): v for k, v in answers.items()},
        "next_request_ms": next_ms, "clients": args.clients, "duration_s": args.duration,
        "ordinary_ok": tally.ordinary, "p50_ms": percentile(lat, 0.5), "p95_ms": percentile(lat, 0.95),
        "busy_503": tally.busy, "busy_503_phase1": answers.get(503, 0), "errors": errors,
        "rss_mb": {"start": rss_start, "peak": peak[0], "end": rss_end},
        "statuses": {f"{c} {s}": n for (c, s), n in tally.status.items()}, "slow_clients": slow,
    }
    if slow is not None:
        errors += len(slow["errors"]) + sum(n for k, n in slow["ordinary_statuses"].items() if k != "200")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
