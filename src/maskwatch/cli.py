"""The ``maskwatch`` command line: a thin front over the engine (:mod:`maskwatch.engine`).

Results go to stdout, short messages to stderr; every error a user can cause ends in one line
``maskwatch: error: ...`` and a non-zero exit status, never a traceback (set ``MASKWATCH_DEBUG=1``
to see one).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import click

from maskwatch._version import __version__
from maskwatch.defaults import MAX_UPLOAD_MB
from maskwatch.errors import InputError, MaskwatchError
from maskwatch.options import SERVE_DEFAULTS, spec_from_options, spec_options
from maskwatch.privacy import BLUR_CHOICES
from maskwatch.sinks.base import Sink
from maskwatch.spec import EngineSpec
from maskwatch.summary import UNCERTAIN, Summary, count_labels
from maskwatch.track import EVENT_KINDS
from maskwatch.train.recipe import PRESETS  # plain settings, no TensorFlow
from maskwatch.wording import count

log = logging.getLogger("maskwatch")



def _setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("maskwatch: %(message)s"))
    root = logging.getLogger("maskwatch")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def _engine(spec: EngineSpec):
    from maskwatch.engine import MaskDetector

    return MaskDetector(spec=spec)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="maskwatch")
@click.option("-v", "--verbose", count=True, help="More messages on stderr (-vv for debug).")
def cli(verbose: int) -> None:
    """Find every face in photos, videos and cameras: with_mask, without_mask, mask_incorrect or uncertain."""
    _setup_logging(verbose)


def _check_outputs(outputs: dict[str, str | Path | None], may_exist: tuple[str, ...] = ()) -> None:
    """Refuse, before anything is created, two outputs on one path and files that already exist
    (except those in ``may_exist``, which are appended to)."""
    seen: dict[Path, str] = {}
    for opt, path in outputs.items():
        if path is None or str(path) == "-":
            continue
        key = Path(path).expanduser().resolve()
        if key in seen:
            raise InputError(f"{seen[key]} and {opt} both name {path}; give each output its own file.")
        seen[key] = opt
        if opt not in may_exist and Path(path).exists():
            raise InputError(f"{path}: already exists; choose a new output file for {opt} "
                             "(outputs never overwrite).")


def _db_label(db_path: str) -> str:
    """``--db`` as messages show it (a URL without its password)."""
    from maskwatch.events.backends import describe

    return describe(db_path)


def _quiet_broken_pipe() -> None:
    """The reader of stdout went away (``| head``): stop writing there, quietly."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


class _ImageLines(Sink):
    """Sink: one line per still image on stdout (faces per count key, as the run's summary counts them)."""

    def __init__(self, classes: tuple[str, ...]) -> None:
        self.classes = classes

    def write(self, result) -> None:
        if result.frame is None:
            c = count_labels(result.faces, self.classes)
            per = ", ".join(f"{v} {k}" for k, v in c.items() if v or k != UNCERTAIN)
            click.echo(f"{result.source}: {count(len(result.faces), 'face')}, {per}")


@cli.command()
@click.argument("sources", nargs=-1, required=True)
@spec_options("model", "face")
@click.option("--json", "json_path", default=None, help="Write JSON Lines here ('-' = stdout, then nothing else).")
@click.option("--csv", "csv_path", default=None, help="Write one CSV row per face here ('-' = stdout).")
@click.option("--parquet", "parquet_path", default=None,
              help="Write one Parquet row per face here, complete only when the run is (needs the scale extra).")
@click.option("--save", is_flag=True, help="Save annotated images / videos into a new run folder.")
@click.option("--project", type=click.Path(path_type=Path), default=Path("runs"), show_default=True,
              help="Folder for run folders.")
