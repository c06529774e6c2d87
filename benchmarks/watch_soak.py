"""Memory over a long watch: N RTSP cameras in one process for M minutes; RSS must stay flat.

A GStreamer RTSP server on 127.0.0.1 (tests/rtsp.py) serves airport-crowd.mp4 (looped); a monitor
watches ``--cameras`` sessions of it at ``--fps`` each, with an event log in a temporary file. Every
``--restart-every`` minutes the server is killed for 5 s and started again, so that the reconnect
path runs too. Every ``--sample`` s this prints the process's RSS, frames analysed and reconnects;
at the end the RSS growth from the first sample after warm-up to the last, and its slope per hour.

    MASKWATCH_MODELS=../shared/weights/face nice -n 10 python benchmarks/watch_soak.py --cameras 4 --minutes 30
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg quiet (reconnection attempts) before cv2 loads it
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
CLIP = Path(os.environ.get("MASKWATCH_SHARED", ROOT.parent / "shared")) / "data" / "video" / "airport-crowd.mp4"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cameras", type=int, default=4)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--fps", type=float, default=5.0)
    ap.add_argument("--sample", type=float, default=60.0, help="seconds between samples")
    ap.add_argument("--warmup", type=float, default=120.0, help="seconds before the baseline sample")
    ap.add_argument("--restart-every", type=float, default=10.0, help="minutes between server restarts (0: never)")
    args = ap.parse_args()

    from maskwatch.watch import Monitor, parse_site
    from rtsp import RtspServer, rtsp_missing, write_frames

    logging.basicConfig(level=logging.ERROR)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the RTSP server on the way out
    missing = rtsp_missing()
    if missing:
        sys.exit(f"watch_soak: {missing}")
    with tempfile.TemporaryDirectory() as tmp:
        frames = write_frames(CLIP, Path(tmp) / "frames", max_frames=661)
        server = RtspServer(frames).start()
        site = parse_site({"site": {"name": "soak"},
                           "defaults": {"fps": args.fps, "reconnect_min_s": 0.5, "reconnect_max_s": 2},
                           "camera": [{"name": f"cam{i}", "source": server.url} for i in range(args.cameras)]})
        t0 = time.monotonic()
        next_restart = t0 + args.restart_every * 60 if args.restart_every else float("inf")
        samples: list[tuple[float, float]] = []
        print(f"# {args.cameras} RTSP cameras at {args.fps:g} fps for {args.minutes:g} min; server restarted every "
              f"{args.restart_every:g} min")
        print("| minute | RSS (MB) | frames analysed | reconnects | events written |")
        print("|---|---|---|---|---|", flush=True)
        try:
            with Monitor(site, db=str(Path(tmp) / "events.db")) as mon:
                while time.monotonic() - t0 < args.minutes * 60:
                    time.sleep(args.sample)
                    now = time.monotonic()
                    if now >= next_restart:
                        server.stop()
                        time.sleep(5)
                        server.start()
                        next_restart = now + args.restart_every * 60
                    rss = rss_mb()
                    minute = (now - t0) / 60
                    if now - t0 >= args.warmup:
                        samples.append((minute, rss))
                    cams = mon.cameras.values()
                    print(f"| {minute:.1f} | {rss:.0f} | {sum(c.frames for c in cams)} | "
                          f"{sum(c.reader.reconnects for c in cams)} | {mon.event_log.events_written} |", flush=True)
        finally:
            server.stop()
        if len(samples) >= 2:
            (m0, r0), (m1, r1) = samples[0], samples[-1]
            slope = (r1 - r0) / max(m1 - m0, 1e-9) * 60
            print(f"# RSS after warm-up {r0:.0f} MB -> {r1:.0f} MB at the end ({r1 - r0:+.0f} MB; "
                  f"{slope:+.1f} MB/hour); min {min(r for _, r in samples):.0f}, max {max(r for _, r in samples):.0f}")


if __name__ == "__main__":
    main()
