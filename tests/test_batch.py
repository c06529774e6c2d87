"""maskwatch batch: Ray Data actor pool, Parquet outputs, resume, failures, video chunks.

Tests that need Ray start one small local cluster for the module (2 CPUs, 256 MB object store) and
run ``maskwatch.batch.run`` in this process; the command-line tests run first, each with the Ray its
own process starts, so two clusters never overlap.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import SHARED, assert_one_line_error, needs_shared, run_cli

os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
pq = pytest.importorskip("pyarrow.parquet", reason="needs the scale extra (pyarrow)")

SCENES = SHARED / "data" / "scenes-dev" / "images"
SINGLE = SHARED / "data" / "video" / "single-masked.mp4"


def scene_photos(n: int) -> list[Path]:
    return sorted(SCENES.glob("*.jpg"))[:n]


def read_table(out: Path, name: str):
    return pq.read_table(out / name).to_pylist()


def frames_from_output(out: Path) -> dict[tuple[str, int | None], dict]:
    """Rebuild ``detect --json`` objects from the Parquet output (frames + faces)."""
    faces = read_table(out, "faces")
    classes = [c[2:] for c in pq.read_schema(next((out / "faces").glob("*.parquet"))).names if c.startswith("p_")]
    got = {}
    for r in read_table(out, "frames"):
        key = (r["source"], r["frame"])
        assert key not in got, f"frame twice in the output: {key}"
        got[key] = {"source": r["source"], "frame": r["frame"], "time_s": r["time_s"], "width": r["width"],
                    "height": r["height"], "faces": []}
    for f in sorted(faces, key=lambda f: (f["source"], f["frame"] if f["frame"] is not None else -1, f["face"])):
        got[(f["source"], f["frame"])]["faces"].append({
            "box": [f["x1"], f["y1"], f["x2"], f["y2"]], "face_score": f["face_score"], "label": f["label"],
            "score": f["score"], "probs": {c: f[f"p_{c}"] for c in classes}, "track_id": f["track_id"],
            "uncertain": f["uncertain"]})
    return got


def corrupt_folder(tmp_path: Path, n_good: int = 3) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in scene_photos(n_good):
        (folder / p.name).write_bytes(p.read_bytes())
    good = scene_photos(n_good + 1)[-1].read_bytes()
    (folder / "cut-off.jpg").write_bytes(good[: len(good) // 3])  # a truncated download
    return folder


# -- no Ray needed ------------------------------------------------------------------------------------

def test_video_chunk_plan_covers_every_frame_once():
    from maskwatch.batch.video import VideoProbe, plan_chunks

    plan = plan_chunks(VideoProbe(frames=2000, fps=25.0), chunk_seconds=30, max_chunks=8)
    assert plan[0][0] == 0 and plan[-1][1] is None
    assert all(a[1] == b[0] for a, b in zip(plan, plan[1:]))  # contiguous, no gap, no overlap
    assert [e - s for s, e in plan[:-1]] == [750, 750]
    # A ten-hour video is cut into at most max_chunks pieces; an unknown length is one chunk.
    assert len(plan_chunks(VideoProbe(900_000, 25.0), 30, 8)) == 8
    assert plan_chunks(VideoProbe(0, 0.0), 30, 8) == [(0, None)]
    # A short tail is folded into the chunk before it rather than becoming a chunk of its own.
    assert plan_chunks(VideoProbe(760, 25.0), 30, 8) == [(0, None)]


def test_manifests_txt_csv_parquet_with_relative_paths(tmp_path):
    import pyarrow as pa

    from maskwatch.batch.inputs import resolve_inputs
    from maskwatch.errors import InputError

    (tmp_path / "a").mkdir()
    for name in ("x.jpg", "y.png", "clip.mp4"):
        (tmp_path / "a" / name).write_bytes(b"data")
    (tmp_path / "list.txt").write_text("# photos\na/x.jpg\n\na/clip.mp4\n")
    (tmp_path / "list.csv").write_text("path,camera\na/y.png,3\n")
    pq.write_table(pa.table({"path": [str(tmp_path / "a" / "x.jpg")]}), tmp_path / "list.parquet")
    got = resolve_inputs([str(tmp_path / "list.txt"), str(tmp_path / "list.csv"), str(tmp_path / "list.parquet")])
    assert [(Path(i.source).name, i.kind) for i in got] == [("x.jpg", "image"), ("clip.mp4", "video"),
                                                             ("y.png", "image")]  # x.jpg twice is kept once
    assert all(i.size == 4 and i.mtime_ns > 0 for i in got)
    (tmp_path / "bad.csv").write_text("file\na/x.jpg\n")
    with pytest.raises(InputError, match="'path' column"):
        resolve_inputs([str(tmp_path / "bad.csv")])
    with pytest.raises(InputError, match="not cameras"):
        resolve_inputs(["0"])


def test_leftovers_of_a_crash_are_removed_and_other_settings_refused(tmp_path):
    from maskwatch.batch.output import Done, OutputDir
    from maskwatch.errors import InputError

    classes = ("with_mask", "without_mask")
    out = OutputDir(str(tmp_path / "out"), classes, {"model": "m"})
    out.open()
    frame = {"source": "a.jpg", "frame": None, "time_s": None, "width": 10, "height": 10, "faces": [
        {"box": [1, 1, 5, 5], "face_score": 0.9, "label": "with_mask", "score": 0.8,
         "probs": {"with_mask": 0.8, "without_mask": 0.2}, "track_id": None}]}
    src = {"source": "a.jpg", "kind": "image", "size": 1, "mtime_ns": 2, "frames": 1, "faces": 1, "status": "ok",
           "n_with_mask": 1}
    name = out.commit([Done(src, [frame])])
    out.release()
    # A crash between the faces part and its sources part (the commit record), plus a temporary file:
    (tmp_path / "out" / "faces" / "part-crashed.parquet").write_bytes(b"half")
    (tmp_path / "out" / "frames" / ".tmp-part-crashed.parquet").write_bytes(b"half")
    again = OutputDir(str(tmp_path / "out"), classes, {"model": "m"})
    again.open()
    assert sorted(p.name for p in (tmp_path / "out" / "faces").iterdir()) == [name]
    assert list((tmp_path / "out" / "frames").iterdir()) == [tmp_path / "out" / "frames" / name]
    assert again.completed() == {("a.jpg", 1, 2): "ok"}
    again.release()
    with pytest.raises(InputError, match="other settings"):
        OutputDir(str(tmp_path / "out"), classes, {"model": "another"}).open()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("a user's file")
    with pytest.raises(InputError, match="not made by maskwatch batch"):
        OutputDir(str(tmp_path / "mine"), classes, {}).open()


def test_without_ray_one_line_says_what_to_install(tmp_path):
    code = ("import sys; sys.modules['ray'] = None\n"
            "from maskwatch.cli import main\n"
            f"sys.exit(main(['batch', {str(tmp_path)!r}, '-o', {str(tmp_path / 'out')!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert_one_line_error(proc, 'pip install "maskwatch[scale]"')
    assert not (tmp_path / "out").exists()


def test_help_lists_batch_without_importing_ray():
    code = "import sys; from maskwatch.cli import main; main(['--help']); print('ray' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert " batch " in proc.stdout and proc.stdout.strip().endswith("False"), proc.stdout


# -- the command line (each starts its own Ray) -------------------------------------------------------

@needs_shared
@pytest.mark.ray
def test_corrupt_file_lands_in_failures_and_the_rest_complete(tmp_path):
    folder = corrupt_folder(tmp_path)
    out = tmp_path / "out"
    proc = run_cli("batch", str(folder), "-o", str(out), "--workers", "1", "--object-store-mb", "200")
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert all(ln.startswith("maskwatch: ") for ln in lines), proc.stderr  # no Ray log lines
    assert [ln for ln in lines if "could not be labelled" in ln] == [
        f"maskwatch: 1 input could not be labelled; see {out}/failures.jsonl"]
    failures = [json.loads(x) for x in (out / "failures.jsonl").read_text().splitlines()]
    assert [Path(f["source"]).name for f in failures] == ["cut-off.jpg"]
    assert "truncated" in failures[0]["error"] or "corrupt" in failures[0]["error"]
    sources = {Path(r["source"]).name: r for r in read_table(out, "sources")}
    assert len(sources) == 4 and sources["cut-off.jpg"]["status"] == "failed"
    assert all(r["status"] == "ok" and r["faces"] > 0 for n, r in sources.items() if n != "cut-off.jpg")
    success = json.loads((out / "_SUCCESS").read_text())
    assert success["summary"]["failed"] == 1
    assert success["settings"]["classes"] == ["with_mask", "without_mask", "mask_incorrect"]
    assert not (out / "_LOCK").exists()


@needs_shared
@pytest.mark.ray
def test_killed_run_resumes_and_every_input_appears_once(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    photos = scene_photos(16)
    for p in photos:
        (folder / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "out"
    args = [sys.executable, "-m", "maskwatch", "batch", str(folder), "-o", str(out), "--workers", "2",
            "--batch-size", "1", "--commit-every", "2", "--object-store-mb", "200"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.time() + 150
        while time.time() < deadline and proc.poll() is None:
            if len(list((out / "sources").glob("part-*.parquet"))) >= 2:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        os.kill(proc.pid, signal.SIGKILL)  # the driver dies without any cleanup
        proc.wait(30)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # Ray processes this run started, if any outlived it
        except ProcessLookupError:
            pass
    committed = {r["source"] for r in read_table(out, "sources")}
    assert 0 < len(committed) < len(photos)
    assert not (out / "_SUCCESS").exists()
    proc2 = run_cli(*args[3:])
    assert proc2.returncode == 0, proc2.stderr
    assert f"({len(committed)} already done, skipped)" in proc2.stderr
    sources = [r["source"] for r in read_table(out, "sources")]
    assert sorted(sources) == sorted(str(folder / p.name) for p in photos)  # each exactly once
    frames = [r["source"] for r in read_table(out, "frames")]
    assert sorted(frames) == sorted(sources)
    faces = read_table(out, "faces")
    assert len({(f["source"], f["face"]) for f in faces}) == len(faces)
    per_source = {r["source"]: r["faces"] for r in read_table(out, "sources")}
    assert sum(per_source.values()) == len(faces)
    assert json.loads((out / "_SUCCESS").read_text())["summary"]["skipped"] == len(committed)


# -- in this process, on one small Ray for the rest of the module -------------------------------------

@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray", reason="needs the scale extra (ray[data])")
    import logging

    ray.init(num_cpus=2, object_store_memory=256 << 20, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR)
    yield ray
    ray.shutdown()


@needs_shared
@pytest.mark.ray
def test_batch_gives_exactly_what_detect_json_gives(tmp_path, ray_local, model_path):
    from maskwatch.batch import run

    photos = [str(p) for p in scene_photos(40)]
    manifest = tmp_path / "inputs.txt"
    manifest.write_text("\n".join([*photos, str(SINGLE)]) + "\n")
    detect_json = tmp_path / "detect.jsonl"
    proc = run_cli("detect", *photos, str(SINGLE), "-m", str(model_path), "--json", str(detect_json))
    assert proc.returncode == 0, proc.stderr
    expected = {(d["source"], d["frame"]): d for d in map(json.loads, detect_json.read_text().splitlines())}

    summary = run([str(manifest)], tmp_path / "out", workers=2, model=model_path)
    assert summary.inputs == 41 and summary.failed == 0 and summary.images == 40 and summary.videos == 1
    got = frames_from_output(tmp_path / "out")
    assert len(expected) == 40 + 244
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key] == expected[key], key  # boxes, labels, scores, probs, track ids
    sources = {r["source"]: r for r in read_table(tmp_path / "out", "sources")}
    video = sources[str(SINGLE)]  # 244 frames at 25 fps: one 30-second chunk
    assert (video["kind"], video["frames"], video["chunks"], video["width"], video["height"]) == (
        "video", 244, 1, 720, 404)
    assert video["faces"] == sum(len(expected[(str(SINGLE), i)]["faces"]) for i in range(244))
    assert summary.faces == sum(len(d["faces"]) for d in expected.values())


@needs_shared
@pytest.mark.ray
def test_video_longer_than_a_chunk_is_continuous(tmp_path, ray_local, engine):
    from maskwatch.batch import run

    summary = run([str(SINGLE)], tmp_path / "out", workers=2, chunk_seconds=2.0, max_chunks=8)
    frames = sorted(read_table(tmp_path / "out", "frames"), key=lambda r: r["frame"])
    assert [r["frame"] for r in frames] == list(range(244))
    assert all(abs(r["time_s"] - round(r["frame"] / 25.0, 4)) < 1e-9 for r in frames)
    (src,) = read_table(tmp_path / "out", "sources")
    assert src["chunks"] == 5 and src["frames"] == 244 and src["status"] == "ok" and summary.frames == 244
    # Per frame, the same faces as the single-machine engine; track ids unique within the video,
    # a new id where a chunk starts (documented: the tracker restarts at each chunk).
    reference = {r.frame: r.to_dict() for r in engine.process([SINGLE])}
    got = frames_from_output(tmp_path / "out")
    for i in range(244):
        g, e = got[(str(SINGLE), i)], reference[i]
        assert [(f["box"], f["face_score"]) for f in g["faces"]] == [(f["box"], f["face_score"]) for f in e["faces"]]
    ids_by_chunk = {}
    for i in range(244):
        for f in got[(str(SINGLE), i)]["faces"]:
            ids_by_chunk.setdefault(i // 50 if i < 200 else 4, set()).add(f["track_id"])
    seen = set()
    for chunk in sorted(ids_by_chunk):
        assert not (ids_by_chunk[chunk] & seen), "a track id reused in a later chunk"
        seen |= ids_by_chunk[chunk]


@needs_shared
@pytest.mark.ray
def test_an_actor_killed_mid_run_loses_and_duplicates_nothing(tmp_path, ray_local, engine):
    from ray._private import state

    from maskwatch.batch import run

    photos = scene_photos(24)
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in photos:
        (folder / p.name).write_bytes(p.read_bytes())
    killed: list[str] = []

    def kill_one_actor(summary) -> None:
        if killed:
            return
        alive = [a for a in state.actors().values()
                 if "Labeller" in a["ActorClassName"] and a["State"] == "ALIVE"]
        if not alive:
            return
        victim = alive[0]
        try:
            from ray._raylet import ActorID

            handle = ray_local._private.worker.global_worker.core_worker.get_actor_handle(
                ActorID.from_hex(victim["ActorID"]))
            ray_local.kill(handle, no_restart=False)
        except (ImportError, AttributeError):  # private API moved: kill its process instead
            os.kill(victim["Pid"], signal.SIGKILL)
        killed.append(victim["ActorID"])

    summary = run([str(folder)], tmp_path / "out", workers=2, batch_size=2, part_inputs=2, on_commit=kill_one_actor)
    assert killed, "no actor was alive to kill"
    restarted = state.actors()[killed[0]]
    assert restarted["NumRestarts"] >= 1 or restarted["State"] == "DEAD"
    assert summary.images == 24 and summary.failed == 0
    got = frames_from_output(tmp_path / "out")
    expected = {(str(folder / p.name), None): engine.detect_file(folder / p.name).to_dict() for p in photos}
    assert got == expected


@needs_shared
@pytest.mark.ray
def test_detect_batch_and_the_http_api_give_the_same_counts_per_label(tmp_path, ray_local, model_path, engine):
    """One summary: the same 40 photos through detect --json, batch (Parquet) and POST /v1/detect, mirror on
    everywhere, give identical per-label counts (uncertain included), and each front's counts add up."""
    from maskwatch.batch import run
    from maskwatch.summary import count_labels

    pytest.importorskip("fastapi", reason="needs the serve extra")
    from fastapi.testclient import TestClient

    from maskwatch.server.app import ServerSettings, create_app

    photos = [str(p) for p in scene_photos(40)]
    detect_json = tmp_path / "detect.jsonl"
    proc = run_cli("detect", *photos, "-m", str(model_path), "--mirror", "--json", str(detect_json))
    assert proc.returncode == 0, proc.stderr
    classes = engine.classes
    by_detect = {d["source"]: count_labels(d["faces"], classes)
                 for d in map(json.loads, detect_json.read_text().splitlines())}

    run(photos, tmp_path / "out", workers=2, model=model_path)
    keys = [*classes, "uncertain"]
    by_batch = {r["source"]: {k: r[f"n_{k}"] for k in keys} for r in read_table(tmp_path / "out", "sources")}
    for r in read_table(tmp_path / "out", "sources"):
        assert sum(r[f"n_{k}"] for k in keys) == r["faces"]

    by_api = {}
    app = create_app(ServerSettings(workers=1, mirror_photos=True), engine=engine)
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        for p in photos:
            with open(p, "rb") as fh:
                resp = client.post("/v1/detect", files={"file": (Path(p).name, fh, "image/jpeg")})
            assert resp.status_code == 200, resp.text
            h = resp.headers
            counts = {"with_mask": int(h["X-Faces-With-Mask"]), "without_mask": int(h["X-Faces-Without-Mask"]),
                      "mask_incorrect": int(h["X-Faces-Mask-Incorrect"]), "uncertain": int(h["X-Faces-Uncertain"])}
            assert sum(counts.values()) == int(h["X-Faces-Total"]) == len(resp.json()["faces"])
            by_api[p] = {k: counts.get(k, 0) for k in keys}
    assert by_detect == by_batch == by_api
    assert sum(c["uncertain"] for c in by_detect.values()) >= 0
    assert sum(sum(c.values()) for c in by_detect.values()) > 40  # crowds: faces were found


@needs_shared
@pytest.mark.ray
def test_batch_uses_the_face_backend_it_is_given(tmp_path, ray_local, model_path):
    """batch --detector centerface used to run yuface silently; now every front builds faces from the registry."""
    from maskwatch.batch import run

    photos = [str(p) for p in scene_photos(6)]
    detect_json = tmp_path / "detect.jsonl"
    proc = run_cli("detect", *photos, "-m", str(model_path), "--detector", "centerface", "--json", str(detect_json))
    assert proc.returncode == 0, proc.stderr
    expected = {d["source"]: [f["box"] for f in d["faces"]]
                for d in map(json.loads, detect_json.read_text().splitlines())}
    summary = run(photos, tmp_path / "out", workers=1, model=model_path, detector="centerface")
    assert summary.failed == 0
    got = {src: [f["box"] for f in d["faces"]] for (src, _), d in frames_from_output(tmp_path / "out").items()}
    assert got == expected
    assert json.loads((tmp_path / "out" / "_settings.json").read_text())["detector"] == "centerface"