@click.option("--name", default="exp", show_default=True, help="Run folder name (exp, exp2, ...).")
@click.option("--show", is_flag=True, help="Show a live window (needs a display and GUI OpenCV).")
@click.option("--vid-stride", type=click.IntRange(1), default=1, show_default=True, help="Use every N-th video frame.")
@spec_options("tracking", "mirror")
@click.option("--no-track", is_flag=True, help="Classify every face in every video frame independently.")
@click.option("--blur", type=click.Choice(BLUR_CHOICES), default="none",
              show_default=True, help="Blur these faces in saved images and videos.")
@click.option("--db", "db_path", default=None,
              help="Record face tracks and their events in this event log: an SQLite file (created or appended "
                   "to) or a postgresql://user@host:5432/dbname URL.")
@click.option("--retention-days", type=float, default=None,
              help="With --db: first delete what the event log holds from more than N days ago (0 < N <= 36500).")
@spec_options("alerts")
@click.option("--alert-webhook", default=None, help="POST each alert as JSON to this http(s) URL.")
@click.option("--alert-thumbnails", is_flag=True, help="Include a small face picture in webhook alerts.")
@click.option("--report", "report", is_flag=True,
              help="Write summary.json, timeline.csv and timeline.png into the run folder.")
def detect(sources, json_path, csv_path, parquet_path, save, project, name, show, vid_stride, no_track, blur, db_path,
           retention_days, alert_webhook, alert_thumbnails, report, **options) -> None:
    """Find and label every face in SOURCES: images, folders, globs, videos, camera indices (0), URLs."""
    from maskwatch.alerts import Alerts
    from maskwatch.io.sources import resolve_sources
    from maskwatch.report import ComplianceReport
    from maskwatch.runloop import run
    from maskwatch.runs import new_run_dir
    from maskwatch.sinks.files import ParquetWriter, make_writer
    from maskwatch.sinks.media import LiveWindow, MediaSaver

    if json_path == "-" and csv_path == "-":
        raise InputError("--json - and --csv - both want stdout; send one of them to a file.")
    if retention_days is not None and db_path is None:
        raise InputError("--retention-days prunes the event log: give it one with --db PATH.")
    db_file = db_path  # a file path, checked against the other outputs (a URL is not)
    if db_path is not None:
        from maskwatch.events.backends import backend_for
        from maskwatch.events.store import check_retention_days

        check_retention_days(retention_days)
        if backend_for(db_path).name != "sqlite":  # an unsupported URL fails here, before the model loads
            db_file = None
    _check_outputs({"--json": json_path, "--csv": csv_path, "--parquet": parquet_path, "--db": db_file},
                   may_exist=("--db",))
    spec = spec_from_options(options)
    resolved = resolve_sources(sources)
    engine = _engine(spec)
    quiet_stdout = "-" in (json_path, csv_path)
    window = LiveWindow() if show else None
    alerts = Alerts(alert_webhook, thumbnails=alert_thumbnails) if alert_webhook else Alerts()
    sinks: list = []
    try:
        if db_path is not None:
            from maskwatch.events import EventLog

            sinks.append(EventLog(db_path, command=" ".join(["maskwatch", *sys.argv[1:]]),
                                  retention_days=retention_days))
        sinks += [make_writer(p, k) for p, k in ((json_path, "json"), (csv_path, "csv")) if p]
        if parquet_path:
            sinks.append(ParquetWriter(parquet_path, engine.classes))
        run_dir = new_run_dir(project, "detect", name) if (save or report) else None
        if run_dir and save:
            sinks.append(MediaSaver(run_dir, blur=blur))
    except BaseException:
        for sink in sinks:
            sink.close()
        alerts.close()
        raise
    summary_sink = Summary(engine.classes, spec.min_track_frames)
    compliance = ComplianceReport(spec.min_track_frames, summary=summary_sink)
    sinks += [summary_sink, compliance, alerts]
    if not quiet_stdout:
        sinks.append(_ImageLines(engine.classes))
    if window:
        sinks.append(window)  # last: its q / Esc ends the run after every other sink had the frame

    def on_error(exc: MaskwatchError) -> None:
        click.echo(f"maskwatch: skipped {exc}", err=True)

    try:
        summary = run(resolved, sinks, engine, vid_stride=vid_stride, track=not no_track, on_error=on_error)
    except BrokenPipeError:
        _quiet_broken_pipe()
        return
    if report and run_dir:
        compliance.save(run_dir)
    try:
        if not quiet_stdout:
            videos = summary_sink.videos()
            for s in videos:
                click.echo(s.line())
            if videos and not no_track:
                click.echo(compliance.text())
    except BrokenPipeError:
        _quiet_broken_pipe()
        return
    if alerts.alerts:
        click.echo(f"maskwatch: {count(len(alerts.alerts), 'unmasked alert')}"
                   + (f"; webhook: {alerts.sender.sent} sent, {alerts.sender.failed} failed, "
                      f"{alerts.sender.dropped} dropped" if alerts.sender else ""), err=True)
    click.echo(f"maskwatch: {count(summary.frames, 'frame')} in {summary.elapsed_s:.1f} s ({summary.fps:.1f} frames/s)"
               + (f", results in {run_dir}" if run_dir else "")
               + (f", events in {_db_label(db_path)}" if db_path else ""), err=True)
    if summary.signal is not None:
        how = "interrupted (SIGINT)" if summary.signal_name == "SIGINT" else f"stopped by {summary.signal_name}"
        click.echo(f"maskwatch: {how} after {count(summary.frames, 'frame')}; every output was closed", err=True)
        sys.exit(128 + summary.signal)
    if summary.failures:
        click.echo(f"maskwatch: {count(len(summary.failures), 'input')} could not be read", err=True)
        sys.exit(1)


