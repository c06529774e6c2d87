"""What the event log and the alert webhook cost the frame loop: frames/s with and without them.

Runs the same clip through :func:`maskwatch.run` in one process, with one engine, several times in
turn (so a busy machine slows every variant alike):

* ``plain``: the sinks ``maskwatch detect`` always has (statistics, compliance report, alerts log);
* ``--db``: plus the SQLite event log (a new file each time);
* ``dead webhook``: plus alerts POSTed to a receiver on 127.0.0.1 that accepts connections and
  never answers (each attempt runs into its timeout).

Prints frames/s per variant (median of the repeats), the CPU time this process spent per frame (all
its threads: the event log's writer and the webhook sender included; this is what other load on
the machine disturbs least), events written and events/s, and the event log's capacity.

    MASKWATCH_MODELS=../shared/weights/face python benchmarks/analytics_overhead.py [CLIP] [--repeats 3] [--frames N]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import maskwatch  # noqa: E402
from maskwatch.alerts import Alerts  # noqa: E402
from maskwatch.analytics import VideoStats  # noqa: E402
from maskwatch.events import EventLog  # noqa: E402
from maskwatch.report import ComplianceReport  # noqa: E402

DEFAULT_CLIP = ROOT.parent / "shared" / "data" / "video" / "airport-crowd.mp4"


class Limit:
    """Sink that ends a run after ``n`` frames."""

    def __init__(self, n: int) -> None:
        self.n, self.seen = n, 0

    def write(self, result) -> None:
        self.seen += 1
        if self.seen >= self.n:
            from maskwatch.runloop import StopRun

            raise StopRun

    def close(self) -> None:
        pass


def log_capacity(folder: Path, n: int = 50_000) -> float:
    """Events per second the event log takes in when nothing else runs (synthetic events)."""
    from maskwatch.results import FrameResult, SourceInfo
    from maskwatch.track import TrackEvent

    log = EventLog(folder / "capacity.db")
    info = SourceInfo("camera", "camera:0", 640, 360)
    t0 = time.perf_counter()
    for k in range(n // 10):
        r = FrameResult("camera:0", 640, 360, frame=k, source_info=info)
        r.events = [TrackEvent("label_changed", "camera:0", k * 10 + j, k, k / 25, "without_mask", "with_mask",
                               (1, 2, 30, 40), {"with_mask": 0.2, "without_mask": 0.8}) for j in range(10)]
        log.write(r)
    log.close()
    return log.events_written / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clip", nargs="?", default=str(DEFAULT_CLIP))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--alert-after", type=float, default=1.0)
    ap.add_argument("--frames", type=int, default=None, help="stop each run after N frames (default: whole clip)")
    args = ap.parse_args()

    listener = socket.socket()  # the dead receiver: accepts, never answers
    listener.bind(("127.0.0.1", 0))
    listener.listen(256)
    dead_url = f"http://127.0.0.1:{listener.getsockname()[1]}/hook"

    engine = maskwatch.MaskDetector()
    list(engine.process([args.clip]))  # warm up (model load, caches), not timed
    opts = {"alert_after_s": args.alert_after}
    results: dict[str, list[float]] = {"plain": [], "--db": [], "dead webhook": []}
    walls: dict[str, list[float]] = {v: [] for v in results}
    cpu: dict[str, list[float]] = {v: [] for v in results}
    events: list[tuple[int, float]] = []
    alerts_info = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.repeats):
            for variant in results:
                base = [VideoStats(), ComplianceReport()]
                alerts = Alerts(dead_url, timeout=3.0) if variant == "dead webhook" else Alerts()
                log = EventLog(Path(tmp) / f"events{k}.db") if variant == "--db" else None
                sinks = [*base, alerts, *([log] if log else []), *([Limit(args.frames)] if args.frames else [])]
                t0, c0 = time.perf_counter(), time.process_time()
                summary = maskwatch.run([args.clip], sinks, engine, tracker_options=opts, progress=False)
                elapsed = time.perf_counter() - t0  # with closing: the event log's last commit, the webhook's end
                cpu[variant].append((time.process_time() - c0) * 1e3 / summary.frames)  # every thread of ours
                results[variant].append(summary.frames / summary.elapsed_s)
                walls[variant].append(elapsed)
                if log:
                    events.append((log.events_written, elapsed))
                if variant == "dead webhook":
                    s = alerts.sender
                    alerts_info.append((len(alerts.alerts), s.sent, s.failed, s.dropped))
                print(f"run {k + 1} {variant:>13}: {summary.frames} frames, {summary.fps:6.1f} frames/s, "
                      f"{elapsed:.1f} s with closing, {cpu[variant][-1]:.1f} CPU ms/frame", flush=True)
        capacity = log_capacity(Path(tmp))
    listener.close()
    print()
    print(f"clip: {args.clip}, {args.repeats} runs each, median frames/s of the frame loop; median wall time "
          "including closing every sink")
    for variant, fps in results.items():
        print(f"  {variant:>13}: {statistics.median(fps):6.1f} frames/s, {statistics.median(walls[variant]):5.1f} s, "
              f"{statistics.median(cpu[variant]):5.1f} CPU ms/frame (runs: {', '.join(f'{x:.1f}' for x in fps)})")
    n, t = events[0]
    print(f"  event log: {n} events per run, {statistics.median(e / s for e, s in events):.0f} events/s written "
          "alongside detection")
    print(f"  event log capacity: {capacity:,.0f} events/s (synthetic label_changed events, nothing else running)")
    a = alerts_info[0]
    print(f"  dead webhook: {a[0]} alerts per run; sent {a[1]}, failed {a[2]}, dropped {a[3]}")


if __name__ == "__main__":
    main()
