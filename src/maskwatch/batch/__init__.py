"""``maskwatch batch``: label an archive of photos and videos on a Ray cluster (local Ray by default).

The same engine (:class:`~maskwatch.engine.MaskDetector`) and the same result type
(:class:`~maskwatch.results.FrameResult`) as ``maskwatch detect``, spread over a Ray Data actor pool:

- the driver lists the inputs (folders, globs, files, manifests; local paths or object-store URIs),
  skips those already done in the output folder, and cuts long videos into frame ranges
  (:mod:`maskwatch.batch.video`);
- a pool of actors (``--workers``), each holding one engine with ONNX Runtime on one thread, reads,
  decodes and labels the work items in batches (``Dataset.map_batches`` with a callable class);
  Ray restarts an actor that dies and retries its batch;
- the driver stitches video chunks back in order and commits Parquet parts atomically
  (:mod:`maskwatch.batch.output`).

Needs the ``scale`` extra (``pip install "maskwatch[scale]"``); nothing here is imported by
``import maskwatch`` or by the other commands.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from maskwatch._version import __version__
from maskwatch.errors import DependencyError, InputError
from maskwatch.faces.models import sha256_file
from maskwatch.summary import count_keys, count_labels
from maskwatch.wording import count

log = logging.getLogger(__name__)

SCALE_HINT = 'maskwatch batch needs Ray: pip install "maskwatch[scale]"'


@dataclass
class BatchSummary:
    """What a run did: returned by :func:`run`, stored in ``DIR/_SUCCESS`` and printed as one line."""

    output: str
    inputs: int = 0
    skipped: int = 0
    images: int = 0
    videos: int = 0
    frames: int = 0
    faces: int = 0
    labels: dict[str, int] = field(default_factory=dict)
    failed: int = 0
    failed_total: int = 0
    workers: int = 0
    ray_start_s: float = 0.0
    worker_cpu_s: float = 0.0
    driver_cpu_s: float = 0.0
    wall_s: float = 0.0
    images_per_s: float = 0.0
    frames_per_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        labels = ", ".join(f"{v} {k}" for k, v in self.labels.items())
        done = f" ({self.skipped} already done, skipped)" if self.skipped else ""
        return (f"{count(self.inputs, 'input')}{done}: {count(self.images, 'image')}, {count(self.videos, 'video')}, "
                f"{count(self.frames, 'frame')}, {count(self.faces, 'face')} ({labels or 'none'}), "
                f"{self.failed} failed; {self.images_per_s:.1f} images/s, "
                f"{self.frames_per_s:.1f} frames/s with {count(self.workers, 'worker')} in {self.wall_s:.1f} s; "
                f"results in {self.output}")


def require_ray():
    """Import Ray (and Ray Data) or raise :class:`DependencyError` with the install line."""
    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise DependencyError(f"{SCALE_HINT} ({exc.name or 'ray'} is not installed)") from exc
    return ray


def start_ray(address: str | None, workers: int | None, object_store_mb: int | None = 512) -> tuple[bool, float]:
    """Connect to a cluster (``address``) or start Ray in this process; returns (started here, seconds)."""
    ray = require_ray()
    if ray.is_initialized():
        return False, 0.0
    t0 = time.perf_counter()
    common = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    try:
        if address:
            ray.init(address=address, **common)
        else:
            cores = os.cpu_count() or 1
            ray.init(num_cpus=max(cores, workers or 0),
                     object_store_memory=None if not object_store_mb else int(object_store_mb) << 20, **common)
    except ConnectionError as exc:
        raise InputError(f"cannot reach a Ray cluster at {address!r} ({exc}); start one with 'ray start --head' "
                         "or leave --address out to run on this machine.") from exc
    except ValueError as exc:
        raise InputError(f"Ray could not start with these options ({exc}).") from exc
    return True, time.perf_counter() - t0


def _quiet_ray_data(progress: bool) -> None:
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = bool(progress)
    for attr in ("enable_operator_progress_bars", "enable_rich_progress_bars"):
        if hasattr(ctx, attr) and not progress:
            setattr(ctx, attr, False)
    if hasattr(ctx, "print_on_execution_start"):
        ctx.print_on_execution_start = False
    for name in ("ray", "ray.data", "ray.serve", "ray.train", "ray.tune"):
        logging.getLogger(name).setLevel(logging.ERROR)


def run(
    inputs: Sequence[str | Path],
    output: str | Path,
    address: str | None = None,
    workers: int | None = None,
    *,
    model: str | Path | None = None,
    detector: str = "auto",
    detector_model: str | Path | None = None,
    settings=None,
    reclassify_every: int | None = None,
    spec=None,
    chunk_seconds: float = 30.0,
    max_chunks: int = 4,
    batch_size: int = 8,
    part_inputs: int = 500,
    part_seconds: float = 30.0,
    object_store_mb: int | None = 512,
    progress: bool | None = None,
    on_commit: Callable[[BatchSummary], None] | None = None,
) -> BatchSummary:
    """Label every image and video frame of ``inputs`` with a Ray actor pool; results in ``output``.

    Args:
        inputs: folders, globs, image / video files and manifests (``.txt`` of paths, ``.csv`` /
            ``.parquet`` with a ``path`` column); local paths or object-store URIs.
        output: the output folder (new, or one made by an earlier run with the same settings: done
            inputs are skipped).
        address: ``None`` starts Ray in this process; ``"auto"`` or ``"ray://host:10001"`` joins a cluster.
            An already initialised Ray (``ray.init`` by the caller) is used as it is.
        workers: actors in the pool (default: the cluster's CPUs), each with one engine.
        spec: the engine every actor builds (:class:`~maskwatch.spec.EngineSpec`; default: the defaults).
        model, detector, detector_model, settings, reclassify_every: change single fields of ``spec``,
            as for :class:`~maskwatch.engine.MaskDetector`.
        chunk_seconds, max_chunks: video chunk length, and the most chunks one video is cut into.
        batch_size: work items (images or video chunks) per actor call.
        part_inputs, part_seconds: a Parquet part is committed after this many finished inputs or
            seconds, whichever comes first (what a crash can lose).
        object_store_mb: object store size of a Ray started here.
        progress: Ray Data's progress bars (default: when stderr is a terminal).
        on_commit: called with the running summary after each committed part.

    Returns:
        The run's :class:`BatchSummary` (also written to ``output/_SUCCESS``).

    Raises:
        InputError: bad inputs or output folder; DependencyError: Ray is not installed.
    """
    from maskwatch.batch.inputs import resolve_inputs
    from maskwatch.batch.output import Done, OutputDir
    require_ray()
    t_start, cpu_start = time.perf_counter(), time.process_time()
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be >= 1, got {workers}")
    if chunk_seconds <= 0 or max_chunks < 1:
        raise InputError(f"chunks must be > 0 s and at least 1 per video, got {chunk_seconds} s and {max_chunks}")
    from maskwatch.spec import EngineSpec

    spec = (spec or EngineSpec()).changed(settings, model=model, detector=detector, detector_model=detector_model,
                                         reclassify_every=reclassify_every)
    items = resolve_inputs([str(i) for i in inputs])
    config, classifier, run_settings = _engine_config(spec, chunk_seconds, max_chunks)
    classes = classifier.classes
    out = OutputDir(str(output), classes, run_settings)
    out.open()
    started_ray = False
    summary = BatchSummary(output=str(output), inputs=len(items))
    labels: Counter = Counter(dict.fromkeys(count_keys(classes), 0))
    try:
        done = out.completed()
        todo = [i for i in items if i.key not in done]
        done_paths = {k[0] for k in done}
        changed = sum(1 for i in todo if i.source in done_paths)
        if changed:
            log.warning("%d input(s) changed (size or mtime) since they were labelled here; labelling them again "
                        "(their earlier rows stay, with the earlier run_id in sources)", changed)
        summary.skipped = len(items) - len(todo)
        out.clear_success()
        ready: list[Done] = []
        work, chunks_of = _plan(todo, chunk_seconds, max_chunks, out.run_id, ready)
        if work:
            started_ray, summary.ray_start_s = start_ray(address, workers, object_store_mb)
            _quiet_ray_data(sys.stderr.isatty() if progress is None else progress)
            rows = _execute(work, config, workers, batch_size)
        else:
            rows = iter(())
        t_work = time.perf_counter()  # labelling time: from a running Ray to the last commit
        collector = _Collector(out, summary, labels, classes, {i.source: i for i in todo}, chunks_of, on_commit)
        collector.ready = ready
        for row in rows:
            collector.add(row)
            if len(collector.ready) >= part_inputs or (
                    collector.ready and time.perf_counter() - collector.last_commit >= part_seconds):
                collector.commit()
        collector.commit()
        if collector.pending_chunks:  # pragma: no cover - Ray delivers every block or raises
            raise InputError(f"{len(collector.pending_chunks)} video(s) came back incomplete; rerun the same command "
                             "to finish them.")
        elapsed = time.perf_counter() - t_work
        summary.failed_total = out.rebuild_failures()
        summary.wall_s = round(time.perf_counter() - t_start, 3)
        summary.worker_cpu_s = round(summary.worker_cpu_s, 3)
        summary.driver_cpu_s = round(time.process_time() - cpu_start, 3)
        summary.workers = int(workers or _cluster_cpus()) if work else 0
        image_frames = summary.images
        summary.images_per_s = round(image_frames / elapsed, 2) if elapsed > 0 and work else 0.0
        summary.frames_per_s = round(summary.frames / elapsed, 2) if elapsed > 0 and work else 0.0
        summary.labels = dict(labels)
        out.write_success({
            "summary": summary.as_dict(), "settings": run_settings, "run_id": out.run_id,
            "model_card": _model_card(classifier), "address": address or "local",
            "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        })
    finally:
        out.release()
        if started_ray:
            import ray

            ray.shutdown()
    return summary


def _engine_config(spec, chunk_seconds: float, max_chunks: int):
    """What every actor builds (the spec, files pinned), the driver's classifier, and the run's settings record.

    The driver builds the face stage once, as every actor will (the same registry), so that a missing
    file fails here in one line and the run records the backend and file it really used.
    """
    from maskwatch.batch.worker import EngineConfig
    from maskwatch.classify.model import MaskClassifier
    from maskwatch.faces.base import DetectorSettings
    from maskwatch.faces.registry import create_face_detector

    classifier = MaskClassifier(spec.model)
    face = create_face_detector(spec.detector, spec.detector_model, DetectorSettings.from_spec(spec))
    face_file = getattr(face, "model_path", None)
    if face_file is not None and spec.detector in ("auto", "yunet"):
        spec = spec.replace(detector_model=str(face_file))  # every actor loads this very file
    # The bundled model is named by None so that each node loads its own installed copy; a model file
    # given by the user, and the face-detector file, must exist at the same path on every node.
    spec = spec.replace(model=None if spec.model is None else str(classifier.path), threads=1)
    run_settings = {
        "maskwatch": __version__, "model": classifier.info.name, "model_sha256": sha256_file(classifier.path),
        "classes": list(classifier.classes), "detector": face.name,
        "detector_sha256": None if face_file is None else sha256_file(Path(face_file)),
        "detector_settings": {k: v for k, v in spec.to_dict().items() if k not in ("model", "threads")},
        "reclassify_every": spec.reclassify_every,
        "chunk_seconds": float(chunk_seconds), "max_chunks": int(max_chunks),
    }
    return EngineConfig(spec=spec.to_dict()), classifier, run_settings


class _Collector:
    """Turns the actors' rows into finished inputs (stitching video chunks) and commits them in parts."""

    def __init__(self, out, summary: BatchSummary, labels: Counter, classes, by_source, chunks_of, on_commit) -> None:
        self.out, self.summary, self.labels, self.classes = out, summary, labels, classes
        self.by_source, self.chunks_of, self.on_commit = by_source, chunks_of, on_commit
        self.ready: list = []
        self.pending_chunks: dict[str, dict[int, dict]] = {}
        self.seen_units: set[str] = set()
        self.last_commit = time.perf_counter()

    def add(self, row: dict) -> None:
        unit = row["unit"]
        if unit in self.seen_units:  # a retried batch delivered twice: keep the first
            return
        self.seen_units.add(unit)
        self.summary.worker_cpu_s += float(row.get("cpu_s") or 0.0)
        inp = self.by_source[row["source"]]
        if row["kind"] == "image":
            self.ready.append(_image_done(inp, row, self.classes, self.out.run_id))
            return
        parts = self.pending_chunks.setdefault(inp.source, {})
        parts[int(row["chunk"])] = row
        if len(parts) == self.chunks_of[inp.source]:
            self.ready.append(_stitch(inp, [parts[k] for k in sorted(parts)], self.classes, self.out.run_id))
            del self.pending_chunks[inp.source]

    def commit(self) -> None:
        if not self.ready:
            return
        self.out.commit(self.ready)
        failures = []
        summary = self.summary
        for d in self.ready:
            s = d.source
            summary.images += s["kind"] == "image"
            summary.videos += s["kind"] == "video"
            summary.frames += int(s["frames"] or 0)
            summary.faces += int(s["faces"] or 0)
            for c in count_keys(self.classes):
                self.labels[c] += int(s.get(f"n_{c}") or 0)
            if s["status"] != "ok":
                summary.failed += 1
                failures.append({"source": s["source"], "kind": s["kind"], "error": s["error"],
                                 "run_id": self.out.run_id})
        self.out.append_failures(failures)
        summary.labels = dict(self.labels)
        self.ready = []
        self.last_commit = time.perf_counter()
        if self.on_commit is not None:
            self.on_commit(summary)


def _cluster_cpus() -> int:
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def _model_card(classifier) -> dict[str, Any]:
    meta = classifier.describe()
    keep = ("name", "classes", "input", "architecture", "metrics", "test_metrics", "created", "recipe")
    return {k: meta[k] for k in keep if k in meta}


def _plan(todo, chunk_seconds: float, max_chunks: int, run_id: str, ready: list) -> tuple[list[dict], dict[str, int]]:
    """Work items (images, video chunks) for the inputs to do; videos that cannot be opened go to ``ready``."""
    from maskwatch.batch.inputs import is_uri
    from maskwatch.batch.video import VideoProbe, plan_chunks, probe_video
    from maskwatch.errors import MaskwatchError

    work: list[dict] = []
    chunks_of: dict[str, int] = {}
    for k, inp in enumerate(todo):
        base = {"source": inp.source, "kind": inp.kind, "chunk": 0, "n_chunks": 1, "start": 0, "end": -1,
                "expected": 0}
        if inp.kind == "image":
            work.append({**base, "unit": f"{k}"})
            continue
        try:
            probe = VideoProbe(0, 0.0) if is_uri(inp.source) else probe_video(inp.source)
        except MaskwatchError as exc:
            ready.append(_failed_video(inp, str(exc), run_id))
            continue
        plan = plan_chunks(probe, chunk_seconds, max_chunks)
        chunks_of[inp.source] = len(plan)
        for c, (s, e) in enumerate(plan):
            work.append({**base, "unit": f"{k}:{c}", "chunk": c, "n_chunks": len(plan), "start": s,
                         "end": -1 if e is None else e, "expected": probe.frames})
    return work, chunks_of


def _execute(work: list[dict], config, workers: int | None, batch_size: int):
    """The Ray Data pipeline: work items -> actor pool -> result rows (streamed, any order)."""
    import ray
    import ray.data

    from maskwatch.batch.worker import Labeller

    n_workers = int(workers or _cluster_cpus())
    cpus = _cluster_cpus()
    per_actor = 1.0 if n_workers <= cpus else round(cpus / n_workers, 3)
    chunks = [w for w in work if w["kind"] == "video"]
    images = [w for w in work if w["kind"] == "image"]
    parts = []
    # Long work first; one video chunk per block, images in blocks of batch_size, so the pool shares them out.
    if chunks:
        parts.append(ray.data.from_items(chunks, override_num_blocks=len(chunks)))
    if images:
        parts.append(ray.data.from_items(images, override_num_blocks=max(1, math.ceil(len(images) / batch_size))))
    ds = parts[0] if len(parts) == 1 else parts[0].union(*parts[1:])
    labelled = ds.map_batches(Labeller, fn_constructor_kwargs={"config": config}, batch_size=batch_size,
                              concurrency=n_workers, num_cpus=per_actor)
    return labelled.iter_rows()


def _image_done(inp, row: dict, classes, run_id: str):
    from maskwatch.batch.output import Done

    frames = json.loads(row["payload"] or "[]")
    return Done(_source_row(inp, row, frames, classes, run_id, row["error"]), frames)


def _failed_video(inp, error: str, run_id: str):
    from maskwatch.batch.output import Done

    return Done({"source": inp.source, "kind": inp.kind, "size": inp.size, "mtime_ns": inp.mtime_ns,
                 "frames": 0, "faces": 0, "status": "failed", "error": error, "run_id": run_id}, [])


def _stitch(inp, rows: list[dict], classes, run_id: str):
    """Join a video's chunks in frame order; track ids renumbered to stay unique within the video."""
    from maskwatch.batch.output import Done

    frames: list[dict] = []
    offset = 0
    error = None
    for row in rows:
        chunk_frames = json.loads(row["payload"] or "[]")
        top = 0
        for fr in chunk_frames:
            for f in fr["faces"]:
                if f["track_id"] is not None:
                    top = max(top, f["track_id"])
                    f["track_id"] += offset
        offset += top
        frames.extend(chunk_frames)
        if row["status"] != "ok" and error is None:
            error = row["error"]
    merged = dict(rows[0])
    merged["fps"] = next((r["fps"] for r in rows if r.get("fps")), None)
    src = _source_row(inp, merged, frames, classes, run_id, error)
    src["chunks"] = len(rows)
    src["tracks"] = len({f["track_id"] for fr in frames for f in fr["faces"] if f["track_id"] is not None})
    return Done(src, frames)


def _source_row(inp, row: dict, frames: list[dict], classes, run_id: str, error: str | None) -> dict[str, Any]:
    counts = count_labels((f for fr in frames for f in fr["faces"]), classes)
    return {
        "source": inp.source, "kind": inp.kind, "size": inp.size, "mtime_ns": inp.mtime_ns,
        "width": frames[0]["width"] if frames else None, "height": frames[0]["height"] if frames else None,
        "fps": row.get("fps"), "frames": len(frames), "chunks": None, "faces": sum(counts.values()),
        **{f"n_{k}": v for k, v in counts.items()}, "tracks": None,
        "status": "ok" if error is None else "failed", "error": error, "run_id": run_id,
    }
