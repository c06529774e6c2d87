"""The Video file tab in a real browser (Debian's Chromium, headless, as in test_browser.py).

A clip is uploaded as a job; the page must show its progress, then play the annotated video and
show the timeline chart, the people table and the summary. A video dropped on the photo box must
go to the Video file tab instead of an error. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import SHARED, write_clip
from test_browser import ARTIFACTS, BASE_ARGS, CHROMIUM, LiveServer, sync_api

CLIP = SHARED / "data" / "video" / "putting-mask-on.mp4"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(),
                       reason=f"{CHROMIUM} is missing: apt-get install -y chromium (or set MASKWATCH_CHROMIUM)"),
    pytest.mark.skipif(not CLIP.is_file(), reason=f"needs the shared data folder at {SHARED}"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


@pytest.fixture(scope="module")
def server(engine, tmp_path_factory):
    from maskwatch.server.app import ServerSettings, create_app

    jobs = str(tmp_path_factory.mktemp("jobs"))
    with LiveServer(create_app(ServerSettings(jobs_dir=jobs), engine=engine)) as s:
        yield s


def watch_errors(pg) -> list[str]:
    """JavaScript errors and Content-Security-Policy violations on the page, as test_browser counts them."""
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" and (
        "Content Security Policy" in msg.text or "Refused to" in msg.text) else None)
    return errors


@pytest.fixture()
def page(server):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=BASE_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 1100})
        pg = context.new_page()
        errors = watch_errors(pg)
        pg.goto(server.url)
        yield pg
        browser.close()
        assert errors == [], f"JavaScript errors or CSP violations on the page: {errors}"


def test_video_job_plays_the_result_with_chart_and_people(page):
    ARTIFACTS.mkdir(exist_ok=True)
    page.click("#tab-video")
    assert page.is_visible("#video-panel") and not page.is_visible("#photo-panel")
    page.select_option("#video-blur", "without_mask")
    page.set_input_files("#video-input", str(CLIP))
    page.wait_for_selector("#video-progress", state="visible", timeout=10000)
    page.wait_for_selector("#video-result", state="visible", timeout=240000)
    status = page.text_content("#video-status")
    assert "234 frames" in status
    summary = page.text_content("#video-summary")
    assert summary.startswith("1 person ") and "compliance" in summary
    rows = page.query_selector_all("#video-tracks tbody tr")
    assert len(rows) == 1 and "without_mask → with_mask" in rows[0].text_content()
    # The track ends with a mask: not drawn red (before: red for any unmasked moment).
    assert rows[0].get_attribute("data-label") == "with_mask" and rows[0].get_attribute("class") != "unmasked"
    assert page.evaluate("() => getComputedStyle(document.querySelector('#video-tracks tbody td')).color") \
        != "rgb(190, 30, 30)"
    page.wait_for_function("() => document.getElementById('video-player').readyState >= 2", timeout=20000)
    state = page.evaluate("""async () => { const v = document.getElementById('video-player');
        await v.play(); await new Promise(r => setTimeout(r, 700)); v.pause();
        return {duration: v.duration, time: v.currentTime, w: v.videoWidth, error: v.error}; }""")
    assert state["error"] is None and state["w"] == 388 and state["time"] > 0
    assert state["duration"] == pytest.approx(234 / 25, abs=0.3)
    # The timeline is an interactive chart (vendored uPlot), not a picture: hover shows the values.
    page.wait_for_selector("#video-timeline canvas", timeout=10000)
    legend = page.text_content("#video-timeline .u-legend")
    assert "with mask" in legend and "without mask" in legend
    box = page.query_selector("#video-timeline .u-over").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] / 2)
    values = page.eval_on_selector_all("#video-timeline .u-legend .u-value", "els => els.map(e => e.textContent)")
    assert any(v.strip() not in ("", "--") for v in values[1:]), values
    links = [a.text_content() for a in page.query_selector_all("#video-downloads a")]
    assert {"video.mp4", "frames.jsonl", "faces.csv", "summary.json"} <= set(links)
    page.screenshot(path=str(ARTIFACTS / "video-job.png"), full_page=True)


def test_a_video_given_to_the_photo_box_goes_to_the_video_tab(page, tmp_path):
    clip = write_clip(tmp_path / "hallway.mp4", [np.full((120, 160, 3), 90, np.uint8)] * 10)
    page.set_input_files("#file-input", str(clip))
    page.wait_for_selector("#video-panel", state="visible", timeout=10000)
    page.wait_for_selector("#video-result", state="visible", timeout=60000)
    assert "10 frames" in page.text_content("#video-status")
    assert page.text_content("#video-summary") == "Nobody was tracked long enough to count."
    photo_status = page.text_content("#photo-status") or ""
    assert "ftyp" not in photo_status and "\\x00" not in photo_status
    page.screenshot(path=str(ARTIFACTS / "video-from-photo-box.png"), full_page=True)


def test_live_session_totals_timeline_snapshot_and_a_clear_stop(server, tmp_path):
    """Chromium's fake camera plays a masked person: the session counts one person with a mask, draws
    the timeline, offers a snapshot, and after Stop says it stopped (no stale live counts)."""
    from test_browser import VIDEO, write_y4m

    cam = tmp_path / "masked.y4m"
    write_y4m(VIDEO, cam)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=[
            *BASE_ARGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={cam}"])
        page = browser.new_context(viewport={"width": 1280, "height": 1200}).new_page()
        errors = watch_errors(page)
        page.goto(server.url)
        page.click("#tab-live")
        page.click("#live-start")
        page.wait_for_function("() => Number(document.getElementById('live-people').textContent) >= 1", timeout=60000)
        page.wait_for_function("() => Number(document.getElementById('live-frames').textContent) >= 15", timeout=60000)
        assert int(page.text_content("#live-people-with")) >= 1
        assert page.text_content("#live-compliance").endswith("%)")
        drawn = page.evaluate("""() => { const c = document.getElementById('live-timeline');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let g = 0;
            for (let i = 0; i < d.length; i += 4) if (d[i + 1] > 150 && d[i] < 90 && d[i + 3] > 0) g++;
            return g; }""")
        assert drawn > 50  # green bars: people with a mask per 5 s
        with page.expect_download() as dl:
            page.click("#live-snapshot")
        snapshot = tmp_path / "snapshot.png"
        dl.value.save_as(snapshot)
        import cv2

        img = cv2.imread(str(snapshot))
        assert img is not None and img.shape[1] >= 320
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "live-session.png"), full_page=True)
        people = page.text_content("#live-people")
        page.click("#live-stop")
        state = page.text_content("#live-session-state")
        assert state.startswith("Stopped at") and "final totals" in state
        assert page.text_content("#live-total") == "–" and page.text_content("#live-people") == people
        assert "stopped" in page.get_attribute("#live-stage", "class")
        page.screenshot(path=str(ARTIFACTS / "live-stopped.png"), full_page=True)
        browser.close()
    assert errors == [], f"JavaScript errors or CSP violations on the page: {errors}"


def test_crowd_photo_labels_do_not_cover_each_other_and_small_photos_are_enlarged(page):
    photo = SHARED / "data" / "scenes-dev" / "images" / "_111550872_gettyimages-1128162568.jpg"  # 410x230, 27 faces
    page.set_input_files("#file-input", str(photo))
    page.wait_for_selector("#photo-result", state="visible", timeout=60000)
    page.wait_for_function("() => document.getElementById('photo-canvas').dataset.labelBoxes !== undefined",
                           timeout=30000)
    width = page.evaluate("() => document.getElementById('photo-canvas').width")
    boxes = page.evaluate("() => JSON.parse(document.getElementById('photo-canvas').dataset.labelBoxes)")
    n_faces = int(page.evaluate("() => document.getElementById('photo-canvas').dataset.faces"))
    assert width == 410 * 2 and len(boxes) == n_faces >= 10
    free = [b for b in boxes if not b[4]]
    assert len(free) >= 0.8 * len(boxes)  # nearly every label found a free place
    for i, a in enumerate(free):
        for b in free[i + 1:]:
            assert not (a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]), (a, b)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "photo-crowd-labels.png"), full_page=True)


def test_photo_blur_hides_the_chosen_faces_in_the_picture_and_download(page, tmp_path):
    import cv2

    photo = SHARED / "data" / "scenes-dev" / "images" / "01242020_masks-qa_151720-780x520.jpg"
    page.select_option("#photo-blur", "all")
    page.set_input_files("#file-input", str(photo))
    page.wait_for_selector("#photo-result", state="visible", timeout=60000)
    page.wait_for_function("() => document.getElementById('photo-canvas').dataset.blurred !== undefined")
    n_faces = int(page.evaluate("() => document.getElementById('photo-canvas').dataset.faces"))
    assert int(page.evaluate("() => document.getElementById('photo-canvas').dataset.blurred")) == n_faces >= 5
    page.wait_for_function("() => document.getElementById('download-link').href.startsWith('blob:')")
    with page.expect_download() as dl:
        page.click("#download-link")
    out = tmp_path / "download.png"
    dl.value.save_as(out)
    got, orig = cv2.imread(str(out)), cv2.imread(str(photo))
    assert got.shape == orig.shape
    boxes = [[int(float(c)) for c in row.query_selector_all("td")[1].text_content().split(",")]
             for row in page.query_selector_all("#faces-table tbody tr")]
    checked = 0
    for x1, y1, x2, y2 in boxes:  # the middle of each face has lost its detail
        w, h = x2 - x1, y2 - y1
        if w < 30:  # too small to measure apart from the box and number drawn over it
            continue
        checked += 1
        sl = (slice(y1 + h // 4, y2 - h // 4), slice(x1 + w // 4, x2 - w // 4))
        detail = [float(abs(cv2.Laplacian(cv2.cvtColor(im[sl], cv2.COLOR_BGR2GRAY), cv2.CV_64F)).mean())
                  for im in (got, orig)]
        assert detail[0] < 0.6 * detail[1], (x1, y1, detail)
    assert checked >= 3
    page.screenshot(path=str(ARTIFACTS / "photo-blur.png"), full_page=True)


def test_the_blur_menu_redraws_the_photo_already_shown(page):
    """Before: changing the Blur menu did nothing until another photo was uploaded."""
    photo = SHARED / "data" / "scenes-dev" / "images" / "01242020_masks-qa_151720-780x520.jpg"
    page.select_option("#photo-blur", "none")
    page.set_input_files("#file-input", str(photo))
    page.wait_for_selector("#photo-result", state="visible", timeout=60000)
    page.wait_for_function("() => document.getElementById('photo-canvas').dataset.blurred === '0'")
    before = page.evaluate("() => document.getElementById('photo-canvas').toDataURL()")
    n_faces = int(page.evaluate("() => document.getElementById('photo-canvas').dataset.faces"))
    page.select_option("#photo-blur", "all")
    page.wait_for_function(f"() => document.getElementById('photo-canvas').dataset.blurred === '{n_faces}'",
                           timeout=10000)
    assert page.evaluate("() => document.getElementById('photo-canvas').toDataURL()") != before
    page.select_option("#photo-blur", "without_mask")
    unmasked = len(page.query_selector_all('#faces-table tbody tr[data-label="without_mask"]'))
    page.wait_for_function(f"() => document.getElementById('photo-canvas').dataset.blurred === '{unmasked}'",
                           timeout=10000)


def test_crowd_photo_counts_add_up_to_the_faces(page):
    """Before: three count fields; the mask_incorrect and uncertain faces appeared nowhere."""
    photo = SHARED / "data" / "scenes-dev" / "images" / "_111550872_gettyimages-1128162568.jpg"
    page.set_input_files("#file-input", str(photo))
    page.wait_for_selector("#faces-table tbody tr[data-label]", timeout=60000)
    keys = ("with_mask", "without_mask", "mask_incorrect", "uncertain")
    counts = {k: int(page.text_content(f'#photo-counts [data-count="{k}"]')) for k in (*keys, "total")}
    rows = page.query_selector_all("#faces-table tbody tr[data-label]")
    assert counts["total"] == len(rows) >= 10
    assert sum(counts[k] for k in keys) == counts["total"], counts
    assert counts["uncertain"] == sum("(uncertain)" in r.text_content() for r in rows)
    assert page.is_visible('#photo-counts [data-count="mask_incorrect"]')
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "photo-crowd-counts.png"), full_page=True)


def test_the_video_tab_error_for_a_text_file_names_the_video_endpoint(page, tmp_path):
    """Before: the error for a .txt pointed to POST /v1/detect, the photo endpoint."""
    notes = tmp_path / "notes.txt"
    notes.write_text("hello\n")
    page.click("#tab-video")
    page.set_input_files("#video-input", str(notes))
    page.wait_for_selector("#video-status.error", timeout=20000)
    status = page.text_content("#video-status")
    assert "/v1/jobs" in status and "/v1/detect" not in status and "not a video" in status
    assert "b'" not in status
