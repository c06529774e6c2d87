"""How many cameras at 10 fps one ``maskwatch watch`` process holds, and the CPU each one costs.

A GStreamer RTSP server on 127.0.0.1 (tests/rtsp.py) serves airport-crowd.mp4 at its own resolution
(640x360, 25 fps, looped; H.264). For N = 1, 2, 3, ... cameras (each its own RTSP session, tracker and
face detector; one shared classifier), the monitor runs ``--warmup`` s, then ``--measure`` s, and
this prints per N: analysed frames/s per camera (mean and worst), lag (p50 / p95 / max over 0.5 s
samples, worst camera), frames dropped, the process's CPU in cores (all threads) and per camera, and
the CPU per analysed frame (what sizes a machine: cameras x fps x this), and the RTSP server's own
CPU. A camera count "holds" when every camera keeps >= 95 % of its fps target
and the p95 lag stays under 1 s; the sweep stops after the first count that does not hold.

    MASKWATCH_MODELS=../shared/weights/face python benchmarks/watch_capacity.py [--max 8] [--fps 10]

Needs GStreamer's RTSP server for the system Python (see tests/rtsp.py for the apt-get line).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # FFmpeg quiet (reconnection attempts) before cv2 loads it
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
CLIP = Path(os.environ.get("MASKWATCH_SHARED", ROOT.parent / "shared")) / "data" / "video" / "airport-crowd.mp4"


def proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(n: int, url: str, fps: float, warmup: float, duration: float, engine, server_pid: int) -> dict:
    from maskwatch.watch import Monitor, parse_site

    site = parse_site({"site": {"name": f"capacity {n}"},
                       "camera": [{"name": f"cam{i}", "source": url, "fps": fps, "alert_after_s": False}
                                  for i in range(n)]})
    with Monitor(site, engine=engine) as mon:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(c.frames for c in mon.cameras.values()):
            time.sleep(0.2)
        time.sleep(warmup)
        cams = list(mon.cameras.values())
        f0 = [c.frames for c in cams]
        d0 = [c.reader.dropped for c in cams]
        cpu0, srv0, t0 = time.process_time(), proc_cpu_s(server_pid), time.monotonic()
        lags: list[list[float]] = [[] for _ in cams]
        while time.monotonic() - t0 < duration:
            time.sleep(0.5)
            for k, c in enumerate(cams):
                if c.lag_s is not None:
                    lags[k].append(c.lag_s)
        wall = time.monotonic() - t0
        cpu, srv = time.process_time() - cpu0, proc_cpu_s(server_pid) - srv0
        rates = [(c.frames - f) / wall for c, f in zip(cams, f0)]
        dropped = sum(c.reader.dropped - d for c, d in zip(cams, d0))
        connected = all(c.reader.connected for c in cams)
    worst = max(lags, key=lambda x: sorted(x)[int(0.95 * (len(x) - 1))] if x else 0)
    worst = sorted(worst) or [float("nan")]
    p95 = worst[int(0.95 * (len(worst) - 1))]
    holds = connected and min(rates) >= 0.95 * fps and p95 < 1.0
    return {"n": n, "fps_mean": statistics.mean(rates), "fps_min": min(rates), "lag_p50": worst[len(worst) // 2],
            "lag_p95": p95, "lag_max": worst[-1], "dropped_s": dropped / wall, "cores": cpu / wall,
            "cores_per_cam": cpu / wall / n,
            "cpu_ms_per_frame": cpu / max(sum(rates) * wall, 1e-9) * 1e3, "server_cores": srv / wall, "holds": holds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max", type=int, default=8, help="most cameras tried")
    ap.add_argument("--counts", default=None, help="camera counts to try, e.g. 1,2,4 (default 1..max)")
    ap.add_argument("--fps", type=float, default=10.0, help="fps target per camera")
    ap.add_argument("--warmup", type=float, default=8.0)
    ap.add_argument("--measure", type=float, default=20.0)
    ap.add_argument("--keep-going", action="store_true", help="do not stop at the first count that fails")
    args = ap.parse_args()

    import logging

    from maskwatch.engine import MaskDetector
    from rtsp import RtspServer, rtsp_missing, write_frames

    logging.basicConfig(level=logging.ERROR)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the RTSP server on the way out
    missing = rtsp_missing()
    if missing:
        sys.exit(f"watch_capacity: {missing}")
    engine = MaskDetector()
    counts = [int(x) for x in args.counts.split(",")] if args.counts else list(range(1, args.max + 1))
    with tempfile.TemporaryDirectory() as tmp:
        frames = write_frames(CLIP, Path(tmp) / "frames", max_frames=661)
        with RtspServer(frames, fps=25) as server:
            print(f"# {CLIP.name} 640x360 over RTSP (H.264, 25 fps source), target {args.fps:g} fps per camera; "
                  f"{os.cpu_count()} CPUs, load average at start {os.getloadavg()[0]:.1f}", flush=True)
            print("| cameras | fps per camera (mean / worst) | lag p50 / p95 / max (s) | dropped/s | process CPU "
                  "(cores) | CPU per camera | CPU per analysed frame | RTSP server CPU | holds |")
            print("|---|---|---|---|---|---|---|---|---|")
            for n in counts:
                r = measure(n, server.url, args.fps, args.warmup, args.measure, engine, server.proc.pid)
                print(f"| {n} | {r['fps_mean']:.1f} / {r['fps_min']:.1f} | {r['lag_p50']:.2f} / {r['lag_p95']:.2f} / "
                      f"{r['lag_max']:.2f} | {r['dropped_s']:.0f} | {r['cores']:.2f} | {r['cores_per_cam']:.2f} | "
                      f"{r['cpu_ms_per_frame']:.0f} ms | {r['server_cores']:.2f} | "
                      f"{'yes' if r['holds'] else 'no'} |", flush=True)
                if not r["holds"] and not args.keep_going:
                    break
            print(f"# load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
