"""How many events per second the event log writes, into SQLite and into PostgreSQL.

Feeds ``EventLog.write`` from N threads (one per camera, as ``watch`` does) with synthetic track
events, and times from the first write to the end of ``close()`` (everything committed). Without
``--pg URL`` a throw-away PostgreSQL server is started from Debian's package (as the tests do).

Usage: python benchmarks/events_throughput.py [--events 20000] [--cameras 4] [--pg postgresql://...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def feed(target, events: int, cameras: int) -> float:
    from maskwatch.events import EventLog
    from maskwatch.results import FrameResult, SourceInfo
    from maskwatch.track import TrackEvent

    log = EventLog(target, command="throughput benchmark")
    per_camera = events // cameras

    def camera(k: int) -> None:
        name = f"rtsp://cam{k}/live"
        info = SourceInfo("stream", name, 640, 480)
        for f in range(per_camera):
            ev = TrackEvent("track_started", name, f, f, f / 10, "with_mask", box=(1, 2, 30, 40),
                            probs={"with_mask": 0.9, "without_mask": 0.1})
            log.write(FrameResult(name, 640, 480, [], frame=f, time_s=f / 10, events=[ev], source_info=info))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=camera, args=(k,)) for k in range(cameras)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    took = time.perf_counter() - t0
    assert log.events_written == per_camera * cameras and log.dropped == 0, (log.events_written, log.dropped)
    return per_camera * cameras / took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--cameras", type=int, default=4)
    ap.add_argument("--pg", default=None, help="a postgresql:// URL (default: start a throw-away server)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        rate = feed(Path(d) / "site.db", a.events, a.cameras)
        print(f"SQLite (local file):        {rate:,.0f} events/s ({a.events} events, {a.cameras} threads)")
    if a.pg:
        rate = feed(a.pg, a.events, a.cameras)
    else:
        sys.path.insert(0, str(ROOT / "tests"))
        import postgres

        gen = postgres.postgres_server.__wrapped__()
        try:
            url = next(gen)
        except BaseException as exc:  # noqa: BLE001 - pytest.skip without pytest running
            print(f"PostgreSQL: not measured ({exc})")
            return
        try:
            import psycopg

            name = "bench_" + uuid.uuid4().hex[:8]
            with psycopg.connect(url, autocommit=True) as con:
                con.execute(f"CREATE DATABASE {name}")
            rate = feed(url.rsplit("/", 1)[0] + "/" + name, a.events, a.cameras)
        finally:
            for _ in gen:
                pass
    print(f"PostgreSQL (127.0.0.1):     {rate:,.0f} events/s ({a.events} events, {a.cameras} threads)")


if __name__ == "__main__":
    main()
