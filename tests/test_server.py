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
    external = re.compile(r"""(src|href)\s*=\s*["']?(https?:)?//|url\(\s*["']?(https?:)?//|fetch\(\s*["']https?:""", re.I)
    for url in ("/", "/docs"):
        r = client.get(url)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert not external.search(r.text), url
        for asset in re.findall(r"""(?:src|href)=["'](/static/[^"']+)""", r.text):
            a = client.get(asset)
            assert a.status_code == 200, asset
            assert not external.search(a.text), asset
    for f in STATIC_DIR.iterdir():
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
    n_with = sum(f["label"] == "with_mask" for f in got["faces"])
    assert r.headers["x-faces-total"] == str(len(got["faces"]))
    assert r.headers["x-faces-with-mask"] == str(n_with)
    assert r.headers["x-faces-without-mask"] == str(len(got["faces"]) - n_with)
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
    assert img.size == (780, 520)
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
        assert set(o) == {"source", "label", "score", "probs"}
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
    for name in ("index.html", "app.js", "style.css", "docs.html", "docs.js", "docs.css"):
        assert (STATIC_DIR / name).is_file(), name
    assert Path(STATIC_DIR).parent.name == "server"
