"""maskwatch batch against maskwatch detect on this machine: images/s, frames/s, Ray's start-up.

Inputs: the 237 scenes-dev photos, linked under new names until there are at least ``--images``
inputs (default 1000), and airport-crowd.mp4. Every run goes through the command line as a user
would start it: ``detect`` as one process (once pinned to one core with taskset, once free on both),
``batch`` with ``--workers 1`` and ``--workers 2``. For batch, the labelling rate excludes Ray's
start-up (reported on its own, from the run's ``_SUCCESS``); the wall column includes everything.

On a machine shared with other work, wall-clock rates measure the neighbours as much as maskwatch, so
the script also sums the CPU time of each run's whole process tree (the CLI and, for batch, Ray's GCS,
raylet and workers: every process of the run's session, sampled every 0.2 s from /proc): CPU
milliseconds per frame is what capacity planning needs, and the ratio batch / detect is Ray's overhead.

    MASKWATCH_MODELS=../shared/weights/face python benchmarks/batch_scale.py
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MASKWATCH_SHARED", ROOT.parent / "shared"))


def _session_cpu(sid: int, seen: dict[int, float]) -> None:
    """Record the CPU seconds (user + system) of every live process in session ``sid``."""
    tick = os.sysconf("SC_CLK_TCK")
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # field 6 of stat: the session id
            seen[int(d)] = max(seen.get(int(d), 0.0), (int(fields[11]) + int(fields[12])) / tick)


def cli(*args: str, cores: str | None = None) -> tuple[float, float, subprocess.CompletedProcess]:
    """Run ``maskwatch ARGS`` in a new session; returns wall seconds, CPU seconds of the whole process
    tree (the CLI, and for batch Ray's GCS, raylet and workers, sampled every 0.2 s), and the result."""
    cmd = [sys.executable, "-m", "maskwatch", *args]
    if cores is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", cores, *cmd]
    seen: dict[int, float] = {}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    out: dict[str, str] = {}
    reader = __import__("threading").Thread(target=lambda: out.update(zip(("stdout", "stderr"), proc.communicate())))
    reader.start()
    while reader.is_alive():
        _session_cpu(proc.pid, seen)
        reader.join(0.2)
    wall = time.perf_counter() - t0
    result = subprocess.CompletedProcess(cmd, proc.returncode, out.get("stdout", ""), out.get("stderr", ""))
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{result.stderr[-2000:]}")
    return wall, sum(seen.values()), result


def link_photos(dest: Path, n: int) -> int:
    photos = sorted(p for p in (SHARED / "data" / "scenes-dev" / "images").iterdir()
                    if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    k = 0
    while k < n:
        for p in photos:
            os.symlink(p, dest / f"{k:05d}-{p.name}")
            k += 1
    return k


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=1000, help="at least this many photo inputs")
    ap.add_argument("--video", default=str(SHARED / "data" / "video" / "airport-crowd.mp4"))
    ap.add_argument("--chunk-seconds", type=float, default=10.0, help="batch video chunks (26 s clip: 3 chunks)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["images", "video"])
    ap.add_argument("--json", default=None, help="also write the rows as JSON here")
    args = ap.parse_args()

    load0 = open("/proc/loadavg").read().split()[:3]
    work = Path(tempfile.mkdtemp(prefix="maskwatch-batch-bench-"))
    rows = []
    try:
        photos = work / "photos"
        photos.mkdir()
        n = link_photos(photos, args.images)
        cases = []
        if "images" not in args.skip:
            cases.append(("images", str(photos), n))
        if "video" not in args.skip:
            cases.append(("video", args.video, None))
        for what, src, count in cases:
            for cores in ("0", None):
                out = work / f"detect-{what}-{cores}.jsonl"
                wall, cpu, proc = cli("detect", src, "--json", str(out), cores=cores)
                frames = sum(1 for _ in out.open())
                rows.append({"case": what, "run": f"detect (1 process, {'1 core' if cores else '2 cores'})",
                             "inputs": count or 1, "frames": frames, "wall_s": round(wall, 1),
                             "rate": round(frames / wall, 1), "cpu_s": round(cpu, 1),
                             "cpu_ms_per_frame": round(cpu / frames * 1e3, 1), "ray_start_s": None})
                print(json.dumps(rows[-1]), flush=True)
            for workers in (1, 2):
                out = work / f"batch-{what}-{workers}"
                extra = ["--chunk-seconds", str(args.chunk_seconds)] if what == "video" else []
                wall, cpu, proc = cli("batch", src, "-o", str(out), "--workers", str(workers), *extra)
                s = json.loads((out / "_SUCCESS").read_text())["summary"]
                rows.append({"case": what, "run": f"batch --workers {workers}", "inputs": s["inputs"],
                             "frames": s["frames"], "wall_s": round(wall, 1), "rate": s["frames_per_s"],
                             "rate_wall": round(s["frames"] / wall, 1), "cpu_s": round(cpu, 1),
                             "cpu_ms_per_frame": round(cpu / s["frames"] * 1e3, 1),
                             "worker_cpu_ms_per_frame": round(s["worker_cpu_s"] / s["frames"] * 1e3, 1),
                             "driver_cpu_s": s["driver_cpu_s"],
                             "ray_start_s": s["ray_start_s"]})
                print(json.dumps(rows[-1]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"load average before / after: {load0} / {open('/proc/loadavg').read().split()[:3]}")
    print("| input | run | inputs | frames | wall s | frames/s (labelling) | frames/s (wall) | CPU ms / frame, all "
          "processes | CPU ms / frame, in workers | Ray start s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['run']} | {r['inputs']} | {r['frames']} | {r['wall_s']} | {r['rate']} | "
              f"{r.get('rate_wall', r['rate'])} | {r['cpu_ms_per_frame']} | {r.get('worker_cpu_ms_per_frame', '-')} | "
              f"{r['ray_start_s'] if r['ray_start_s'] is not None else '-'} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
