"""The ``maskwatch batch`` click command (registered on the main CLI by :func:`register`).

Importing this module is cheap and needs no Ray: Ray is imported only when the command runs, and
without the ``scale`` extra the command ends with one line saying what to install.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings

import click

from maskwatch.wording import count


@contextlib.contextmanager
def _ray_noise_off():
    """Send what Ray's C++ core writes straight to file descriptor 2 to /dev/null for the run, and
    drop the Python warnings Ray's own modules raise meanwhile.

    Our own messages (click, the ``maskwatch`` logger) and Ray Data's progress bars keep going to the
    real stderr through a duplicate of it. ``MASKWATCH_DEBUG=1`` leaves everything as it is.
    """
    if os.environ.get("MASKWATCH_DEBUG"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    old = sys.stderr
    real = os.fdopen(os.dup(saved), "w", buffering=1, encoding=getattr(old, "encoding", None) or "utf-8",
                     errors="backslashreplace")
    sys.stderr = real
    handlers = [h for h in logging.getLogger("maskwatch").handlers if isinstance(h, logging.StreamHandler)]
    streams = [h.setStream(real) for h in handlers]
    try:
        with warnings.catch_warnings():
            # Ray's Python warnings (an actor left idle, a renamed setting) speak to Ray's users, not ours.
            warnings.filterwarnings("ignore", module=r"ray(\.|$)")
            yield
    finally:
        for h, s in zip(handlers, streams):
            h.setStream(s if s is not None else old)
        sys.stderr = old
        real.close()
        os.dup2(saved, 2)
        os.close(saved)


def register(group: click.Group) -> None:
    """Add ``batch`` to the ``maskwatch`` command group (the shared detector options come from it)."""
    from maskwatch.options import spec_from_options, spec_options

    @group.command("batch")
    @click.argument("inputs", nargs=-1, required=True)
    @click.option("--output", "-o", required=True,
                  help="Output folder (local path or object-store URI); rerun the same command to resume it.")
    @click.option("--address", default=None,
                  help="Join a Ray cluster: 'auto' (this node's cluster) or 'ray://HOST:10001'. Default: start "
                       "Ray on this machine.")
    @click.option("--workers", type=click.IntRange(1), default=None,
                  help="Actors in the pool, one engine each (default: the cluster's CPUs).")
    @spec_options("model", "face", "tracking")
    @click.option("--chunk-seconds", type=click.FloatRange(1), default=30.0, show_default=True,
                  help="Cut videos into chunks this long, labelled in parallel.")
    @click.option("--max-chunks", type=click.IntRange(1), default=4, show_default=True,
                  help="Cut one video into at most N chunks (longer chunks for long videos).")
    @click.option("--batch-size", type=click.IntRange(1, 1024), default=8, show_default=True,
                  help="Images (or video chunks) per actor call.")
    @click.option("--commit-every", type=click.IntRange(1), default=500, show_default=True,
                  help="Commit a Parquet part after N finished inputs (or 30 s): what an interruption can lose.")
    @click.option("--object-store-mb", type=click.IntRange(64), default=512, show_default=True,
                  help="Object store of a Ray started here (ignored with --address).")
    def batch(inputs, output, address, workers, chunk_seconds, max_chunks, batch_size, commit_every, object_store_mb,
              **options) -> None:
        """Label every image and video frame in INPUTS on Ray; Parquet results in --output.

        INPUTS: folders, globs, image and video files, and manifests (a .txt of paths, or a .csv /
        .parquet with a 'path' column). Needs the scale extra: pip install "maskwatch[scale]".
        """
        from maskwatch.batch import require_ray, run

        require_ray()
        spec = spec_from_options(options)
        with _ray_noise_off():
            summary = run(list(inputs), output, address=address, workers=workers, spec=spec,
                          chunk_seconds=chunk_seconds, max_chunks=max_chunks, batch_size=batch_size,
                          part_inputs=commit_every, object_store_mb=object_store_mb)
        click.echo(f"maskwatch: batch: {summary.line()}", err=True)
        if summary.failed_total:
            where = f"{str(output).rstrip('/')}/failures.jsonl"
            click.echo(f"maskwatch: {count(summary.failed_total, 'input')} could not be labelled; see {where}",
                       err=True)
            sys.exit(1)

