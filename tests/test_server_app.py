"""The server's structure (issue 13 item 5): one settings object validated at start, --db as a setting,
routers per resource with room for more, /v1/info, one access-log line per request."""

from __future__ import annotations

import logging
import os
import re

import pytest

pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
pytest.importorskip("httpx", reason="httpx is needed by FastAPI's TestClient")

from fastapi import APIRouter, Request  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from conftest import assert_one_line_error, run_cli  # noqa: E402
from maskwatch.server.app import create_app  # noqa: E402
from maskwatch.server.settings import ENV_NAMES, ServerSettings  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_every_setting_reads_its_variable_and_arguments_win():
    env = {name: None for name in ENV_NAMES}
    assert ENV_NAMES["upload_timeout_s"] == "MASKWATCH_UPLOAD_TIMEOUT" and ENV_NAMES["db"] == "MASKWATCH_DB"
    assert len(env) >= 25
    s = ServerSettings.from_env({"MASKWATCH_MAX_JOBS": "2", "MASKWATCH_JOB_TTL_S": "5", "MASKWATCH_DB": "/x.db",
                                 "MASKWATCH_ACCESS_LOG": "0", "MASKWATCH_UPLOAD_TIMEOUT": "4"}, max_jobs=3)
    assert (s.max_jobs, s.job_ttl_s, s.db, s.access_log, s.upload_timeout_s) == (3, 5.0, "/x.db", False, 4.0)


def test_a_bad_setting_stops_serve_at_start_with_one_line():
    result = run_cli("serve", "--port", "1", env={"MASKWATCH_MAX_JOBS": "several"})
    assert_one_line_error(result, "MASKWATCH_MAX_JOBS")
    result = run_cli("serve", "--port", "1", env={"MASKWATCH_LOG_LEVEL": "loud"})
    assert_one_line_error(result, "log level")


def test_serve_db_is_a_setting_not_an_environment_variable(monkeypatch, tmp_path):
    from click.testing import CliRunner

    import maskwatch.server
    from maskwatch.cli import cli

    seen = {}
    monkeypatch.setattr(maskwatch.server, "serve", lambda **kw: seen.update(kw))
    monkeypatch.delenv("MASKWATCH_DB", raising=False)
    result = CliRunner().invoke(cli, ["serve", "--db", str(tmp_path / "site.db"), "--port", "8123"])
    assert result.exit_code == 0, result.output
    assert seen["db"] == str(tmp_path / "site.db") and "MASKWATCH_DB" not in os.environ


def test_more_routers_can_be_mounted_and_reach_the_pool(engine):
    extra = APIRouter()

    @extra.get("/watch/ping")
    async def ping(request: Request) -> dict:
        return {"workers": request.app.state.pool.size}

    later = APIRouter()

    @later.get("/watch/later")
    async def later_route() -> dict:
        return {"ok": True}

    app = create_app(ServerSettings(workers=1), engine=engine, routers=[extra])
    app.include_router(later)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        assert c.get("/watch/ping").json() == {"workers": 1}
        assert c.get("/watch/later").json() == {"ok": True}
        assert c.get("/health").status_code == 200


def test_info_shows_the_effective_settings_without_server_paths(engine, tmp_path):
    settings = ServerSettings(workers=1, max_jobs=2, db=str(tmp_path / "x.db"), jobs_dir=str(tmp_path))
    with TestClient(create_app(settings, engine=engine), base_url="http://127.0.0.1") as c:
        info = c.get("/v1/info").json()
    assert info["settings"]["max_jobs"] == 2 and info["settings"]["event_log"] is True
    assert info["environment"]["max_jobs"] == "MASKWATCH_MAX_JOBS"
    assert info["engine"]["mirror_photos"] == engine.mirror_photos and info["engine"]["classes"]
    assert str(tmp_path) not in str(info)


def test_one_access_log_line_per_request(engine, caplog):
    from test_server import LiveServer, post

    line = re.compile(r'^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] "(GET|POST) (\S+) HTTP/1\.1" '
                      r'(\d{3}) (\d+|-) "[^"]*" "[^"]*" \d+\.\d{3}$')
    with caplog.at_level(logging.INFO, logger="maskwatch.access"):
        with LiveServer(create_app(ServerSettings(workers=1), engine=engine)) as srv:
            assert post(srv.port, b"hello\n")[0] == 415
            import urllib.request

            urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/health?x=1", timeout=30).read()
    lines = [r.getMessage() for r in caplog.records if r.name == "maskwatch.access"]
    assert len(lines) == 2, lines
    found = [line.match(x) for x in lines]
    assert all(found), lines
    assert [(m.group(1), m.group(2), m.group(3)) for m in found] == [("POST", "/v1/detect", "415"),
                                                                     ("GET", "/health?x=1", "200")]


def test_serve_options_left_out_let_the_environment_apply(monkeypatch):
    from click.testing import CliRunner

    import maskwatch.server
    from maskwatch.cli import cli

    seen = {}
    monkeypatch.setattr(maskwatch.server, "serve", lambda **kw: seen.update(kw))
    assert CliRunner().invoke(cli, ["serve"]).exit_code == 0
    assert seen["host"] is None and seen["port"] is None and seen["max_upload_mb"] is None
    s = ServerSettings.from_env({"MASKWATCH_PORT": "9123", "MASKWATCH_MAX_UPLOAD_MB": "3"},
                                host=seen["host"], port=seen["port"], max_upload_mb=seen["max_upload_mb"])
    assert (s.host, s.port, s.max_upload_mb) == ("127.0.0.1", 9123, 3.0)
