"""Run folders: ``runs/<task>/<name>``, ``<name>2``, ... - a new one per run, never overwritten."""

from __future__ import annotations

from pathlib import Path


def new_run_dir(root: str | Path = "runs", task: str = "train", name: str = "exp") -> Path:
    """Create and return a fresh run folder under ``root/task`` (``name``, ``name2``, ``name3``...)."""
    base = Path(root) / task
    base.mkdir(parents=True, exist_ok=True)
    k = 1
    while True:
        candidate = base / (name if k == 1 else f"{name}{k}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            k += 1


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