@cli.command()
@click.option("--db", "db_path", required=True,
              help="The event log (from detect --db): an SQLite file (opened read-only) or a postgresql:// URL.")
@click.option("--since", default=None,
              help="Only events at or after this UTC time (2026-05-01T08:00) or age (30m, 2h, 7d).")
@click.option("--source", default=None, help="Only this source (a path, URL or camera:N; a part of one matches).")
@click.option("--kind", type=click.Choice(EVENT_KINDS),
              default=None, help="Only events of this kind.")
@click.option("--limit", type=click.IntRange(1, 2 ** 63 - 1), default=None,
              help="Only the newest N events (still listed oldest first).")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines, one event per line.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header row.")
def events(db_path, since, source, kind, limit, as_json, as_csv) -> None:
    """Print the events an event log recorded (a table; --json or --csv for programs).

    The log is only read, never changed: a file the user may read but not write works.
    """
    import csv as csv_mod

    from maskwatch.events import format_table, query_events
    from maskwatch.events.store import EVENT_COLUMNS

    if as_json and as_csv:
        raise InputError("--json and --csv both print to stdout; choose one.")
    rows = query_events(db_path, since=since, source=source, kind=kind, limit=limit)
    try:
        if as_json:
            for r in rows:
                click.echo(json.dumps(r, ensure_ascii=False))
        elif as_csv:
            w = csv_mod.writer(sys.stdout)
            w.writerow(EVENT_COLUMNS)
            for r in rows:
                w.writerow([json.dumps(r[c]) if isinstance(r[c], (list, dict)) else ("" if r[c] is None else r[c])
                            for c in EVENT_COLUMNS])
        else:
            click.echo(format_table(rows))
            click.echo(count(len(rows), "event"), err=True)
    except BrokenPipeError:
        _quiet_broken_pipe()


@cli.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--model", "-m", type=click.Path(path_type=Path), default=None,
              help="maskwatch .onnx classifier (default: the bundled model).")
