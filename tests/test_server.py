"""HTTP API tests (FastAPI TestClient): status codes, JSON fields and every error the API promises."""

from __future__ import annotations

import io
import re
import socket
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
pytest.importorskip("httpx", reason="httpx is needed by FastAPI's TestClient")

from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from conftest import SHARED, needs_shared  # noqa: E402
from maskwatch.errors import InputError  # noqa: E402
from maskwatch.server import is_loopback, server_url  # noqa: E402
from maskwatch.server.app import STATIC_DIR, ServerSettings, create_app  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SCENES = SHARED / "data" / "scenes-dev" / "images"
# A street photo with several faces, masked and not.
SCENE_PHOTO = SCENES / "01242020_masks-qa_151720-780x520.jpg"


# ------------------------------------------------------------------------------------ helpers


def encode(image: np.ndarray | Image.Image, fmt: str = "JPEG", **kw) -> bytes:
    img = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb's calling card)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def gray_jpeg() -> bytes:
    return encode(np.full((240, 320, 3), 128, np.uint8))


@pytest.fixture(scope="module")
def scene_bytes() -> bytes:
    if not SCENE_PHOTO.is_file():
        pytest.skip(f"needs {SCENE_PHOTO} (the shared data folder)")
    return SCENE_PHOTO.read_bytes()


@pytest.fixture(scope="module")
def client(engine) -> TestClient:
    """The app with default settings, on the session's engine (loaded once)."""
    app = create_app(ServerSettings(workers=2), engine=engine)
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        yield c


@pytest.fixture(scope="module")
def tight_client(engine) -> TestClient:
    """The app with small limits: 0.05 MiB uploads, 100k pixels, 2 crops per request."""
    app = create_app(ServerSettings(max_upload_mb=0.05, max_pixels=100_000, max_crops=2, workers=1), engine=engine)
    with TestClient(app, base_url="http://localhost:8000") as c:
        yield c


def assert_error(resp, status: int, *fragments: str) -> str:
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers["content-type"].startswith("application/json")
    detail = resp.json()["detail"]
    assert isinstance(detail, str) and len(detail) > 15, detail
    for frag in fragments:
        assert frag.lower() in detail.lower(), (frag, detail)
    return detail


# ------------------------------------------------------------------------------------ info endpoints


def test_health(client, engine):
    r = client.get("/health")
    assert r.status_code == 200
    h = r.json()
    assert h["status"] == "ok"
    assert h["model"] == engine.classifier.info.name
    assert h["detector"] == engine.face_detector.name in ("yunet", "yuface")
    import maskwatch

    assert h["version"] == maskwatch.__version__
    assert h["classes"] == list(engine.classes)
    assert h["max_upload_bytes"] == 20 * 1024 * 1024


def test_model_card(client, engine):
    r = client.get("/v1/model")
    assert r.status_code == 200
    card = r.json()
    assert card == engine.classifier.describe()
    assert card["classes"] == list(engine.classes)


