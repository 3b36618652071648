"""The linked video report in a real headless Chromium (the setup of tests/test_browser_viz.py), opened from
file:// with every non-file request refused: the video plays (VP8/WebM; Debian's Chromium also plays H.264 MP4,
VP9 and AV1, not MPEG-4 part 2), the playhead follows it, a click on a bar seeks to the bar's start, and the
thumbnails under the time axis show the frames of their times."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tal_kit.inference.candidates import VideoDetections
from tal_kit.viz.video import PLAYHEAD, LinkedVideo, write_linked_report
from tests.block_videos import block_colour, decoded_frames, frame_shown_at, write_block_video
from tests.test_browser_viz import _save_screenshot, browser  # noqa: F401 - browser is a fixture

pytestmark = [pytest.mark.browser, pytest.mark.slow]

FPS = 25
LABELS = ["jump", "throw"]
DETS = VideoDetections(np.array([[1.0, 3.0], [4.24, 7.5], [8.0, 11.0], [6.2, 7.0]]),
                       np.array([0.9, 0.7, 0.6, 0.3]), np.array([0, 1, 0, 1]))
GT = [(1.2, 3.1, "jump"), (4.0, 7.0, "throw"), (8.36, 10.5, "jump")]

PLAYHEAD_X = f"""() => document.getElementById('tal-figure-0').layout.images
                     .find(im => im.name === '{PLAYHEAD}').x"""


def _offline(page) -> list[str]:
    refused: list[str] = []

    def route(route):
        if route.request.url.startswith(("file://", "data:")):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    page.route("**/*", route)
    return refused


def _bar_centre(page, trace_name: str, start: float) -> tuple[float, float, float, int, int]:
    """Screen centre of the bar of ``trace_name`` whose base (start) plotly computed as ``start``, that base, and
    the bar's (curve number, point number) as plotly's hover and click events name it."""
    found = page.evaluate("""([name, start]) => {
        const gd = document.getElementById('tal-figure-0');
        const traces = gd.querySelectorAll('.cartesianlayer .barlayer .trace');
        for (const group of traces) {
            const trace = group.__data__[0].trace;
            if (!trace.name.startsWith(name)) continue;
            for (const path of group.querySelectorAll('.point path')) {
                const d = path.parentNode.__data__;
                if (Math.abs(d.b - start) < 1e-9) {
                    const r = path.getBoundingClientRect();
                    return [r.x + r.width / 2, r.y + r.height / 2, d.b, trace.index, d.i];
                }
            }
        }
        return null;
    }""", [trace_name, start])
    assert found is not None, (trace_name, start)
    return tuple(found)


def _click_bar(page, x: float, y: float, curve: int, point: int) -> None:
    """Click the bar at (x, y) the way a person does: not within a double-click of the previous press, and only
    once the pointer rests on the bar (plotly's hover is on it).

    Both matter to plotly, not to the page: a press within ``doubleClickDelay`` (300 ms) of the previous one on the
    plot is the second click of a double-click (plotly then autoscales, a full redraw), and ``plotly_click``
    reports the points of the last hover, which plotly computes at most once per 50 ms: a press right after a jump
    of the pointer reports the bar hovered before it (the previous one) and seeks there."""
    page.wait_for_function("""() => { const gd = document.getElementById('tal-figure-0');
                                      return Date.now() - (gd._mouseDownTime || 0) > gd._context.doubleClickDelay; }""",
                           timeout=10_000)
    page.mouse.move(x, y)
    page.wait_for_function("""([curve, point]) => { const hover = document.getElementById('tal-figure-0')._hoverdata;
                                  return !!hover && hover.length > 0 && hover[0].curveNumber === curve
                                         && hover[0].pointNumber === point; }""", arg=[curve, point], timeout=10_000)
    page.mouse.down()
    page.mouse.up()


def test_linked_report_plays_seeks_and_shows_the_right_thumbnails(browser, tmp_path):
    (tmp_path / "videos").mkdir()
    video_path = write_block_video(tmp_path / "videos" / "clip.webm", 12.0, fps=FPS, height=144, width=256)
    report = write_linked_report(tmp_path / "report" / "linked.html",
                                 [LinkedVideo("clip", video_path, 12.0, DETS, GT, LABELS),
                                  LinkedVideo("no_video", None, 12.0, DETS, GT, LABELS)], num_thumbnails=16)
    page = browser.new_page(viewport={"width": 1400, "height": 800})
    refused = _offline(page)
    try:
        page.goto(report.as_uri())
        page.wait_for_function("document.getElementById('tal-figure-0').dataset.talLinked === 'true'",
                               timeout=30_000)
        page.wait_for_function("document.getElementById('tal-video-0').readyState >= 2", timeout=30_000)
        assert page.evaluate("document.getElementById('tal-video-0').duration") == pytest.approx(12.0, abs=0.05)
        assert page.evaluate("document.querySelectorAll('video').length") == 1  # none for the video without file

        # Press play (a click on Chromium's video plays it): the playhead follows the video.
        assert page.evaluate(PLAYHEAD_X) == 0
        page.locator("#tal-video-0").click()
        page.wait_for_function("document.getElementById('tal-video-0').currentTime > 1.0", timeout=20_000)
        page.evaluate("document.getElementById('tal-video-0').pause()")
        page.wait_for_timeout(300)
        now = page.evaluate("document.getElementById('tal-video-0').currentTime")
        assert page.evaluate(PLAYHEAD_X) == pytest.approx(now, abs=1e-6)
        # ... and where it is drawn: its screen x maps back to that time through the x axis.
        drawn = page.evaluate(f"""() => {{
            const gd = document.getElementById('tal-figure-0'), xa = gd._fullLayout.xaxis;
            const image = Array.from(gd.querySelectorAll('image'))
                .find(im => im.getAttribute('href').startsWith('data:image/svg'));
            const r = image.getBoundingClientRect(), left = gd.querySelector('.nsewdrag').getBoundingClientRect().x;
            return [xa.p2l(r.x + r.width / 2 - left), r.height];
        }}""")
        assert drawn[0] == pytest.approx(now, abs=0.05) and drawn[1] > 200

        # A click on a detection bar seeks to its start (within a frame), likewise a ground-truth bar.
        for trace, start in (("true positive", 4.24), ("false positive", 6.2), ("ground truth", 8.36)):
            x, y, base, curve, point = _bar_centre(page, trace, start)
            _click_bar(page, x, y, curve, point)
            page.wait_for_function("t => Math.abs(document.getElementById('tal-video-0').currentTime - t) < 0.5",
                                   arg=start, timeout=10_000)
            current = page.evaluate("document.getElementById('tal-video-0').currentTime")
            assert abs(current - base) <= 1 / FPS, (trace, current, base)
        page.wait_for_function(f"() => Math.abs(({PLAYHEAD_X})() - 8.36) < 1e-6", timeout=10_000)
        screenshot = _save_screenshot(page, "linked_view.png", tmp_path)

        # The thumbnails as drawn: each one's centre maps to the time of its frame (through the x axis), and the
        # colour the page shows there is that frame's (compared with an independent decode of the file).
        shown = page.evaluate("""() => {
            const gd = document.getElementById('tal-figure-0'), xa = gd._fullLayout.xaxis;
            const left = gd.querySelector('.nsewdrag').getBoundingClientRect().x;
            return Array.from(gd.querySelectorAll('image'))
                .filter(im => im.getAttribute('href').startsWith('data:image/jpeg'))
                .map(im => { const r = im.getBoundingClientRect();
                             return [xa.p2l(r.x + r.width / 2 - left), r.x, r.y, r.width, r.height]; });
        }""")
        # 16 cells of 0.75 s: centres 0.375 + 0.75 i, never on a colour block boundary (multiples of 0.5 s).
        assert len(shown) == 16
        assert [t for t, *_ in shown] == pytest.approx([0.375 + 0.75 * i for i in range(16)], abs=0.03)
        frames = decoded_frames(video_path)
        page_image = np.asarray(Image.open(screenshot).convert("RGB"), np.float64)
        for t, x, y, w, h in shown:
            expected = frame_shown_at(frames, t)
            # The picture is 'contain'-fitted (16:9) in its cell: sample a patch of background in its upper part,
            # away from the white square sliding along the middle.
            picture_h = min(h, w * 144 / 256)
            row = int(y + h / 2 - picture_h * 0.35)
            patch = page_image[row - 1:row + 2, int(x + w * 0.3):int(x + w * 0.7)].reshape(-1, 3).mean(0)
            background = np.asarray(expected[4:12, 4:12].reshape(-1, 3).mean(0), np.float64)
            assert np.abs(patch - background).max() < 14, (t, patch, background)
            assert np.abs(background - block_colour(t)).max() < 10  # and the decoded frame is the block of time t
        assert refused == []  # nothing was fetched from a network
    except Exception:
        _save_screenshot(page, "linked_view_failure.png", tmp_path)
        raise
    finally:
        page.close()
