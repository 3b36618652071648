"""The visualizations as a person sees them: in a real headless Chromium (Debian's, driven by playwright-python).

1. A timeline exported to standalone HTML is opened with the network cut off: the plot must render with one SVG
   bar per ground-truth segment and per detection, show hover text, and zoom on a drag.
2. JupyterLab is started on loopback with notebooks/06_visualization.ipynb; the notebook is run from the Run menu;
   the explorer panel must render its widgets and plot, and moving the score slider must redraw the plot. With
   ``video_root`` (synthetic WebM files under the server's root), the video pane plays beside the timeline and a
   click on a bar seeks the video to the bar's start.

Screenshots go to ``runs/screenshots/`` (override with ``TAL_KIT_SCREENSHOT_DIR``). The tests skip with the reason
when no Chromium or playwright is available (``tests/setup_browser.sh`` installs Chromium with apt-get).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tal_kit.data.annotations import VideoRecord
from tal_kit.viz import export_html, timeline

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT_DIR = Path(os.environ.get("TAL_KIT_SCREENSHOT_DIR", REPO_ROOT / "runs" / "screenshots"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium_path() -> str | None:
    candidates = [os.environ.get("TAL_KIT_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"),
                  "/usr/bin/chromium"]
    return next((c for c in candidates if c and Path(c).exists()), None)


@pytest.fixture(scope="module")
def browser():
    executable = _chromium_path()
    if executable is None:
        pytest.skip("no Chromium found (tests/setup_browser.sh installs Debian's chromium with apt-get)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright-python is not installed")
    with sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        except Exception as err:  # noqa: BLE001 - any launch failure means: no usable browser here
            pytest.skip(f"Chromium at {executable} does not start: {str(err).splitlines()[0]}")
        yield chromium
        chromium.close()


def _save_screenshot(target, name: str, tmp_path: Path) -> Path:
    """Screenshot into the pytest tmp dir and a copy into SCREENSHOT_DIR (the stable place the notes cite)."""
    local = tmp_path / name
    target.screenshot(path=str(local))
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(local, SCREENSHOT_DIR / name)
    return SCREENSHOT_DIR / name


# ---- 1. the standalone HTML export --------------------------------------------------------------------------------

LABELS = ["HighJump", "LongJump"]
# Video A: 4 ground-truth segments; 7 detections of which 3 are true positives at tIoU 0.5 (worked out by hand).
VIDEO_A = VideoRecord("video_a", "test", 120.0, 30.0,
                      np.array([[10, 20], [40, 50], [70, 75], [90, 110]], float), np.array([0, 0, 1, 1]))
DETS_A = {"segments": np.array([[10, 19], [11, 20], [40, 52], [60, 65], [70, 76], [88, 96], [30, 35]], float),
          "scores": np.array([0.95, 0.7, 0.85, 0.4, 0.8, 0.5, 0.3]),
          "labels": np.array([0, 0, 0, 0, 1, 1, 1])}
# TP: [10,19] (tIoU .9), [40,52] (.83), [70,76] (.83). FP: [11,20] (double), [60,65] (background),
# [88,96] (tIoU 6/22 -> localization), [30,35] (background).
VIDEO_B = VideoRecord("video_b", "test", 60.0, 30.0, np.array([[5, 15], [30, 31]], float), np.array([1, 0]))
DETS_B = {"segments": np.array([[5, 14], [29, 33], [45, 50]], float), "scores": np.array([0.9, 0.6, 0.2]),
          "labels": np.array([1, 0, 0])}  # TP, FP (tIoU 0.25), FP


def _bar_counts(page, figure_id: str) -> dict[str, int]:
    """Drawn SVG bars per trace name; a bar counts only when its path has a visible width."""
    return page.evaluate("""(id) => {
        const gd = document.getElementById(id);
        const names = gd._fullData.filter(t => t.type === 'bar').map(t => t.name);
        const traces = gd.querySelectorAll('.cartesianlayer .barlayer .trace');
        const counts = {};
        traces.forEach((trace, i) => {
            counts[names[i]] = Array.from(trace.querySelectorAll('.point path'))
                .filter(p => p.getBBox().width > 0.5 && p.getBBox().height > 0.5).length;
        });
        return counts;
    }""", figure_id)


def test_exported_timeline_renders_offline_with_bars_hover_and_zoom(browser, tmp_path):
    figures = {"video_a": timeline(VIDEO_A, DETS_A, label_names=LABELS, tiou_threshold=0.5),
               "video_b": timeline(VIDEO_B, DETS_B, label_names=LABELS, tiou_threshold=0.5)}
    path = export_html(figures, tmp_path / "timelines.html", title="browser test")
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    requests = []

    def offline(route):  # the file must not need the network: anything but file:// is refused (and noted)
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            requests.append(route.request.url)
            route.abort()

    page.route("**/*", offline)
    try:
        page.goto(path.as_uri())
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot .barlayer .trace').length >= 6",
                               timeout=30_000)
        assert requests == []
        assert _bar_counts(page, "tal-figure-0") == {"ground truth": 4, "true positive (tIoU ≥ 0.5)": 3,
                                                     "false positive (tIoU ≥ 0.5)": 4}
        assert _bar_counts(page, "tal-figure-1") == {"ground truth": 2, "true positive (tIoU ≥ 0.5)": 1,
                                                     "false positive (tIoU ≥ 0.5)": 2}
        # Hover the first true-positive bar: plotly's hover label must show score, class and the matched segment.
        # (plotly's drag layer sits above the bars, so move the mouse there rather than "hover the element").
        box = page.locator("#tal-figure-0 .barlayer .trace").nth(1).locator(".point path").first.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, steps=4)
        page.wait_for_selector("#tal-figure-0 .hoverlayer .hovertext", timeout=10_000)
        hover = page.locator("#tal-figure-0 .hoverlayer .hovertext").first.text_content()
        assert "score" in hover and "matched GT: GT #" in hover and "HighJump" in hover, hover
        screenshot = _save_screenshot(page, "timeline_export.png", tmp_path)
        # Drag across the plot: the x axis zooms in (y is fixed, so the drag is a horizontal zoom).
        drag = page.locator("#tal-figure-0 .nsewdrag").first.bounding_box()
        y = drag["y"] + drag["height"] / 2
        page.mouse.move(drag["x"] + drag["width"] * 0.2, y)
        page.mouse.down()
        page.mouse.move(drag["x"] + drag["width"] * 0.5, y, steps=8)
        page.mouse.up()
        page.wait_for_function("document.getElementById('tal-figure-0').layout.xaxis.range[1] < 100",
                               timeout=10_000)
        lo, hi = page.evaluate("document.getElementById('tal-figure-0').layout.xaxis.range")
        assert 10 < lo < hi < 70, (lo, hi)
        assert screenshot.stat().st_size > 10_000
    finally:
        page.close()


# ---- 2. notebook 06 in JupyterLab ---------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _prepared_notebook(root: Path, parameters: dict[str, object]) -> Path:
    """A copy of notebook 06 in ``root`` whose parameters cell holds ``parameters`` (as a user would edit it)."""
    nb = json.loads((REPO_ROOT / "notebooks" / "06_visualization.ipynb").read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    lines = "".join(cell["source"]).splitlines()
    for name, value in parameters.items():
        index = next(i for i, line in enumerate(lines) if line.startswith(f"{name}:"))
        comment = lines[index].split("#", 1)[1] if "#" in lines[index] else ""
        kind = lines[index].split(":", 1)[1].split("=", 1)[0].strip()
        lines[index] = f"{name}: {kind} = {value!r}  #{comment}"
    cell["source"] = "\n".join(lines)
    path = root / "06_visualization.ipynb"
    path.write_text(json.dumps(nb, indent=1))
    return path


class JupyterLab:
    """A JupyterLab server on loopback in its own process group, with throw-away settings; always stopped."""

    def __init__(self, root: Path, home: Path):
        self.port, self.token = _free_port(), secrets.token_hex(16)
        settings = home / "lab-settings"
        # Show every cell in the DOM (no windowing), so that the test can read every prompt and output.
        tracker = settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
        tracker.parent.mkdir(parents=True)
        tracker.write_text(json.dumps({"windowingMode": "none"}))
        env = dict(os.environ, JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_RUNTIME_DIR=str(home / "runtime"),
                   JUPYTERLAB_SETTINGS_DIR=str(settings), JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
                   IPYTHONDIR=str(home / "ipython"), MPLCONFIGDIR=str(home / "mpl"),
                   # NMS through the pure-torch reference: no extension compile inside this test's time budget
                   # (the compiled backends have their own tests).
                   TAL_KIT_NMS_EXT="off", PYTHONUNBUFFERED="1")
        self.log = (home / "jupyterlab.log").open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
             f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
             f"--ServerApp.root_dir={root}", "--ServerApp.terminals_enabled=False",
             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.extension_manager=readonly",
             *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])],
            cwd=root, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.log_path = home / "jupyterlab.log"

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}?token={self.token}"

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited ({self.process.returncode}):\n{self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(self.url("api/status"), timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(f"JupyterLab did not answer within {timeout} s:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # the server and the kernels it started
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=15)
        self.log.close()


EXPLORER = ".tal-explorer"
PLOT_BARS = f"{EXPLORER} .tal-figure .js-plotly-plot .cartesianlayer .barlayer .point path"
VIDEO_FPS = 10


def _write_demo_videos(data_root: Path, folder: Path) -> None:
    """A small VP8/WebM file per evaluation video of the demo dataset, as long as the annotations say."""
    from tests.block_videos import write_block_video

    folder.mkdir(parents=True)
    database = json.loads((data_root / "annotations.json").read_text())["database"]
    for video_id, entry in database.items():
        if str(entry.get("subset", "")).lower().startswith("test"):
            write_block_video(folder / f"{video_id}.webm", float(entry["duration"]), fps=VIDEO_FPS, height=48,
                              width=80)


def _click_first_bar_and_check_the_seek(page) -> float:
    """Click the first detection bar of the explorer's plot; the pane's video must seek to the bar's start."""
    video = f"{EXPLORER} .tal-video-pane video"
    page.wait_for_function(f"""() => document.querySelector('{EXPLORER} .tal-figure .js-plotly-plot')
                                   ?.dataset.talLinked === 'true'""", timeout=60_000)
    page.wait_for_function(f"document.querySelector('{video}').readyState >= 1", timeout=60_000)
    x, y, start = page.evaluate(f"""() => {{
        const gd = document.querySelector('{EXPLORER} .tal-figure .js-plotly-plot');
        const names = gd._fullData.filter(t => t.type === 'bar').map(t => t.name);
        const traces = Array.from(gd.querySelectorAll('.cartesianlayer .barlayer .trace'));
        const trace = traces.find((t, i) => names[i] !== 'ground truth' && t.querySelector('.point path'));
        const path = trace.querySelector('.point path'), r = path.getBoundingClientRect();
        return [r.x + r.width / 2, r.y + r.height / 2, path.parentNode.__data__.b];
    }}""")
    page.mouse.click(x, y)
    page.wait_for_function(f"t => Math.abs(document.querySelector('{video}').currentTime - t) <= {1 / VIDEO_FPS}",
                           arg=start, timeout=20_000)
    return start