def test_openapi_documents_every_endpoint(client):
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in ("/v1/detect", "/v1/classify", "/health", "/v1/model"):
        assert path in paths
    body = paths["/v1/detect"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in body and "image/jpeg" in body
    responses = paths["/v1/detect"]["post"]["responses"]
    assert {"200", "413", "415", "422"} <= set(responses)


def test_docs_and_page_are_offline(client):
    """The docs page and the web page load nothing from another host (no CDN)."""
    external = re.compile(r"""(src|href)\s*=\s*["']?(https?:)?//"""
                          r"""|url\(\s*["']?(https?:)?//|fetch\(\s*["']https?:""", re.I)
    for url in ("/", "/docs"):
        r = client.get(url)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert not external.search(r.text), url
        for asset in re.findall(r"""(?:src|href)=["'](/static/[^"']+)""", r.text):
            a = client.get(asset)
            assert a.status_code == 200, asset
            assert not external.search(a.text), asset
    for f in STATIC_DIR.rglob("*"):
        if f.is_file():
            assert not external.search(f.read_text(encoding="utf-8")), f


# ------------------------------------------------------------------------------------ /v1/detect


@needs_shared
def test_detect_multipart_matches_the_engine(client, engine, scene_bytes):
    r = client.post("/v1/detect", files={"file": (SCENE_PHOTO.name, scene_bytes, "image/jpeg")})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    got = r.json()
    # One serializer: the very object the engine (and `maskwatch detect --json`) produces.
    expected = engine.detect_bytes(scene_bytes, source=SCENE_PHOTO.name).to_dict()
    assert got == expected
    assert got["source"] == SCENE_PHOTO.name
    assert (got["width"], got["height"]) == (780, 520)
    assert got["frame"] is None and got["time_s"] is None
    assert len(got["faces"]) >= 3
    for f in got["faces"]:
        x1, y1, x2, y2 = f["box"]
        assert 0 <= x1 < x2 <= got["width"] and 0 <= y1 < y2 <= got["height"]
        assert f["label"] in engine.classes
        assert 0.0 <= f["score"] <= 1.0 and set(f["probs"]) == set(engine.classes)
    def count(label: str) -> str:  # uncertain faces are counted apart from their best guess
        return str(sum(f["label"] == label and not f["uncertain"] for f in got["faces"]))

    assert r.headers["x-faces-total"] == str(len(got["faces"]))
    assert r.headers["x-faces-with-mask"] == count("with_mask")
    assert r.headers["x-faces-without-mask"] == count("without_mask")
    assert r.headers["x-faces-mask-incorrect"] == count("mask_incorrect")
    assert r.headers["x-faces-uncertain"] == str(sum(f["uncertain"] for f in got["faces"]))
    assert "detect;dur=" in r.headers["server-timing"]


@needs_shared
def test_detect_raw_body_whatever_declared_type(client, scene_bytes):
    a = client.post("/v1/detect", content=scene_bytes, headers={"Content-Type": "image/jpeg"})
    b = client.post("/v1/detect", content=scene_bytes, headers={"Content-Type": "text/plain"})
    c = client.post("/v1/detect", content=scene_bytes)
    for r in (a, b, c):
        assert r.status_code == 200, r.text
        assert r.json()["source"] == "<upload>"
    assert a.json()["faces"] == b.json()["faces"] == c.json()["faces"]


@needs_shared
@pytest.mark.parametrize("fmt,magic", [("jpeg", b"\xff\xd8\xff"), ("png", b"\x89PNG")])
def test_detect_annotated_image(client, scene_bytes, fmt, magic):
    r = client.post(f"/v1/detect?format={fmt}&banner=true", files={"file": ("x.jpg", scene_bytes, "image/jpeg")})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == f"image/{fmt}"
    assert r.content.startswith(magic)
    img = Image.open(io.BytesIO(r.content))
    assert img.size[0] == 780 and img.size[1] >= 520  # a legend under the photo when labels were shortened
    assert int(r.headers["x-faces-total"]) >= 3


@needs_shared
def test_detect_live_mode(client, scene_bytes):
    r = client.post("/v1/detect?live=true", content=scene_bytes, headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 200, r.text
    res = r.json()
    assert (res["width"], res["height"]) == (780, 520)  # boxes in the frame's own pixels
    assert len(res["faces"]) >= 1


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "BMP", "TIFF", "GIF"])
def test_detect_accepts_common_formats(client, fmt):
    data = encode(np.full((120, 160, 3), 90, np.uint8), fmt)
    r = client.post("/v1/detect", files={"file": (f"blank.{fmt.lower()}", data, "application/octet-stream")})
    assert r.status_code == 200, r.text
    res = r.json()
    assert (res["width"], res["height"], res["faces"]) == (160, 120, [])
    assert r.headers["x-faces-total"] == "0"


def test_detect_no_face(client, gray_jpeg):
    r = client.post("/v1/detect", content=gray_jpeg)
    assert r.status_code == 200
    assert r.json()["faces"] == []


# ------------------------------------------------------------------------------------ errors


def test_413_over_the_upload_limit(tight_client, gray_jpeg):
    big = gray_jpeg + b"\x00" * 60_000  # a valid JPEG start, padded past 0.05 MiB
    for r in (
        tight_client.post("/v1/detect", content=big, headers={"Content-Type": "image/jpeg"}),
        tight_client.post("/v1/detect", files={"file": ("big.jpg", big, "image/jpeg")}),
        tight_client.post("/v1/classify", files={"files": ("big.jpg", big, "image/jpeg")}),
        # chunked transfer (no Content-Length): counted as it arrives
        tight_client.post("/v1/detect", content=iter([big[:30_000], big[30_000:]])),
    ):
        assert_error(r, 413, "limit", "MASKWATCH_MAX_UPLOAD_MB")


