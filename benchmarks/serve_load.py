"""Load test for ``maskwatch serve``: concurrent clients POST scene photos to ``/v1/detect``.

Starts a real uvicorn server (``maskwatch.server.serve``) on 127.0.0.1 in a subprocess, then runs
``--clients`` threads (8), each with its own keep-alive HTTP connection, sending the photos of
``--images`` round-robin as multipart uploads (``--raw``: as raw bodies) for ``--duration``
seconds (60). It reports errors, latency p50 / p95 / p99 / max, throughput, and the server's
resident memory (RSS) at start, after a warm-up of 100 requests, after 1000 requests and at the end,
so memory growth across 1000 requests is visible. If fewer than ``--min-requests`` (1000) requests
were done in the timed window, it keeps sending (untimed) until they are, for the memory check.

Run (from the repository root)::

    MASKWATCH_MODELS=../shared/weights/face python benchmarks/serve_load.py [--model M.onnx] [--images DIR]

Exit status 1 when any request failed. ``--json PATH`` also writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = Path(os.environ.get("MASKWATCH_SHARED", ROOT.parent / "shared")) / "data" / "scenes-dev" / "images"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MiB (Linux ``/proc``)."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


@dataclass
class Stats:
    """Shared between client threads (guarded by ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    done: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    timed_done: int = 0
    errors: list[str] = field(default_factory=list)
    faces: int = 0
    rss_marks: dict[int, float] = field(default_factory=dict)


def start_server(args: argparse.Namespace, port: int, log_path: Path) -> subprocess.Popen:
    code = (
        "import logging, sys; logging.basicConfig(level=logging.WARNING);"
        "from maskwatch.server import serve;"
        f"serve(host='127.0.0.1', port={port}, model={args.model!r}, detector={args.detector!r},"
        f" log_level='warning', mirror_photos={args.mirror!r})"
    )
    env = dict(os.environ)
    if args.workers:
        env["MASKWATCH_WORKERS"] = str(args.workers)
    log = open(log_path, "wb")
    return subprocess.Popen([sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT, env=env)


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 180.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode}")
        try:
            r = httpx.get(url + "health", timeout=2)
            if r.status_code == 200:
                return r.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"the server did not answer {url}health within {timeout:.0f} s")