@pytest.mark.timeout(420)
def test_notebook_06_runs_in_jupyterlab_and_the_explorer_redraws(browser, tmp_path):
    from tal_kit.data.demo import DemoSpec, generate_demo_dataset

    data_root = tmp_path / "demo"
    # Small but complete: every class occurs (the demo config expects 20), 20 evaluation videos of 20-60 s.
    generate_demo_dataset(data_root, DemoSpec(seed=3, num_train_videos=40, num_test_videos=20, min_duration=20.0,
                                              max_duration=60.0))
    root = tmp_path / "lab"
    root.mkdir()
    # Videos for the evaluation split, under the server's root (the /files/ route serves them to the pane).
    _write_demo_videos(data_root, root / "videos")
    _prepared_notebook(root, {"data_root": str(data_root), "run_dir": str(tmp_path / "no_run"),
                              "figure_dir": str(tmp_path / "figures"), "num_export_videos": 2,
                              "video_root": str(root / "videos")})
    lab = JupyterLab(root, tmp_path / "home")
    page = browser.new_page(viewport={"width": 1400, "height": 2000})  # tall: the whole panel fits the screenshot
    try:
        lab.wait_ready()
        page.goto(lab.url("lab/tree/06_visualization.ipynb"), timeout=90_000)
        # Wait for the whole notebook and an idle kernel before running anything.
        num_cells = len(json.loads((root / "06_visualization.ipynb").read_text())["cells"])
        page.wait_for_function("n => document.querySelectorAll('.jp-NotebookPanel .jp-Cell').length === n",
                               arg=num_cells, timeout=90_000)
        page.wait_for_function("() => /\\| Idle/.test(document.querySelector('#jp-main-statusbar')?.textContent || '')",
                               timeout=90_000)
        news = page.locator(".jp-Notification-Toast-Close, .Toastify__close-button")
        if news.count():
            news.first.click()  # the "official Jupyter news?" toast, out of the screenshots
        # Run all cells from the menu, as a person would.
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        select_kernel = page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept")
        try:  # JupyterLab may still ask which kernel to use: take the notebook's own (python3)
            select_kernel.wait_for(timeout=3_000)
            select_kernel.click()
        except Exception:  # noqa: BLE001 - no dialog: nothing to do
            pass

        # Every code cell gets an execution number; none may end in an error.
        page.wait_for_function("""() => {
            const prompts = Array.from(document.querySelectorAll('.jp-CodeCell .jp-InputPrompt'));
            return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
        }""", timeout=300_000)
        errors = page.evaluate("""() => Array.from(document.querySelectorAll(
            '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'))
            .map(e => e.textContent).filter(t => /Traceback|Error:|Cell In\\[/.test(t))""")
        assert errors == [], "\n\n".join(errors)[:4000]

        # The explorer panel: its controls and its plot.
        page.wait_for_selector(PLOT_BARS, timeout=120_000)
        for control in ("tal-video", "tal-class-filter", "tal-score-threshold", "tal-tiou-threshold",
                        "tal-nms-method", "tal-sigma", "tal-max-seg-num"):
            assert page.locator(f"{EXPLORER} .{control}").count() == 1, control
        panel = page.locator(EXPLORER)
        panel.scroll_into_view_if_needed()
        before = page.locator(PLOT_BARS).count()
        status_before = page.locator(f"{EXPLORER} .tal-status").text_content()
        assert before > 0 and "score ≥ 0.05" in status_before, status_before
        _save_screenshot(panel, "notebook06_explorer.png", tmp_path)

        # The video pane: the video beside the timeline, served by /files/; a click on a bar seeks to its start
        # and the playhead follows.
        start = _click_first_bar_and_check_the_seek(page)
        page.wait_for_function(f"""t => Math.abs(document.querySelector('{EXPLORER} .tal-figure .js-plotly-plot')
                                   .layout.images.find(im => im.name === 'tal-playhead').x - t) < 1e-6""",
                               arg=page.evaluate(f"document.querySelector('{EXPLORER} .tal-video-pane video')"
                                                 ".currentTime"), timeout=20_000)
        assert page.locator(f"{EXPLORER} .tal-figure .js-plotly-plot image").count() > 1  # playhead + thumbnails
        assert start >= 0
        _save_screenshot(panel, "notebook06_explorer_video.png", tmp_path)

        # Switching NMS off keeps every candidate: more bars (the raw output NMS has to clean up).
        page.locator(f"{EXPLORER} .tal-nms-method button", has_text=re.compile(r"^none$")).click()
        page.wait_for_function(f"""() => document.querySelector('{EXPLORER} .tal-status').textContent
                                   .includes('(NMS off)')""", timeout=60_000)
        page.wait_for_function(f"n => document.querySelectorAll('{PLOT_BARS}').length > n", arg=before,
                               timeout=60_000)
        without_nms = page.locator(PLOT_BARS).count()
        # Move the score slider to 0.3 through its readout (type + Enter): fewer bars must be drawn.
        readout = page.locator(f"{EXPLORER} .tal-score-threshold .widget-readout")
        readout.click()
        page.keyboard.press("Control+A")
        page.keyboard.type("0.3")
        page.keyboard.press("Enter")
        page.wait_for_function(f"""() => document.querySelector('{EXPLORER} .tal-status').textContent
                                   .includes('score ≥ 0.30')""", timeout=60_000)
        page.wait_for_function(f"n => document.querySelectorAll('{PLOT_BARS}').length < n", arg=without_nms,
                               timeout=60_000)
        after = page.locator(PLOT_BARS).count()
        assert 0 < after < without_nms, (before, without_nms, after)
        _save_screenshot(panel, "notebook06_explorer_after_slider.png", tmp_path)
        _click_first_bar_and_check_the_seek(page)  # the redrawn figure is linked again
        # The notebook wrote its figures and the HTML export.
        written = sorted(p.name for p in (tmp_path / "figures").iterdir())
        assert "timelines.html" in written and "false_positive_analysis.png" in written, written
    except Exception:
        _save_screenshot(page, "notebook06_failure.png", tmp_path)  # what the page showed when it failed
        raise
    finally:
        page.close()
        lab.stop()