def test_413_default_limit_is_20_mb(client, gray_jpeg):
    r = client.post("/v1/detect", content=gray_jpeg + b"\x00" * (20 * 1024 * 1024))
    assert_error(r, 413, "20.0 MB")
    ok = client.post("/v1/detect", content=gray_jpeg + b"\x00" * (1024 * 1024))
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize("body,declared", [
    (b"hello, this is plain text and not a photo", "image/jpeg"),
    (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "image/png"),
    (b'{"image": "not here"}', "application/json"),
    (b"<html><body>hi</body></html>", "text/html"),
    (bytes(range(256)) * 4, "application/octet-stream"),
])
def test_415_not_an_image_whatever_its_declared_type(client, body, declared):
    raw = client.post("/v1/detect", content=body, headers={"Content-Type": declared})
    assert_error(raw, 415, "not an image", "JPEG")
    form = client.post("/v1/detect", files={"file": ("photo.jpg", body, declared)})
    assert_error(form, 415, "photo.jpg", "not an image")
    crops = client.post("/v1/classify", files={"files": ("face.png", body, declared)})
    assert_error(crops, 415, "face.png")


def test_422_corrupt_images(client, gray_jpeg):
    png = encode(np.full((100, 100, 3), 50, np.uint8), "PNG")
    cases = {
        "truncated.jpg": gray_jpeg[: len(gray_jpeg) // 3],
        "garbage.jpg": b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8,
        "broken.png": png[:40] + b"\x00" * 200,
    }
    for name, data in cases.items():
        r = client.post("/v1/detect", files={"file": (name, data, "image/jpeg")})
        assert_error(r, 422, name)


def test_422_empty_body_and_bad_forms(client, gray_jpeg):
    assert_error(client.post("/v1/detect", content=b""), 422, "empty")
    no_file = client.post("/v1/detect", files={"note": (None, "no file here")})
    assert_error(no_file, 422, "no file", "file=@")
    # A urlencoded form is not an image either.
    assert_error(client.post("/v1/detect", data={"note": "no file here"}), 415, "not an image")
    two = [("file", ("a.jpg", gray_jpeg, "image/jpeg")), ("file", ("b.jpg", gray_jpeg, "image/jpeg"))]
    assert_error(client.post("/v1/detect", files=two), 422, "one image per request", "/v1/classify")
    broken = client.post("/v1/detect", content=b"--xyz\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n",
                         headers={"Content-Type": "multipart/form-data; boundary=xyz"})
    assert broken.status_code in (415, 422)
    assert_error(broken, broken.status_code)


def test_422_bad_parameter_has_readable_detail(client, gray_jpeg):
    r = client.post("/v1/detect?format=gif", content=gray_jpeg)
    detail = assert_error(r, 422, "format", "jpeg")
    assert "/docs" in detail


def test_pixel_limit_against_decompression_bombs(client, tight_client):
    bomb = png_header_only(30_000, 30_000)  # 900 megapixels claimed in a ~100-byte file
    assert len(bomb) < 200
    assert_error(client.post("/v1/detect", content=bomb), 413, "too large", "pixels")
    assert_error(client.post("/v1/detect", files={"file": ("bomb.png", bomb, "image/png")}), 413, "bomb.png")
    # Under Pillow's own bomb limit but over ours (default 50 MP): 8000x8000 = 64 MP.
    detail = assert_error(client.post("/v1/detect", content=png_header_only(8000, 8000)), 413, "limit")
    assert "8000x8000" in detail and "50,000,000" in detail
    # A real image over a (small) configured limit: 400x300 = 120k > 100k pixels.
    img = encode(np.full((300, 400, 3), 10, np.uint8), "PNG")
    assert_error(tight_client.post("/v1/detect", content=img), 413, "400x300", "100,000")
    assert_error(tight_client.post("/v1/classify", content=img), 413, "pixels")


def test_404_and_405_are_json(client):
    assert_error(client.get("/v2/nothing"), 404, "/docs")
    assert_error(client.get("/v1/detect"), 405, "GET")


def test_nothing_uploaded_is_written_to_disk(client, monkeypatch, tmp_path):
    """A 3 MB multipart upload (over Starlette's 1 MB spool-to-disk size) leaves the temp dir empty."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    noisy = np.random.default_rng(0).integers(0, 255, (1000, 1000, 3), dtype=np.uint8)
    data = encode(noisy, "PNG")
    assert len(data) > 2_000_000
    r = client.post("/v1/detect", files={"file": ("noise.png", data, "image/png")})
    assert r.status_code == 200, r.text
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------ /v1/classify


@needs_shared
def test_classify_crops_in_order(client, engine, scene_bytes):
    det = client.post("/v1/detect", content=scene_bytes).json()
    img = Image.open(io.BytesIO(scene_bytes)).convert("RGB")
    crops = [encode(img.crop(tuple(f["box"])), "PNG") for f in det["faces"][:3]]
    files = [("files", (f"face{i}.png", c, "image/png")) for i, c in enumerate(crops)]
    r = client.post("/v1/classify", files=files)
    assert r.status_code == 200, r.text
    out = r.json()
    assert [o["source"] for o in out] == [f"face{i}.png" for i in range(len(crops))]
    for o in out:
        assert set(o) == {"source", "label", "score", "probs", "uncertain"}  # uncertain: added by issue 9
        assert o["label"] in engine.classes and 0 <= o["score"] <= 1
    single = client.post("/v1/classify", content=crops[0], headers={"Content-Type": "image/png"})
    assert single.status_code == 200
    assert single.json()[0]["source"] == "<upload>"
    assert single.json()[0]["label"] == out[0]["label"]


def test_classify_too_many_crops(tight_client):
    crop = encode(np.full((64, 64, 3), 120, np.uint8), "PNG")
    files = [("files", (f"c{i}.png", crop, "image/png")) for i in range(3)]
    assert_error(tight_client.post("/v1/classify", files=files), 413, "3 crops", "limit of 2")
    ok = tight_client.post("/v1/classify", files=files[:2])
    assert ok.status_code == 200 and len(ok.json()) == 2


def test_classify_corrupt_crop_names_it(client, gray_jpeg):
    files = [("files", ("good.jpg", gray_jpeg, "image/jpeg")),
             ("files", ("bad.jpg", gray_jpeg[:200], "image/jpeg"))]
    assert_error(client.post("/v1/classify", files=files), 422, "bad.jpg")


# ------------------------------------------------------------------------------------ settings, serve()


def test_settings_from_env():
    s = ServerSettings.from_env({
        "MASKWATCH_MAX_UPLOAD_MB": "5", "MASKWATCH_MAX_PIXELS": "1000000", "MASKWATCH_WORKERS": "3",
        "MASKWATCH_PORT": "9000", "MASKWATCH_MODEL": "/x/model.onnx",
    }, port=9100, model=None)
    assert (s.max_upload_bytes, s.max_pixels, s.workers) == (5 * 1024 * 1024, 1_000_000, 3)
    assert s.port == 9100  # an explicit argument wins over the environment
    assert s.model == "/x/model.onnx"  # None means "not given": the environment applies
    with pytest.raises(InputError, match="MASKWATCH_MAX_UPLOAD_MB"):
        ServerSettings.from_env({"MASKWATCH_MAX_UPLOAD_MB": "lots"})
    with pytest.raises(InputError, match="upload limit"):
        ServerSettings(max_upload_mb=0)
    with pytest.raises(InputError, match="face detector"):
        ServerSettings(detector="haar")


def test_loopback_and_url():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("::")
    assert server_url("127.0.0.1", 8000) == "http://127.0.0.1:8000/"
    assert server_url("::1", 8080) == "http://[::1]:8080/"
    assert server_url("0.0.0.0", 8000) == "http://127.0.0.1:8000/"


def test_serve_loads_once_warns_off_loopback_and_reports_busy_port(engine, monkeypatch, caplog):
    import uvicorn

    import maskwatch.server.app as app_mod
    from maskwatch.server import serve

    loads = []
    monkeypatch.setattr(app_mod, "load_engine", lambda settings: loads.append(settings) or engine)
    access = logging.getLogger("maskwatch.access")
    monkeypatch.setattr(access, "handlers", list(access.handlers))  # serve() adds its stderr handler: undone after
    monkeypatch.setattr(access, "propagate", access.propagate)
    monkeypatch.setattr(access, "level", access.level)
    ran = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: ran.append((self.config, sockets)))
    urls: list[str] = []
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with caplog.at_level("WARNING", logger="maskwatch.server"):
        serve(host="0.0.0.0", port=port, on_ready=urls.append)
    assert len(loads) == 1 and len(ran) == 1
    assert urls == [f"http://127.0.0.1:{port}/"]
    assert "reachable from other machines" in caplog.text
    config, sockets = ran[0]
    assert config.access_log is False and sockets and sockets[0].fileno() == -1  # closed after run

    caplog.clear()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        busy_port = busy.getsockname()[1]
        with caplog.at_level("WARNING", logger="maskwatch.server"):
            with pytest.raises(InputError, match=f"127.0.0.1:{busy_port}.*--port"):
                serve(host="127.0.0.1", port=busy_port)
    assert "reachable" not in caplog.text  # no warning on loopback


def test_static_files_are_packaged():
    """Every asset the pages use exists, and pyproject's package-data ships every file of static/."""
    import fnmatch
    import tomllib

    root = Path(__file__).resolve().parents[1]
    package_data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    patterns = package_data["maskwatch"]
    package_dir = root / "src" / "maskwatch"
    files = [f for f in STATIC_DIR.rglob("*") if f.is_file()]
    assert {f.name for f in files} >= {"index.html", "app.js", "style.css", "docs.html", "docs.js", "docs.css"}
    for f in files:
        rel = f.relative_to(package_dir).as_posix()
        assert any(fnmatch.fnmatchcase(rel, pat) and rel.count("/") == pat.count("/") for pat in patterns), (
            f"{rel} is not shipped by package-data {patterns}")
    for page in ("index.html", "docs.html"):
        for asset in re.findall(r"""(?:src|href)=["']/static/([^"']+)""", (STATIC_DIR / page).read_text()):
            assert (STATIC_DIR / asset).is_file(), (page, asset)


# ------------------------------------------------------------------------------------ hostile uploads

import http.client  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import urllib.error  # noqa: E402
import urllib.request  # noqa: E402

from PIL import EpsImagePlugin  # noqa: E402

from maskwatch.boxes import box_iou  # noqa: E402
from maskwatch.engine import MaskDetector  # noqa: E402
from test_images import EPS, lying_jpeg  # noqa: E402

NEVER_DECODED = [
    ("drawing.eps", EPS),
    ("page.ps", b"%!PS-Adobe-3.0\n%%BoundingBox: 0 0 10 10\n%%EndComments\n{ } loop\nshowpage\n"),
    ("doc.pdf", b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"),
    ("pic.svg", b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
                b'<rect width="64" height="64" fill="red"/></svg>\n'),
]


@pytest.mark.parametrize("name,body", NEVER_DECODED, ids=[n for n, _ in NEVER_DECODED])
def test_415_for_eps_ps_pdf_svg_and_ghostscript_never_runs(client, monkeypatch, name, body):
    """Whether or not Ghostscript is installed: 415, and Pillow's EPS plugin never renders anything."""
    calls: list[str] = []

    def ghostscript(*args, **kwargs):
        calls.append(name)
        raise AssertionError("Ghostscript must never run")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", ghostscript)
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "load", lambda self, *a, **k: ghostscript())
    for declared in ("image/jpeg", "application/postscript", "image/svg+xml"):
        assert_error(client.post("/v1/detect", content=body, headers={"Content-Type": declared}), 415, "not an image")
        assert_error(client.post("/v1/detect", files={"file": (name, body, declared)}), 415, name, "JPEG, PNG")
        assert_error(client.post("/v1/classify", files={"files": (name, body, declared)}), 415, name)
    assert calls == []


def test_pixel_budget_is_per_request_summed_over_crops(engine):
    """32 crops that are each under the limit, but together over it, get 413 before any is decoded."""
    app = create_app(ServerSettings(max_pixels=1_000_000, workers=1), engine=engine)
    crop = encode(np.full((300, 300, 3), 120, np.uint8), "PNG")  # 90,000 pixels each
    files = [("files", (f"c{i}.png", crop, "image/png")) for i in range(32)]
    with TestClient(app, base_url="http://127.0.0.1") as c:
        detail = assert_error(c.post("/v1/classify", files=files), 413, "32 images", "1,000,000 pixels per request")
        assert "2,880,000" in detail and "300x300" in detail
        ok = c.post("/v1/classify", files=files[:11])  # 990,000 pixels
        assert ok.status_code == 200, ok.text
        assert len(ok.json()) == 11


@pytest.mark.parametrize("fmt", ["BMP", "GIF"])
def test_413_for_bombs_pillow_refuses_to_open(client, fmt):
    """Headers claiming 900 megapixels in formats whose size only Pillow reads: 413, not 415."""
    if fmt == "BMP":
        bomb = b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) + struct.pack("<IiiHHIIiiII", 40, 30_000, 30_000, 1, 24,
                                                                            0, 0, 0, 0, 0, 0)
    else:
        bomb = b"GIF89a" + struct.pack("<HHBBB", 30_000, 30_000, 0, 0, 0) + b",\x00\x00\x00\x00" + struct.pack(
            "<HHB", 30_000, 30_000, 0) + b"\x02\x02D\x01\x00;"
    assert_error(client.post("/v1/detect", files={"file": (f"bomb.{fmt.lower()}", bomb, "image/png")}), 413,
                 f"bomb.{fmt.lower()}", "too large")