@click.option("--json", "json_path", default=None, help="Write JSON Lines here ('-' = stdout, then nothing else).")
@click.option("--csv", "csv_path", default=None, help="Write CSV here ('-' = stdout).")
@click.option("--batch-size", type=click.IntRange(1, 1024), default=32, show_default=True)
@spec_options("mirror")
def classify(inputs, model, json_path, csv_path, batch_size, **options) -> None:
    """Label each image in INPUTS (files, folders, globs) as one face crop, without face detection."""
    from maskwatch.classify.model import MaskClassifier
    from maskwatch.io.images import decode_image
    from maskwatch.io.sources import resolve_sources
    from maskwatch.io.writers import make_writer

    if json_path == "-" and csv_path == "-":
        raise InputError("--json - and --csv - both want stdout; send one of them to a file.")
    sources = resolve_sources(inputs)
    images = [s for s in sources if s.kind == "image"]
    if not images:
        raise InputError("classify takes images (files, folders or globs of images), not videos or cameras.")
    mirror = spec_from_options(options).mirror_photos
    clf = MaskClassifier(model)
    writers = [make_writer(p, k, crops=True) for p, k in ((json_path, "json"), (csv_path, "csv")) if p]
    quiet_stdout = "-" in (json_path, csv_path)
    failures = 0
    try:
        for start in range(0, len(images), batch_size):
            crops, names = [], []
            for s in images[start:start + batch_size]:
                try:
                    crops.append(decode_image(s.target))
                    names.append(s.target)
                except MaskwatchError as exc:
                    if len(images) == 1:  # one input: its error is the command's error (exit 2), as in detect
                        raise
                    failures += 1
                    click.echo(f"maskwatch: skipped {exc}", err=True)
            for r in clf.classify(crops, names, mirror=mirror):
                for w in writers:
                    w.write(r)
                if not quiet_stdout:
                    click.echo(f"{r.source}\t{r.label}\t{r.score:.4f}")
    finally:
        for w in writers:
            w.close()
    if failures:
        click.echo(f"maskwatch: {count(failures, 'image')} could not be read", err=True)
        sys.exit(1)


@cli.command()
@click.argument("data_dir", type=click.Path(path_type=Path))
@click.option("--recipe", type=click.Choice(sorted(PRESETS, key=lambda n: n != "default")), default="default",
              show_default=True,
              help="default: article + low-res/brightness augmentation on detector-cropped faces; "
                   "article: the tutorial's recipe as published.")
@click.option("--epochs", type=click.IntRange(1), default=None)
@click.option("--lr", type=click.FloatRange(0, 1, min_open=True), default=None, help="Adam learning rate.")
@click.option("--batch-size", type=click.IntRange(1), default=None)
@click.option("--crop-faces/--no-crop-faces", default=None, help="Cut training images to their largest face.")
@click.option("--margin", type=click.FloatRange(0, 1), default=None,
              help="Margin around a face box when cropping, as a fraction of the box (stored in the model).")
@click.option("--seed", type=int, default=None)
@click.option("--weights", type=click.Path(path_type=Path), default=None,
              help="MobileNetV2 ImageNet weights (*_no_top.weights.h5); default: download Keras' weights.")
@spec_options("detector", "detector_model")
@click.option("--project", type=click.Path(path_type=Path), default=Path("runs"), show_default=True)
@click.option("--name", default="exp", show_default=True)
@click.option("--resume", type=click.Path(path_type=Path), default=None, help="Continue an interrupted run folder.")
@click.option("--limit-per-class", type=click.IntRange(1), default=None, help="Use at most N images per class.")
@click.option("--scenes", type=click.Path(path_type=Path), multiple=True,
              help="Also train on the annotated faces of this scene dataset (YOLO / Pascal VOC; repeatable); "
                   "mask_incorrect faces add a third class.")
@click.option("--scene-splits", type=click.Path(path_type=Path), multiple=True,
              help="Folder with the scene dataset's train.txt / val.txt image lists (e.g. docs/scenes-kaggle), "
                   "one per --scenes, in the same order.")
@click.option("--feature-views", type=click.IntRange(0), default=None,
              help="Train the head on frozen-base features cached once: N views per image (the crop, then "
                   "N-1 augmented draws); much faster, less augmentation. 0: the full pipeline every epoch.")
