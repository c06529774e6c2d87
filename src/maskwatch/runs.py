"""Run folders: ``runs/<task>/<name>``, ``<name>2``, ... - a new one per run, never overwritten."""

from __future__ import annotations

from pathlib import Path

from maskwatch.errors import InputError


def output_error(path: str | Path, exc: OSError, what: str = "output") -> InputError:
    """A one-line :class:`InputError` for an output location that cannot be written."""
    reason = exc.strerror or str(exc)
    return InputError(f"{path}: cannot write the {what} here ({reason}); choose a writable location.")


def new_run_dir(root: str | Path = "runs", task: str = "train", name: str = "exp") -> Path:
    """Create and return a fresh run folder under ``root/task`` (``name``, ``name2``, ``name3``...)."""
    base = Path(root) / task
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(base, exc, "run folder") from exc
    k = 1
    while True:
        candidate = base / (name if k == 1 else f"{name}{k}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            k += 1
        except OSError as exc:
            raise output_error(candidate, exc, "run folder") from exc


def unique_path(path: Path) -> Path:
    """``path`` if free, else ``stem_2.ext``, ``stem_3.ext``... (outputs never overwrite anything)."""
    if not path.exists():
        return path
    k = 2
    while True:
        candidate = path.with_name(f"{path.stem}_{k}{path.suffix}")
        if not candidate.exists():
            return candidate
        k += 1