def test_422_for_a_jpeg_whose_header_lies_about_its_size(client):
    r = client.post("/v1/detect", files={"file": ("liar.jpg", lying_jpeg((4000, 3000)), "image/jpeg")})
    assert_error(r, 422, "liar.jpg", "corrupt JPEG", "4000x3000")
    assert_error(client.post("/v1/classify", content=lying_jpeg((1000, 1000))), 422, "corrupt JPEG")


@needs_shared
def test_huge_photo_is_decoded_reduced_with_boxes_in_full_pixels(client, engine, scene_bytes):
    """A 5200 px photo is decoded at 1/2 in the JPEG decoder; boxes and size still refer to its full pixels."""
    big = Image.open(io.BytesIO(scene_bytes)).convert("RGB").resize((5200, 3467), Image.BICUBIC)
    data = encode(big, "JPEG", quality=92)
    r = client.post("/v1/detect", content=data)
    assert r.status_code == 200, r.text
    res = r.json()
    assert (res["width"], res["height"]) == (5200, 3467)
    scale = 5200 / 780
    small = engine.detect_bytes(scene_bytes).faces
    found = np.array([f["box"] for f in res["faces"]], np.float32).reshape(-1, 4)
    expected = np.array([f.box for f in small], np.float32).reshape(-1, 4) * scale
    iou = box_iou(expected, found)
    matched = int((iou.max(axis=1) >= 0.5).sum()) if len(found) else 0
    assert matched >= len(small) - 1, (matched, len(small))
    annotated = client.post("/v1/detect?format=jpeg", content=data)
    assert annotated.status_code == 200
    w, h = Image.open(io.BytesIO(annotated.content)).size
    assert w == 2600 and h >= 1734  # drawn at the decoded size (a legend under it when labels were shortened)