@click.option("--finetune-epochs", type=click.IntRange(0), default=None,
              help="With --feature-views: after the head, train MobileNetV2's last block and final 1x1 convolution "
                   "with it for N more epochs at a tenth of the learning rate (kept only if validation loss drops).")
@click.option("--input-size", type=click.IntRange(32, 640), default=None,
              help="Classifier input side in pixels (default 224; 128 is ~3x faster per face; stored in the model).")
@click.option("--synthetic-incorrect", type=click.IntRange(0), default=None,
              help="Add up to N synthetic mask_incorrect training faces: mask templates worn under the nose or on "
                   "the chin of unmasked training faces ($MASKWATCH_MASK_TEMPLATES, default "
                   "../shared/data/mask-templates). Training only; never validation or test.")
def train(data_dir, recipe, epochs, lr, batch_size, crop_faces, margin, seed, weights, project, name, resume,
          limit_per_class, scenes, scene_splits, feature_views, finetune_epochs, input_size, synthetic_incorrect,
          **options) -> None:
    """Audit DATA_DIR (one folder per class), split it, train, test and export a classifier."""
    from maskwatch.train.recipe import get_recipe
    from maskwatch.train.trainer import train as run_training

    spec = spec_from_options(options)
    logging.getLogger("maskwatch").setLevel(min(logging.getLogger("maskwatch").level, logging.INFO))
    r = get_recipe(recipe).with_overrides(epochs=epochs, lr=lr, batch_size=batch_size, crop_faces=crop_faces,
                                          margin=margin, seed=seed, input_size=input_size)
    if synthetic_incorrect:
        r = r.with_overrides(extra={**r.extra, "synthetic_incorrect": synthetic_incorrect})
    if len(scenes) != len(scene_splits):
        raise InputError(f"{len(scenes)} --scenes but {len(scene_splits)} --scene-splits: each scene dataset needs "
                         "its own folder of train.txt / val.txt image lists (e.g. docs/scenes-kaggle), so that "
                         "its test photos stay unseen.")
    if feature_views is not None:
        r = r.with_overrides(extra={**r.extra, "feature_views": feature_views})
    if finetune_epochs:
        if not int(r.extra.get("feature_views", 0) or 0):
            raise InputError("--finetune-epochs trains on cached features: give --feature-views N (e.g. 2) too.")
        r = r.with_overrides(extra={**r.extra, "finetune_epochs": finetune_epochs})
    res = run_training(data_dir, r, runs_root=project, name=name, base_weights=weights,
                       detector_backend=spec.detector, detector_model=spec.detector_model, resume=resume,
                       limit_per_class=limit_per_class, scenes=list(scenes) or None,
                       scene_splits=list(scene_splits) or None)
    m = res.test_metrics
    if m:
        from maskwatch.evaluate.classification import format_metrics

        click.echo(format_metrics(m))
    click.echo(f"model: {res.model_path}")
    click.echo(f"run folder: {res.run_dir}")


@cli.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--split-file", type=click.Path(path_type=Path), default=None,
              help="Evaluate only the files listed: crop data 'label<TAB>path' lines (a run's splits/test.txt), "
                   "scene data one image path a line (docs/scenes-kaggle/val.txt).")
@click.option("--score-floor", type=click.FloatRange(0, 1), default=None,
              help="Scene data: face score from which faces are ranked for AP (default 0.05); "
                   "--face-threshold sets the operating point.")
@spec_options("face", "mirror")
@click.option("--project", type=click.Path(path_type=Path), default=Path("runs"), show_default=True)
@click.option("--name", default="exp", show_default=True)
@click.option("--json", "json_path", default=None,
              help="Also write the metrics as JSON here ('-': stdout, the text report then goes to stderr).")
