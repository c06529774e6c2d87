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

from maskwatch import __version__
from maskwatch.defaults import (
    ALERT_AFTER_S,
    MAX_UPLOAD_MB,
    MIN_TRACK_FRAMES,
    MIRROR_PHOTOS,
    RECLASSIFY_EVERY,
    RECLASSIFY_STABLE_EVERY,
)
from maskwatch.errors import InputError, MaskwatchError

log = logging.getLogger("maskwatch")

DETECTOR_CHOICES = click.Choice(["auto", "yunet", "yuface", "centerface", "fused"])


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("maskwatch: %(message)s"))
    root = logging.getLogger("maskwatch")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def _settings(face_threshold, detect_size, min_face):
    from maskwatch.faces.detector import DetectorSettings

    kw = {}
    if face_threshold is not None:
        kw["score_threshold"] = face_threshold
    if detect_size is not None:  # given explicitly: for photos and video frames alike
        kw["detect_size"] = kw["video_detect_size"] = None if detect_size == 0 else detect_size
    if min_face is not None:
        kw["min_face"] = min_face
    return DetectorSettings(**kw)


def face_options(f):
    """Face-detector options, the same for every command that finds faces (detect, benchmark, evaluate)."""
    options = [
        click.option("--detector", type=DETECTOR_CHOICES, default="auto", show_default=True,
                     help="Face detector backend (auto: YuNet, bundled; centerface/fused find more small faces, slower)."),
        click.option("--detector-model", type=click.Path(path_type=Path), default=None,
                     help="Detector .onnx file or folder (default: $MASKWATCH_MODELS, the user cache, the bundled copy)."),
        click.option("--face-threshold", type=click.FloatRange(0, 1), default=None,
                     help="Minimum face-detector confidence."),
        click.option("--detect-size", type=click.IntRange(0, 4096), default=None,
                     help="Scale the long side to this many pixels for face detection (0: native size; "
                          "default 1280 for photos, 640 for video frames)."),
        click.option("--min-face", type=click.IntRange(0), default=None, help="Ignore faces narrower than N pixels."),
    ]
    for opt in reversed(options):
        f = opt(f)
    return f


def detector_options(f):
    """``--model`` and :func:`face_options`: every command that finds and labels faces."""
    f = face_options(f)
    return click.option("--model", "-m", type=click.Path(path_type=Path), default=None,
                        help="maskwatch .onnx classifier (default: the bundled model).")(f)


def tracking_options(f):
    """``--reclassify-every`` and ``--reclassify-stable-every``: how often tracked video faces are classified."""
    f = click.option("--reclassify-stable-every", type=click.IntRange(1), default=RECLASSIFY_STABLE_EVERY,
                     show_default=True,
                     help="The same for a stable face (its last verdicts agreed, confidently, and it kept its "
                          "size); at least --reclassify-every.")(f)
    return click.option("--reclassify-every", type=click.IntRange(1), default=RECLASSIFY_EVERY, show_default=True,
                        help="In videos, classify a tracked face again after N frames (1 and "
                             "--reclassify-stable-every 1: every frame).")(f)


mirror_option = click.option(
    "--mirror/--no-mirror", default=MIRROR_PHOTOS, show_default=True,
    help="Photos: classify each face with its mirror image and average the two (steadier on real faces, twice "
         "the classifier's time; video frames never).")


def _engine(model, detector, detector_model, face_threshold, detect_size, min_face, **kw):
    from maskwatch.engine import MaskDetector

    return MaskDetector(model=model, detector=detector, detector_model=detector_model,
                        settings=_settings(face_threshold, detect_size, min_face), **kw)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="maskwatch")
@click.option("-v", "--verbose", count=True, help="More messages on stderr (-vv for debug).")
def cli(verbose: int) -> None:
    """Find every face in photos, videos and cameras and tell with_mask from without_mask."""
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