def test_multipart_with_a_preamble_is_accepted(client, gray_jpeg):
    body = (b"This is the preamble. RFC 2046 says a reader ignores it.\r\n"
            b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"grey.jpg\"\r\n"
            b"Content-Type: image/jpeg\r\n\r\n" + gray_jpeg + b"\r\n--xyz--\r\nand an epilogue\r\n")
    r = client.post("/v1/detect", content=body, headers={"Content-Type": "multipart/form-data; boundary=xyz"})
    assert r.status_code == 200, r.text
    assert r.json()["source"] == "grey.jpg"


def test_security_headers_on_page_api_and_errors(client, gray_jpeg):
    responses = [
        client.get("/"), client.get("/docs"), client.get("/static/app.js"), client.get("/openapi.json"),
        client.post("/v1/detect", content=gray_jpeg), client.post("/v1/detect", content=b"text"), client.get("/nope"),
    ]
    for r in responses:
        csp = r.headers.get("content-security-policy", "")
        for directive in ("default-src 'self'", "script-src 'self'", "style-src 'self'", "connect-src 'self'",
                          "frame-ancestors 'none'", "object-src 'none'"):
            assert directive in csp, (r.request.url, directive, csp)
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["x-frame-options"] == "DENY"


def test_pages_have_nothing_inline_that_the_csp_would_block():
    """script-src / style-src 'self': no inline scripts, handlers or style attributes in the pages."""
    for f in STATIC_DIR.glob("*.html"):
        html = f.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), f
        assert not re.search(r"<style|\sstyle\s*=|\son[a-z]+\s*=|javascript:", html, re.I), f
    for f in STATIC_DIR.glob("*.js"):
        js = f.read_text()
        assert not re.search(r"""setAttribute\(\s*["']style|\bstyle\s*:\s*["']"""
                             r"""|\.innerHTML\s*=|\beval\(|new Function\(""",
                             js), f


