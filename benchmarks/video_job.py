"""End-to-end time of a video job in the web app: upload, analysis, annotated video back.

Starts ``maskwatch serve`` in a subprocess on 127.0.0.1, POSTs the clip to ``/v1/jobs``, polls
``GET /v1/jobs/{id}`` every 0.2 s until it is done, downloads the annotated MP4, and prints the
upload time, the time queued + analysed, the total, and the frames/s of the analysis.

    MASKWATCH_MODELS=../shared/weights/face python benchmarks/video_job.py [CLIP] [--repeats 2]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CLIP = ROOT.parent / "shared" / "data" / "video" / "airport-crowd.mp4"


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clip", nargs="?", default=str(DEFAULT_CLIP))
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    clip = Path(args.clip)
    data = clip.read_bytes()

    port = free_port()
    code = (f"import sys; sys.path.insert(0, {str(ROOT / 'src')!r}); from maskwatch.server import serve; "
            f"serve(host='127.0.0.1', port={port:d}, log_level='warning')")
    server = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the server did not start")
            time.sleep(0.25)
        totals, analysed, fps = [], [], []
        with httpx.Client(base_url=url, timeout=120) as client:
            for k in range(args.repeats):
                t0 = time.perf_counter()
                r = client.post(f"/v1/jobs?name={clip.name}", content=data, headers={"Content-Type": "video/mp4"})
                r.raise_for_status()
                t_up = time.perf_counter() - t0
                job_id = r.json()["id"]
                while True:
                    job = client.get(f"/v1/jobs/{job_id}").json()
                    if job["status"] not in ("queued", "running"):
                        break
                    time.sleep(0.2)
                if job["status"] != "done":
                    raise SystemExit(f"job {job_id}: {job['status']}: {job.get('error')}")
                video = client.get(job["files"]["video.mp4"])
                total = time.perf_counter() - t0
                totals.append(total)
                analysed.append(job["elapsed_s"])
                fps.append(job["frames"] / job["elapsed_s"])
                s = job["result"]["summary"]
                print(f"run {k + 1}: upload {t_up:.2f} s, analysis {job['elapsed_s']:.1f} s "
                      f"({job['frames']} frames, {fps[-1]:.1f} frames/s), total with the video downloaded "
                      f"({len(video.content) / 1e6:.1f} MB) {total:.1f} s; {s['people']} people, "
                      f"compliance {s['compliance_rate']:.0%}, {s['alerts']} alerts", flush=True)
                client.delete(f"/v1/jobs/{job_id}")
        print(f"\n{clip.name} ({len(data) / 1e6:.1f} MB): median end-to-end {statistics.median(totals):.1f} s, "
              f"analysis {statistics.median(analysed):.1f} s ({statistics.median(fps):.1f} frames/s)")
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