def _quiet_broken_pipe() -> None:
    """The reader of stdout went away (``| head``): stop writing there, quietly."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


class _ImageLines:
    """Sink: one line per still image on stdout (faces, with / without mask)."""

    def __init__(self, classes: tuple[str, ...]) -> None:
        self.classes = classes

    def write(self, result) -> None:
        if result.frame is None:
            c = result.counts()
            per = ", ".join(f"{c.get(k, 0)} {k}" for k in (*self.classes, "uncertain") if k in self.classes or c.get(k))
            click.echo(f"{result.source}: {c['total']} faces, {per}")

    def close(self) -> None:
        pass


def _summary_line(src: str, s: dict) -> str:
    line = f"{src}: {s['frames']} frames, {s['faces_per_frame_mean']} faces/frame (max {s['faces_per_frame_max']})"
    if s["tracks"] is None:
        return line + ", face tracks: none"
    seen = ", ".join(f"seen {k} {v}" for k, v in s["tracks"].items())
    return (line + f", face tracks: {s['people']} ({seen}; changed label {s['changed_label']}; "
            f"{s['unmasked_s']:.1f} s without a mask in all)")


@cli.command()
@click.argument("sources", nargs=-1, required=True)
@detector_options
@click.option("--json", "json_path", default=None, help="Write JSON Lines here ('-' = stdout, then nothing else).")
@click.option("--csv", "csv_path", default=None, help="Write one CSV row per face here ('-' = stdout).")
@click.option("--save", is_flag=True, help="Save annotated images / videos into a new run folder.")
@click.option("--project", type=click.Path(path_type=Path), default=Path("runs"), show_default=True,
              help="Folder for run folders.")
@click.option("--name", default="exp", show_default=True, help="Run folder name (exp, exp2, ...).")
@click.option("--show", is_flag=True, help="Show a live window (needs a display and GUI OpenCV).")
@click.option("--vid-stride", type=click.IntRange(1), default=1, show_default=True, help="Use every N-th video frame.")
@tracking_options
@mirror_option
@click.option("--no-track", is_flag=True, help="Classify every face in every video frame independently.")
@click.option("--blur", type=click.Choice(["none", "all", "without_mask", "with_mask"]), default="none",
              show_default=True, help="Blur these faces in saved images and videos.")
@click.option("--db", "db_path", type=click.Path(path_type=Path), default=None,
              help="Record face tracks and their events in this SQLite event log (created or appended to).")
@click.option("--retention-days", type=click.FloatRange(0, min_open=True), default=None,
              help="With --db: first delete what the event log holds from more than N days ago.")
@click.option("--alert-after", type=click.FloatRange(0), default=ALERT_AFTER_S, show_default=True,
              help="Seconds a tracked face must be without a mask before one unmasked_alert.")
@click.option("--alert-cooldown", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Seconds after an alert during which the same source raises no other.")
@click.option("--alert-webhook", default=None, help="POST each alert as JSON to this http(s) URL.")
@click.option("--alert-thumbnails", is_flag=True, help="Include a small face picture in webhook alerts.")
@click.option("--report", "report", is_flag=True,
              help="Write summary.json, timeline.csv and timeline.png into the run folder.")
@click.option("--min-track-frames", type=click.IntRange(1), default=MIN_TRACK_FRAMES, show_default=True,
              help="A face track counts as a person when seen on at least N frames.")
def detect(sources, model, detector, detector_model, face_threshold, detect_size, min_face, json_path, csv_path,
           save, project, name, show, vid_stride, reclassify_every, reclassify_stable_every, mirror, no_track, blur,
           db_path, retention_days, alert_after, alert_cooldown, alert_webhook, alert_thumbnails, report,
           min_track_frames) -> None:
    """Find and label every face in SOURCES: images, folders, globs, videos, camera indices (0), URLs."""
    from maskwatch.analytics import VideoStats
    from maskwatch.io.sources import resolve_sources
    from maskwatch.io.writers import LiveWindow, MediaSaver, make_writer
    from maskwatch.runloop import run
    from maskwatch.runs import new_run_dir

    from maskwatch.alerts import Alerts
    from maskwatch.report import ComplianceReport

    if json_path == "-" and csv_path == "-":
        raise InputError("--json - and --csv - both want stdout; send one of them to a file.")
    if retention_days is not None and db_path is None:
        raise InputError("--retention-days prunes the event log: give it one with --db PATH.")
    _check_outputs({"--json": json_path, "--csv": csv_path, "--db": db_path}, may_exist=("--db",))
    resolved = resolve_sources(sources)
    engine = _engine(model, detector, detector_model, face_threshold, detect_size, min_face,
                     reclassify_every=reclassify_every, reclassify_stable_every=reclassify_stable_every,
                     mirror_photos=mirror)
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
        run_dir = new_run_dir(project, "detect", name) if (save or report) else None
        if run_dir and save:
            sinks.append(MediaSaver(run_dir, blur=blur))
    except BaseException:
        for sink in sinks:
            sink.close()
        alerts.close()
        raise
    stats = VideoStats(min_track_frames)
    compliance = ComplianceReport(min_track_frames)
    sinks += [stats, compliance, alerts]
    if not quiet_stdout:
        sinks.append(_ImageLines(engine.classes))
    if window:
        sinks.append(window)  # last: its q / Esc ends the run after every other sink had the frame

    def on_error(exc: MaskwatchError) -> None:
        click.echo(f"maskwatch: skipped {exc}", err=True)

    try:
        summary = run(resolved, sinks, engine, vid_stride=vid_stride, track=not no_track, on_error=on_error,
                      tracker_options={"alert_after_s": alert_after, "alert_cooldown_s": alert_cooldown})
    except BrokenPipeError:
        _quiet_broken_pipe()
        return
    if report and run_dir:
        compliance.save(run_dir)
    try:
        if not quiet_stdout:
            for src, s in stats.summary().items():
                click.echo(_summary_line(src, s))
            if stats.summary() and not no_track:
                click.echo(compliance.text())
    except BrokenPipeError:
        _quiet_broken_pipe()
        return
    if alerts.alerts:
        click.echo(f"maskwatch: {len(alerts.alerts)} unmasked alert(s)"
                   + (f"; webhook: {alerts.sender.sent} sent, {alerts.sender.failed} failed, "
                      f"{alerts.sender.dropped} dropped" if alerts.sender else ""), err=True)
    click.echo(f"maskwatch: {summary.frames} frames in {summary.elapsed_s:.1f} s ({summary.fps:.1f} frames/s)"
               + (f", results in {run_dir}" if run_dir else "")
               + (f", events in {db_path}" if db_path else ""), err=True)
    if summary.signal is not None:
        how = "interrupted (SIGINT)" if summary.signal_name == "SIGINT" else f"stopped by {summary.signal_name}"
        click.echo(f"maskwatch: {how} after {summary.frames} frames; every output was closed", err=True)
        sys.exit(128 + summary.signal)
    if summary.failures:
        click.echo(f"maskwatch: {len(summary.failures)} input(s) could not be read", err=True)
        sys.exit(1)


@cli.command()
@click.option("--db", "db_path", type=click.Path(path_type=Path), required=True, help="The event log (from detect --db).")
@click.option("--since", default=None, help="Only events at or after this UTC time (2026-05-01T08:00) or age (30m, 2h, 7d).")
@click.option("--source", default=None, help="Only this source (a path, URL or camera:N; a part of one matches).")
@click.option("--kind", type=click.Choice(["track_started", "label_changed", "unmasked_alert", "track_ended"]),
              default=None, help="Only events of this kind.")
@click.option("--limit", type=click.IntRange(1), default=None, help="At most N events (oldest first).")
@click.option("--json", "as_json", is_flag=True, help="JSON Lines, one event per line.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header row.")
def events(db_path, since, source, kind, limit, as_json, as_csv) -> None:
    """Print the events an event log recorded (a table; --json or --csv for programs)."""
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
            click.echo(f"{len(rows)} event(s)", err=True)
    except BrokenPipeError:
        _quiet_broken_pipe()


@cli.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--model", "-m", type=click.Path(path_type=Path), default=None,
              help="maskwatch .onnx classifier (default: the bundled model).")
@click.option("--json", "json_path", default=None, help="Write JSON Lines here ('-' = stdout, then nothing else).")
@click.option("--csv", "csv_path", default=None, help="Write CSV here ('-' = stdout).")
@click.option("--batch-size", type=click.IntRange(1, 1024), default=32, show_default=True)
@mirror_option
def classify(inputs, model, json_path, csv_path, batch_size, mirror) -> None:
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
        click.echo(f"maskwatch: {failures} image(s) could not be read", err=True)
        sys.exit(1)


@cli.command()
@click.argument("data_dir", type=click.Path(path_type=Path))
@click.option("--recipe", type=click.Choice(["default", "article"]), default="default", show_default=True,
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
@click.option("--detector", type=DETECTOR_CHOICES, default="auto", show_default=True)
@click.option("--detector-model", type=click.Path(path_type=Path), default=None)
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
def train(data_dir, recipe, epochs, lr, batch_size, crop_faces, margin, seed, weights, detector, detector_model, project,
          name, resume, limit_per_class, scenes, scene_splits, feature_views, finetune_epochs, input_size,
          synthetic_incorrect) -> None:
    """Audit DATA_DIR (one folder per class), split it, train, test and export a classifier."""
    from maskwatch.train.recipe import get_recipe
    from maskwatch.train.trainer import train as run_training

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
                       detector_backend=detector, detector_model=detector_model, resume=resume,
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
@face_options
@mirror_option
@click.option("--project", type=click.Path(path_type=Path), default=Path("runs"), show_default=True)
@click.option("--name", default="exp", show_default=True)
def evaluate(model, data, split_file, score_floor, detector, detector_model, face_threshold, detect_size, min_face,
             mirror, project, name) -> None:
    """Score MODEL on DATA: a crop dataset (class folders) or a scene dataset (YOLO or Pascal VOC boxes)."""
    from maskwatch.evaluate.runner import evaluate_path

    out = evaluate_path(model, data, split_file=split_file, project=project, name=name,
                        detector=detector, detector_model=detector_model,
                        settings=_settings(face_threshold, detect_size, min_face), score_floor=score_floor,
                        mirror=mirror)
    click.echo(out.text)
    click.echo(f"report: {out.run_dir}")


@cli.command()
@click.argument("source", required=False)
@detector_options
@click.option("--frames", type=click.IntRange(1), default=300, show_default=True, help="Frames to time.")
@click.option("--baseline/--no-baseline", default=False,
              help="Also time the classic tutorial pipeline (res10 SSD + Keras predict; needs [train]).")
@tracking_options
@click.option("--json", "json_path", default=None, help="Also write the numbers as JSON here.")
def benchmark(source, model, detector, detector_model, face_threshold, detect_size, min_face, frames, baseline,
              reclassify_every, reclassify_stable_every, json_path) -> None:
    """Frames/s end to end and milliseconds per stage on a video or folder (SOURCE)."""
    from maskwatch.benchmark import format_table, run_benchmark

    rows = run_benchmark(source, frames=frames, baseline=baseline, reclassify_every=reclassify_every,
                         reclassify_stable_every=reclassify_stable_every,
                         engine_factory=lambda **kw: _engine(model, detector, detector_model, face_threshold,
                                                             detect_size, min_face, **kw))
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
    """Print what a maskwatch model file says about itself (default: the bundled model)."""
    from maskwatch.classify.model import MaskClassifier

    click.echo(json.dumps(MaskClassifier(model).describe(), indent=2))


@models.command("fetch")
@click.option("--dest", type=click.Path(path_type=Path), default=None, help="Folder (default: the user cache).")
def models_fetch(dest) -> None:
    """Download the YuNet face detector from OpenCV's model zoo (sha256-checked)."""
    from maskwatch.faces.models import fetch_yunet

    click.echo(str(fetch_yunet(dest)))


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@detector_options
@click.option("--max-upload-mb", type=click.FloatRange(0.01), default=MAX_UPLOAD_MB, show_default=True)
@click.option("--db", "db_path", type=click.Path(path_type=Path), default=None,
              help="Record live camera sessions and video jobs in this SQLite event log (MASKWATCH_DB).")