def test_host_check_against_dns_rebinding(client, engine):
    for host in ("evil.example", "evil.example:8000", "127.0.0.1.nip.io:8000", "localhost.evil.example"):
        assert_error(client.get("/health", headers={"Host": host}), 400, "DNS rebinding", "127.0.0.1")
    for host in ("localhost:8000", "127.0.0.1", "127.0.0.1:8000", "[::1]:8000", "LOCALHOST"):
        assert client.get("/health", headers={"Host": host}).status_code == 200, host
    public = create_app(ServerSettings(host="0.0.0.0", workers=1), engine=engine)
    with TestClient(public, base_url="http://maskwatch.example") as c:  # bound to every address: any name
        assert c.get("/health").status_code == 200


# ------------------------------------------------------------------------------------ a real server


class LiveServer:
    """uvicorn serving ``app`` on a free 127.0.0.1 port in a thread; its log records reach caplog."""

    def __init__(self, app) -> None:
        import uvicorn

        from maskwatch.server import uvicorn_options

        self.app = app
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        # The options `maskwatch serve` uses, with logging left to pytest.
        options = {**uvicorn_options(app.state.settings), "port": self.port, "log_level": None}
        config = uvicorn.Config(app, log_config=None, **options)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def pool(self):
        return self.app.state.pool

    def __enter__(self) -> LiveServer:
        self.thread.start()
        wait_until(lambda: self.server.started or not self.thread.is_alive(), 60)
        assert self.server.started, "the test server did not start"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.sock.close()