def client_loop(idx: int, url: str, images: list[tuple[str, bytes]], args: argparse.Namespace, stats: Stats,
                t_start: float, pid: int | None, marks: tuple[int, ...]) -> None:
    i = idx * 7  # clients start at different photos
    with httpx.Client(base_url=url, timeout=120) as client:
        while True:
            now = time.monotonic()
            with stats.lock:
                if now - t_start >= args.duration and stats.done >= args.min_requests:
                    return
            name, data = images[i % len(images)]
            i += 1
            t0 = time.perf_counter()
            err = None
            n_faces = 0
            try:
                if args.raw:
                    r = client.post("/v1/detect", content=data, headers={"Content-Type": "image/jpeg"})
                else:
                    r = client.post("/v1/detect", files={"file": (name, data, "image/jpeg")})
                if r.status_code != 200:
                    err = f"{name}: HTTP {r.status_code} {r.text[:200]}"
                else:
                    n_faces = len(r.json()["faces"])
            except httpx.HTTPError as exc:
                err = f"{name}: {type(exc).__name__}: {exc}"
            t1 = time.perf_counter()
            with stats.lock:
                stats.done += 1
                stats.faces += n_faces
                if err:
                    stats.errors.append(err)
                if time.monotonic() - t_start <= args.duration:
                    stats.timed_done += 1
                    stats.latencies_ms.append((t1 - t0) * 1e3)
                if pid is not None and stats.done in marks:
                    stats.rss_marks[stats.done] = rss_mb(pid)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=os.environ.get("MASKWATCH_MODEL"), help="classifier .onnx (default: bundled)")
    ap.add_argument("--detector", default="auto", choices=["auto", "yunet", "yuface"])
    ap.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="folder of photos to send")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--duration", type=float, default=60.0, help="timed window, seconds")
    ap.add_argument("--min-requests", type=int, default=1000, help="keep going until this many (memory check)")
    ap.add_argument("--workers", type=int, default=None, help="MASKWATCH_WORKERS for the server")
    ap.add_argument("--raw", action="store_true", help="send raw bodies instead of multipart uploads")
    ap.add_argument("--mirror", action=argparse.BooleanOptionalAction, default=None,
                    help="classify photo faces with their mirror image too (default: the server's default, off)")
    ap.add_argument("--url", default=None, help="load an already running server instead of starting one")
    ap.add_argument("--pid", type=int, default=None, help="with --url: the server's process id, for its RSS")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)

    files = sorted(p for p in args.images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        ap.error(f"no images in {args.images}")
    images = [(p.name, p.read_bytes()) for p in files]

    proc = None
    log_path = Path(tempfile.gettempdir()) / f"maskwatch-serve-load-{os.getpid()}.log"
    if args.url:
        url = args.url.rstrip("/") + "/"
        pid = args.pid
    else:
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        proc = start_server(args, port, log_path)
        pid = proc.pid
    try:
        health = wait_ready(url, proc) if proc else httpx.get(url + "health").json()
        rss_start = rss_mb(pid) if pid else None
        print(f"server {url}: model {health['model']}, detector {health['detector']}, {health['workers']} workers; "
              f"{len(images)} photos ({sum(len(d) for _, d in images) / 1e6:.1f} MB), {args.clients} clients, "
              f"{'raw bodies' if args.raw else 'multipart uploads'}; {os.cpu_count()} CPUs, load average "
              f"{os.getloadavg()[0]:.2f}", flush=True)

        stats = Stats()
        marks = (100, 1000, args.min_requests)
        t_start = time.monotonic()
        threads = [
            threading.Thread(target=client_loop, args=(k, url, images, args, stats, t_start, pid, marks), daemon=True)
            for k in range(args.clients)
        ]
        peak = rss_start or 0.0
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            time.sleep(0.5)
            if pid:
                peak = max(peak, rss_mb(pid))
        wall = time.monotonic() - t_start
        rss_end = rss_mb(pid) if pid else None
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()

    lat = stats.latencies_ms
    timed_window = min(args.duration, wall)
    result = {
        "url": url,
        "clients": args.clients,
        "duration_s": args.duration,
        "requests_total": stats.done,
        "requests_timed": stats.timed_done,
        "errors": len(stats.errors),
        "throughput_rps": stats.timed_done / timed_window,
        "faces_per_request": stats.faces / max(1, stats.done),
        "latency_ms": {
            "p50": percentile(lat, 0.50), "p95": percentile(lat, 0.95), "p99": percentile(lat, 0.99),
            "mean": statistics.fmean(lat) if lat else float("nan"), "max": max(lat, default=float("nan")),
        },
        "rss_mb": {
            "start": rss_start, "after_100": stats.rss_marks.get(100), "after_1000": stats.rss_marks.get(1000),
            "end": rss_end, "peak": peak if pid else None,
        },
        "workers": health["workers"],
        "model": health["model"],
        "detector": health["detector"],
    }
    r = result["rss_mb"]
    growth = (r["after_1000"] - r["after_100"]) if r["after_1000"] and r["after_100"] else None
    result["rss_growth_100_to_1000_mb"] = growth

    L = result["latency_ms"]
    print(f"requests: {stats.timed_done} in {timed_window:.0f} s ({stats.done} in all), errors: {len(stats.errors)}")
    print(f"throughput: {result['throughput_rps']:.1f} requests/s ({result['faces_per_request']:.1f} faces/request)")
    print(f"latency ms: p50 {L['p50']:.0f}  p95 {L['p95']:.0f}  p99 {L['p99']:.0f}  max {L['max']:.0f}")
    if pid:
        fmt = lambda v: "-" if v is None else f"{v:.0f}"  # noqa: E731
        print(f"server RSS MiB: start {fmt(r['start'])}, after 100 requests {fmt(r['after_100'])}, after 1000 "
              f"{fmt(r['after_1000'])}, end {fmt(r['end'])}, peak {fmt(r['peak'])}; growth 100 -> 1000 requests: "
              f"{'-' if growth is None else f'{growth:+.1f}'} MiB")
    for e in stats.errors[:5]:
        print("error:", e)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 1 if stats.errors else 0


if __name__ == "__main__":
    sys.exit(main())