def evaluate(model, data, split_file, score_floor, project, name, json_path, **options) -> None:
    """Score MODEL on DATA: a crop dataset (class folders) or a scene dataset (YOLO or Pascal VOC boxes)."""
    from maskwatch.evaluate.runner import evaluate_path
    from maskwatch.faces.base import DetectorSettings

    _check_outputs({"--json": json_path})  # refused before the evaluation runs
    spec = spec_from_options(options)
    out = evaluate_path(model, data, split_file=split_file, project=project, name=name,
                        detector=spec.detector, detector_model=spec.detector_model,
                        settings=DetectorSettings.from_spec(spec), score_floor=score_floor,
                        mirror=spec.mirror_photos)
    to_stderr = json_path == "-"
    click.echo(out.text, err=to_stderr)
    click.echo(f"report: {out.run_dir}", err=to_stderr)
    if json_path:
        from maskwatch.evaluate.runner import metrics_json
        from maskwatch.sinks.files import open_output

        fh, owned = open_output(json_path)
        fh.write(metrics_json(out.metrics) + "\n")
        if owned:
            fh.close()


@cli.command()
@click.argument("source", required=False)
@spec_options("model", "face")
@click.option("--frames", type=click.IntRange(0), default=300, show_default=True,
              help="Frames to time; 0: the whole video (the fair comparison with --baseline).")
@click.option("--baseline/--no-baseline", default=False,
              help="Also time the classic tutorial pipeline (res10 SSD + Keras predict; needs [train] and the "
                   "res10 files in $MASKWATCH_MODELS or ../shared/weights/face).")
@spec_options("tracking")
@click.option("--json", "json_path", default=None, help="Also write the numbers as JSON here.")
def benchmark(source, frames, baseline, json_path, **options) -> None:
    """Frames/s end to end and milliseconds per stage on a video or folder (SOURCE)."""
    from maskwatch.benchmark import format_table, run_benchmark

    _check_outputs({"--json": json_path})  # an existing file is refused now, not after the whole run
    spec = spec_from_options(options)
    rows = run_benchmark(source, frames=frames, baseline=baseline, reclassify_every=spec.reclassify_every,
                         reclassify_stable_every=spec.reclassify_stable_every,
                         engine_factory=lambda **kw: _engine(spec.replace(**kw)))
    click.echo(format_table(rows))
    if json_path:
        from maskwatch.io.writers import open_output

        fh, owned = open_output(json_path)
        fh.write(json.dumps(rows, indent=2) + "\n")
        if owned:
            fh.close()


@cli.group()
def models() -> None:
    """Model files: show a model card, fetch the YuNet face detector."""


@models.command("info")
@click.argument("model", type=click.Path(path_type=Path), required=False)
def models_info(model) -> None:
    """Print what a maskwatch model file says about itself (default: the bundled model), and the effective
    engine spec (defaults changed by MASKWATCH_* variables) with the face backends on offer."""
    from maskwatch.classify.model import MaskClassifier
    from maskwatch.faces.registry import backends

    card = MaskClassifier(model).describe()
    spec = EngineSpec.from_env(model=None if model is None else str(model))
    card["engine"] = {"spec": spec.to_dict(), "changed_from_defaults": spec.differences(),
                      "face_backends": {name: b.help for name, b in backends().items()}}
    click.echo(json.dumps(card, indent=2))


@models.command("fetch")
@click.option("--dest", type=click.Path(path_type=Path), default=None, help="Folder (default: the user cache).")
def models_fetch(dest) -> None:
    """Download the YuNet face detector from OpenCV's model zoo (sha256-checked).

    A copy ships inside the package and is used by default, so this is only needed for a copy of your own.
    """
    from maskwatch.errors import ModelError
    from maskwatch.faces.models import BUNDLED_DIR, YUNET_FILENAME, fetch_yunet

    bundled = BUNDLED_DIR / YUNET_FILENAME
    try:
        path = fetch_yunet(dest)
    except ModelError as exc:
        if dest is not None or not bundled.is_file() or not isinstance(exc.__cause__, OSError):
            raise
        click.echo(f"maskwatch: nothing downloaded ({exc.__cause__}), and nothing is missing: the YuNet face "
                   "detector is bundled with maskwatch and used by default", err=True)
        path = bundled
    click.echo(str(path))