@click.option("--mirror/--no-mirror", default=None,
              help="Photos: classify each face with its mirror image too, as detect does (default off here, "
                   "for latency under load; MASKWATCH_MIRROR).")
def serve(host, port, model, detector, detector_model, face_threshold, detect_size, min_face, max_upload_mb,
          db_path, mirror) -> None:
    """Start the web app and HTTP API (page at /, API docs at /docs)."""
    if db_path is not None:
        from maskwatch.events import connect

        connect(db_path).close()  # a bad path fails here, in one line, before the server starts
        os.environ["MASKWATCH_DB"] = str(db_path)
    try:
        from maskwatch.server import serve as run_server
    except ImportError as exc:
        raise MaskwatchError(f'the web app needs the serve extra: pip install "maskwatch[serve]" ({exc.name} missing)') from exc
    logging.getLogger("maskwatch.server").setLevel(logging.WARNING)  # its non-loopback warning
    try:
        run_server(host=host, port=port, model=model, detector=detector, detector_model=detector_model,
                   max_upload_mb=max_upload_mb, detector_settings=_settings(face_threshold, detect_size, min_face),
                   mirror_photos=mirror,
                   on_ready=lambda url: click.echo(f"maskwatch: serving on {url}  (Ctrl+C to stop)", err=True))
    except (KeyboardInterrupt, click.exceptions.Abort):
        pass
    click.echo("maskwatch: server stopped", err=True)


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
