"""The watch dashboard in a real browser (Debian's ``chromium``, headless, driven by Playwright).

A site of three looped clips runs in this process, its dashboard served by uvicorn on 127.0.0.1.
The page must show one tile per camera (thumbnail, health, counts), a uPlot chart per camera and for
the site that shows values on hover and zooms on a drag, and the recent alerts, all under the
server's Content-Security-Policy (uPlot is vendored: no CDN). Screenshots go to ``test-artifacts/``.
Needs ``apt-get install -y chromium`` and the ``playwright`` Python package.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from conftest import ROOT, SHARED, needs_shared

CHROMIUM = Path(os.environ.get("MASKWATCH_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = ROOT / "test-artifacts"
VIDEOS = SHARED / "data" / "video"

pytestmark = [
    pytest.mark.slow,
    needs_shared,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"{CHROMIUM} is missing: apt-get install -y chromium"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
pytest.importorskip("uvicorn", reason="the serve extra (uvicorn) is not installed")


def wait_js(page, expression: str, timeout: float = 20.0) -> None:
    """Poll a JavaScript expression until it is truthy (Playwright's wait_for_function evaluates strings
    with eval(), which the page's Content-Security-Policy forbids; page.evaluate is not subject to it)."""
    deadline = time.monotonic() + timeout
    guarded = f"(() => {{ try {{ return !!({expression}); }} catch (e) {{ return false; }} }})()"
    while not page.evaluate(guarded):
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout} s: {expression}")
        time.sleep(0.2)


class _Server:
    def __init__(self, app) -> None:
        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture(scope="module")
def site_server(engine):
    from maskwatch.server.app import ServerSettings, create_app
    from maskwatch.watch import Monitor, parse_site
    from maskwatch.watch.web import mount

    site = parse_site({"site": {"name": "Browser test site"}, "defaults": {"fps": 4, "alert_after_s": 1},
                       "camera": [{"name": "airport", "source": str(VIDEOS / "airport-crowd.mp4")},
                                  {"name": "entrance", "source": str(VIDEOS / "single-unmasked.mp4")},
                                  {"name": "lobby", "source": str(VIDEOS / "putting-mask-on.mp4")}]})
    with Monitor(site, engine=engine) as mon, \
            _Server(mount(create_app(ServerSettings(), engine=mon.engine), mon)) as server:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
                all(c.frames >= 8 for c in mon.cameras.values()) and mon.cameras["entrance"].alerts):
            time.sleep(0.5)
        yield server


def test_dashboard_tiles_charts_hover_zoom_alerts(site_server):
    ARTIFACTS.mkdir(exist_ok=True)
    csp_errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1300})
            page.on("console", lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None)
            page.goto(site_server.url + "/watch")
            wait_js(page, "document.querySelectorAll('.tile').length === 3")
            # every tile: a thumbnail that loaded, a health badge, counts, and its own chart
            wait_js(page, "[...document.querySelectorAll('.tile img.thumb')].every(i => i.naturalWidth > 0)")
            names = page.eval_on_selector_all(".tile h3", "els => els.map(e => e.textContent)")
            assert names == ["airport", "entrance", "lobby"]
            assert page.eval_on_selector_all(".tile .badge:not(.alert)", "els => els.map(e => e.textContent)") \
                == ["connected"] * 3
            assert page.locator(".tile .uplot").count() == 3 and page.locator("#chart-site .uplot").count() == 1
            wait_js(page, "window.maskwatchCharts['airport'].plot.data[0].length >= 2")
            assert page.inner_text("#t-connected") == "3 / 3"
            # the chart, fetched a few seconds at a time (since=), holds the same points as the whole series
            page.wait_for_timeout(4500)
            same = page.evaluate("""async () => {
                const all = (await (await fetch('/v1/watch/timeline?camera=airport')).json()).points.map(p => p[0]);
                const shown = window.maskwatchCharts['airport'].plot.data[0];
                const n = Math.min(all.length, shown.length) - 2;
                return n > 3 && JSON.stringify(all.slice(0, n)) === JSON.stringify(Array.from(shown.slice(0, n)));
            }""")
            assert same
            # recent alerts: the unmasked man at the entrance
            page.wait_for_selector("#recent td.kind-unmasked_alert", timeout=20000)
            assert page.locator(".tile[data-camera='entrance'] .badge.alert").is_visible()
            page.screenshot(path=str(ARTIFACTS / "watch-dashboard.png"), full_page=True)

            # hover: the legend shows the values under the cursor
            over = page.locator("#chart-site .u-over")
            box = over.bounding_box()
            page.mouse.move(box["x"] + box["width"] * 0.9, box["y"] + box["height"] / 2)
            value = page.inner_text("#chart-site .u-legend .u-series:nth-child(2) .u-value")
            assert value not in ("", "–", "--"), value
            # zoom: a drag narrows the time axis; a double-click resets it
            page.evaluate("window.maskwatchCharts[''].zoomed = false")
            before = page.evaluate("(() => { const s = window.maskwatchCharts[''].plot.scales.x; "
                                   "return s.max - s.min; })()")
            page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + 20)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + 20, steps=5)
            page.mouse.up()
            after = page.evaluate("(() => { const s = window.maskwatchCharts[''].plot.scales.x; "
                                  "return s.max - s.min; })()")
            assert after < before * 0.7, (before, after)
            assert page.evaluate("window.maskwatchCharts[''].zoomed")
            page.screenshot(path=str(ARTIFACTS / "watch-dashboard-zoomed.png"), full_page=True)
        finally:
            browser.close()
    assert not csp_errors, csp_errors