@cli.command()
@click.option("--host", default=None, help="Address to listen on (MASKWATCH_HOST)  [default: 127.0.0.1]")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="(MASKWATCH_PORT)  [default: 8000]")
@spec_options("model", "face", "mirror", defaults=SERVE_DEFAULTS)
@click.option("--max-upload-mb", type=click.FloatRange(0.01), default=None,
              help=f"Photo upload limit (MASKWATCH_MAX_UPLOAD_MB)  [default: {MAX_UPLOAD_MB:g}]")
@click.option("--db", "db_path", default=None,
              help="Record live camera sessions and video jobs in this event log: an SQLite file or a "
                   "postgresql:// URL (MASKWATCH_DB).")
def serve(host, port, max_upload_mb, db_path, **options) -> None:
    """Start the web app and HTTP API (page at /, API docs at /docs)."""
    from maskwatch.faces.base import DetectorSettings

    spec = spec_from_options(options, base=EngineSpec.from_env(base=EngineSpec(**SERVE_DEFAULTS)))
    if db_path is not None:
        from maskwatch.events import connect

        connect(db_path).close()  # a bad path fails here, in one line, before the server starts
    try:
        from maskwatch.server import serve as run_server
    except ImportError as exc:
        raise MaskwatchError(
            f'the web app needs the serve extra: pip install "maskwatch[serve]" ({exc.name} missing)') from exc
    try:
        run_server(host=host, port=port, model=spec.model, detector=spec.detector, detector_model=spec.detector_model,
                   max_upload_mb=max_upload_mb, detector_settings=DetectorSettings.from_spec(spec),
                   mirror_photos=spec.mirror_photos, db=None if db_path is None else str(db_path),
                   on_ready=lambda url: click.echo(f"maskwatch: serving on {url}  (Ctrl+C to stop)", err=True))
    except (KeyboardInterrupt, click.exceptions.Abort):
        pass
    click.echo("maskwatch: server stopped", err=True)


@cli.command()
@click.argument("site", type=click.Path(path_type=Path))
@click.option("--serve", is_flag=True, help="Serve the dashboard (/watch), /metrics, /healthz and /readyz.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve on (with --serve).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="Port (with --serve).")
@click.option("--db", "db_path", default=None,
              help="Event log: an SQLite file or a postgresql:// URL; overrides the site file's [site] db.")
@click.option("--log-json", is_flag=True, help="Log JSON lines on stderr (for log collectors).")
def watch(site, serve, host, port, db_path, log_json) -> None:
    """Watch every camera of a SITE file (TOML or YAML) until SIGTERM or Ctrl-C; see docs/watch.md."""
    from maskwatch.watch.command import run_watch

    def server_app(engine):  # the dashboard is mounted on the server's app (photo page and API)
        from maskwatch.server.app import ServerSettings, create_app

        return create_app(ServerSettings(host=host, port=port), engine=engine)

    run_watch(site, serve=serve, host=host, port=port, db=db_path, log_json=log_json, app_factory=server_app)


from maskwatch.batch.command import register as _register_batch  # noqa: E402 - scale-out front (issue 7)

_register_batch(cli)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI and turn every expected failure into one line on stderr."""
    try:
        cli.main(args=argv, prog_name="maskwatch", standalone_mode=False)
        return 0
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc), err=True)
        return 2
    except click.exceptions.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        click.echo(f"maskwatch: error: {exc.format_message()}{hint}", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("maskwatch: aborted", err=True)
        return 130
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except MaskwatchError as exc:
        if os.environ.get("MASKWATCH_DEBUG"):
            raise
        click.echo(f"maskwatch: error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("maskwatch: interrupted", err=True)
        return 130
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - last resort: one line, not a traceback
        if os.environ.get("MASKWATCH_DEBUG"):
            raise
        click.echo(f"maskwatch: internal error: {type(exc).__name__}: {exc} (rerun with MASKWATCH_DEBUG=1 "
                   "for details and please report it)", err=True)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