def wait_until(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


def post(port: int, body: bytes, path: str = "/v1/detect", timeout: float = 60) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "image/jpeg"})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def start_upload(port: int, declared: int, first: bytes = b"") -> socket.socket:
    """Open a request that declares ``declared`` body bytes and send only ``first`` of them."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST /v1/detect HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
              b"Content-Length: %d\r\n\r\n" % declared + first)
    return s


def read_response(s: socket.socket, timeout: float = 20) -> tuple[int, bytes]:
    s.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head else 0
    length = re.search(rb"content-length:\s*(\d+)", head, re.I)
    while length and len(body) < int(length.group(1)):
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, head + b"\r\n\r\n" + body


def test_oversized_upload_gets_its_413_under_urllib_too(engine):
    """The server reads and discards the rest of the body, so clients that send it all see the 413."""
    with LiveServer(create_app(ServerSettings(max_upload_mb=0.05, workers=1), engine=engine)) as srv:
        body = b"\xff\xd8\xff" + b"\x00" * 16_000_000
        req = urllib.request.Request(f"http://127.0.0.1:{srv.port}/v1/detect", data=body, method="POST",
                                     headers={"Content-Type": "image/jpeg"})
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(req, timeout=60)
        assert info.value.code == 413
        detail = json.loads(info.value.read())["detail"]
        assert "over the limit of 0.05 MB" in detail and "MASKWATCH_MAX_UPLOAD_MB" in detail
        # Chunked, without a Content-Length: refused as it passes the limit, the rest drained too.
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
        conn.request("POST", "/v1/detect", body=(body[i:i + 65536] for i in range(0, len(body), 65536)),
                     encode_chunked=True, headers={"Content-Type": "image/jpeg"})
        r = conn.getresponse()
        assert r.status == 413 and "limit" in json.loads(r.read())["detail"]
        conn.close()


def test_503_with_retry_after_when_the_queue_is_full(engine, gray_jpeg, monkeypatch):
    with LiveServer(create_app(ServerSettings(workers=1, max_queue=1), engine=engine)) as srv:
        # Two requests whose bodies have arrived hold the one worker and the one queue place.
        gate = threading.Event()
        real_detect = MaskDetector.detect
        monkeypatch.setattr(MaskDetector, "detect",
                            lambda self, *a, **k: (gate.wait(30), real_detect(self, *a, **k))[1])
        held = [threading.Thread(target=post, args=(srv.port, gray_jpeg)) for _ in range(2)]
        for t in held:
            t.start()
        wait_until(lambda: srv.pool.active == 2)
        status, headers, body = post(srv.port, gray_jpeg)
        assert status == 503, body
        assert headers["retry-after"] == "1"
        detail = json.loads(body)["detail"]
        assert "busy" in detail and "retry" in detail.lower()
        gate.set()
        for t in held:
            t.join(30)
        wait_until(lambda: srv.pool.active == 0)
        assert post(srv.port, gray_jpeg)[0] == 200


def test_408_when_the_upload_stalls(engine):
    with LiveServer(create_app(ServerSettings(workers=1, upload_timeout_s=1.0), engine=engine)) as srv:
        s = start_upload(srv.port, declared=10_000, first=b"\xff\xd8\xff")
        status, raw = read_response(s)
        s.close()
        assert status == 408, raw
        assert b"did not arrive within 1 s" in raw
        wait_until(lambda: srv.pool.uploads.active == 0)


def test_abandoned_requests_are_dropped_not_processed(engine, gray_jpeg, monkeypatch):
    """Requests whose clients gave up while queued never reach a worker; the next one is not delayed."""
    with LiveServer(create_app(ServerSettings(workers=1, max_queue=16), engine=engine)) as srv:
        gate = threading.Event()
        calls: list[tuple[int, ...]] = []
        real_detect = MaskDetector.detect

        def gated_detect(self, image, *args, **kwargs):
            calls.append(image.shape)
            gate.wait(30)
            return real_detect(self, image, *args, **kwargs)

        monkeypatch.setattr(MaskDetector, "detect", gated_detect)
        first: list[int] = []
        t = threading.Thread(target=lambda: first.append(post(srv.port, gray_jpeg)[0]))
        t.start()
        wait_until(lambda: len(calls) == 1)  # the worker is busy with the first request
        abandoned = [start_upload(srv.port, declared=len(gray_jpeg), first=gray_jpeg) for _ in range(5)]
        wait_until(lambda: srv.pool.active == 6)  # all five uploaded and waiting for the worker
        for s in abandoned:
            s.close()  # their clients give up
        wait_until(lambda: srv.pool.active == 1)
        gate.set()
        t.join(30)
        assert first == [200]
        assert post(srv.port, gray_jpeg)[0] == 200
        assert len(calls) == 2, f"{len(calls) - 2} abandoned requests were processed"


def test_client_that_disconnects_mid_upload_logs_one_quiet_line_at_most(engine, caplog):
    with caplog.at_level(logging.DEBUG):
        with LiveServer(create_app(ServerSettings(workers=1), engine=engine)) as srv:
            s = start_upload(srv.port, declared=100_000, first=b"\xff\xd8\xff" + b"\x00" * 1000)
            wait_until(lambda: srv.pool.uploads.active == 1)
            s.close()
            wait_until(lambda: srv.pool.uploads.active == 0)
            time.sleep(0.3)
    records = [r for r in caplog.records if r.name.startswith(("maskwatch", "uvicorn"))]
    loud = [r.getMessage() for r in records if r.levelno >= logging.WARNING or r.exc_info]
    assert loud == []
    assert len([r for r in records if "went away" in r.getMessage()]) <= 1
    assert "internal error" not in caplog.text and "Traceback" not in caplog.text


def test_431_for_ten_thousand_headers(engine):
    with LiveServer(create_app(ServerSettings(workers=1), engine=engine)) as srv:
        s = socket.create_connection(("127.0.0.1", srv.port))
        s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  + b"".join(b"X-Header-%d: v\r\n" % i for i in range(10_000)) + b"\r\n")
        status, raw = read_response(s)
        s.close()
        assert status == 431, raw[:200]
        assert b'"detail"' in raw and b"header" in raw
