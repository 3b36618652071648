"""The linked video report's HTML (tal_kit.viz.video), its frames (viz.video_frames), the /files/ mapping
(viz.jupyter_files) and the explorer's video pane, checked without a browser (tests/test_browser_video.py opens it)."""
from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from plotly.offline import get_plotlyjs

from tal_kit.data.annotations import VideoRecord
from tal_kit.viz.explorer import Explorer
from tal_kit.viz.jupyter_files import JupyterServer, files_url
from tal_kit.inference.candidates import VideoDetections
from tal_kit.viz.timeline import timeline
from tal_kit.viz.video import PLAYHEAD, LinkedVideo, write_linked_report
from tal_kit.extraction.decode import probe_video
from tal_kit.viz.video_frames import playability, thumbnail_times
from tests.block_videos import decoded_frames, frame_shown_at, write_block_video

pytest.importorskip("av")

LABELS = ["jump", "throw"]
DETS = VideoDetections(np.array([[1.0, 3.0], [4.25, 7.5], [8.0, 9.5]]), np.array([0.9, 0.7, 0.4]),
                       np.array([0, 1, 0]))
GT = [(1.2, 3.1, "jump"), (4.0, 7.0, "throw")]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_block_video(tmp_path_factory.mktemp("videos") / "clip.webm", 10.0)


def _figure_json(page: str, index: int = 0) -> dict:
    """The figure as plotly.js gets it: the data and layout arguments of Plotly.newPlot for div tal-figure-<index>."""
    start = page.index(f'Plotly.newPlot(                        "tal-figure-{index}",')
    decoder = json.JSONDecoder()
    rest = page[page.index("[", start):]
    data, end = decoder.raw_decode(rest)
    layout, _ = decoder.raw_decode(rest[end:].lstrip(", \n"))
    return {"data": data, "layout": layout}


def _jpeg(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/jpeg;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"), np.float64)


def test_thumbnails_are_the_frames_at_their_times(clip, tmp_path):
    path = write_linked_report(tmp_path / "report.html",
                               [LinkedVideo("clip", clip, 10.0, DETS, GT, LABELS)], num_thumbnails=8)
    layout = _figure_json(path.read_text())["layout"]
    thumbs = [im for im in layout["images"] if im["source"].startswith("data:image/jpeg")]
    # Eight cells of 10/8 s: thumbnails centred at 0.625, 1.875, ... s.
    assert [im["x"] for im in thumbs] == pytest.approx([0.625 + 1.25 * i for i in range(8)])
    assert all(im["sizex"] == pytest.approx(1.25) and im["xref"] == "x" for im in thumbs)
    frames = decoded_frames(clip)  # decoded front to back here; the report seeks
    for im in thumbs:
        shown = _jpeg(im["source"])
        height, width = shown.shape[:2]
        expected = np.asarray(Image.fromarray(frame_shown_at(frames, im["x"])).resize((width, height)), np.float64)
        # JPEG at quality 70 of flat colour blocks: a few levels off on average.
        assert np.abs(shown - expected).mean() < 6, im["x"]
        # ... while the frame half a second later (another colour block) is far off: the test can fail.
        other = np.asarray(Image.fromarray(frame_shown_at(frames, im["x"] + 0.5)).resize((width, height)), np.float64)
        assert np.abs(shown - other).mean() > 20, im["x"]


def test_video_referenced_by_relative_path_and_nothing_from_a_network(clip, tmp_path):
    path = write_linked_report(tmp_path / "reports" / "run1" / "report.html",
                               [LinkedVideo("clip", clip, 10.0, DETS, GT, LABELS)])
    page = path.read_text()
    sources = re.findall(r'<source src="([^"]+)" type="video/webm">', page)
    assert len(sources) == 1
    assert (path.parent / sources[0]).resolve() == clip.resolve()
    assert not sources[0].startswith(("/", "file:", "http")) and sources[0].startswith("../../../")
    # Outside plotly.js itself (inlined verbatim; its URL strings are for map tiles and links, never fetched
    # by a timeline), no URL of any scheme that reaches a network.
    assert get_plotlyjs() in page
    rest = page.replace(get_plotlyjs(), "")
    assert re.findall(r"(?:https?|wss?|ftp)://", rest) == []
    assert "<link" not in rest and "@import" not in rest


def test_playhead_and_seek_targets_in_the_figure(clip, tmp_path):
    path = write_linked_report(tmp_path / "report.html", [LinkedVideo("clip", clip, 10.0, DETS, GT, LABELS)])
    figure = _figure_json(path.read_text())
    playhead = [im for im in figure["layout"]["images"] if im.get("name") == PLAYHEAD]
    assert len(playhead) == 1 and playhead[0]["x"] == 0 and playhead[0]["yref"] == "paper"
    bars = [t for t in figure["data"] if t["type"] == "bar"]
    assert bars and all(t["meta"] == {"tal_seek": "base"} for t in bars)


def test_embedded_short_video(clip, tmp_path):
    page = write_linked_report(tmp_path / "r.html", [LinkedVideo("clip", clip, 10.0, DETS, GT, LABELS)],
                               embed_video_max_mb=5).read_text()
    uri = re.search(r'<source src="(data:video/webm;base64,[^"]+)"', page).group(1)
    assert base64.b64decode(uri.split(",", 1)[1]) == clip.read_bytes()
    # Too big for the limit: referenced, not embedded.
    page = write_linked_report(tmp_path / "r2.html", [LinkedVideo("clip", clip, 10.0, DETS, GT, LABELS)],
                               embed_video_max_mb=clip.stat().st_size / 2e6).read_text()
    assert "data:video" not in page


def test_browser_playability_by_container_and_codec(clip, tmp_path):
    assert playability(clip) is None
    mpeg4 = write_block_video(tmp_path / "old.mp4", 2.0, codec="mpeg4")
    assert "mpeg4" in playability(mpeg4)
    assert "browsers do not play .avi" in playability(tmp_path / "x.avi")


def test_unplayable_video_is_said_and_a_proxy_made_when_asked(tmp_path):
    mpeg4 = write_block_video(tmp_path / "old.mp4", 4.0, codec="mpeg4")
    video = LinkedVideo("old", mpeg4, 4.0, DETS, GT, LABELS)
    page = write_linked_report(tmp_path / "a.html", [video], num_thumbnails=4).read_text()
    assert "<video" not in page and "browsers do not play mpeg4 video in .mp4" in page
    assert len([im for im in _figure_json(page)["layout"]["images"] if "jpeg" in im["source"]]) == 4

    page = write_linked_report(tmp_path / "b.html", [video], num_thumbnails=4, make_proxies=True).read_text()
    src = re.search(r'<source src="([^"]+)" type="video/webm">', page).group(1)
    assert src == "b_videos/old.webm"
    proxy = tmp_path / src
    assert probe_video(proxy).codec == "vp8" and playability(proxy) is None
    # Same frame times as the original: detections and thumbnails stay aligned with what plays.
    assert [round(t, 3) for t, _ in decoded_frames(proxy)] == [round(t, 3) for t, _ in decoded_frames(mpeg4)]


def test_without_a_video_file_the_timeline_is_as_before(tmp_path):
    page = write_linked_report(tmp_path / "r.html", [LinkedVideo("clip", None, 10.0, DETS, GT, LABELS)]).read_text()
    assert "<video" not in page
    figure = _figure_json(page)
    assert figure["layout"].get("images", []) == []
    record = VideoRecord("clip", "test", 10.0, 25.0, np.array([[1.2, 3.1], [4.0, 7.0]]), np.array([0, 1]))
    plain = timeline(record, DETS, label_names=LABELS, max_detections=300, duration=10.0)
    assert [t["name"] for t in figure["data"]] == [t.name for t in plain.data]


def test_thumbnail_times_are_cell_centres():
    assert thumbnail_times(10.0, 4) == pytest.approx([1.25, 3.75, 6.25, 8.75])
    assert len(thumbnail_times(0.0, 4)) == 0


def test_files_url_maps_a_path_under_the_server_root(tmp_path):
    server = JupyterServer(tmp_path.resolve(), "/")
    (tmp_path / "my videos").mkdir()
    assert files_url(tmp_path / "my videos" / "a b.webm", server) == "/files/my%20videos/a%20b.webm"
    assert files_url(tmp_path / "v.mp4", JupyterServer(tmp_path.resolve(), "/user/x")) == "/user/x/files/v.mp4"
    assert files_url(tmp_path.parent / "v.mp4", server) is None  # outside the root: /files/ cannot serve it
    assert files_url(tmp_path / ".hidden" / "v.mp4", server) is None  # hidden: the server refuses it


def _records():
    return [VideoRecord("clip", "test", 10.0, 25.0, np.array([[1.2, 3.1], [4.0, 7.0]]), np.array([0, 1])),
            VideoRecord("other", "test", 10.0, 25.0, np.array([[2.0, 3.0]]), np.array([0]))]


def test_explorer_video_pane_with_video_root(clip, tmp_path):
    root = tmp_path
    videos = root / "videos"
    videos.mkdir()
    (videos / "clip.webm").write_bytes(clip.read_bytes())
    panel = Explorer(_records(), label_names=LABELS, detections=_table(), video_root=videos,
                     server=JupyterServer(root.resolve(), "/"), num_thumbnails=5, video_id="clip")
    assert panel.video_file("clip") == videos / "clip.webm" and panel.video_file("other") is None
    assert '<source src="/files/videos/clip.webm" type="video/webm">' in panel.video_pane.value
    images = panel.figure.layout.images
    assert sum(im.name == PLAYHEAD for im in images) == 1 and len(images) == 6
    panel.video.value = "other"  # no file for this one: the pane says so, the figure has no video bits
    assert "no video file other.*" in panel.video_pane.value and len(panel.figure.layout.images) == 0

    outside = Explorer(_records(), label_names=LABELS, detections=_table(), video_root=videos,
                       server=JupyterServer((root / "elsewhere").resolve(), "/"), video_id="clip")
    assert "/files/ route cannot serve it" in outside.video_pane.value

    (videos / "other.webm").write_bytes(b"not a video")  # a broken file: the pane says so, the panel still works
    broken = Explorer(_records(), label_names=LABELS, detections=_table(), video_root=videos,
                      server=JupyterServer(root.resolve(), "/"), video_id="other")
    assert "no thumbnails" in broken.video_pane.value and len(broken.figure.data) > 0

    plain = Explorer(_records(), label_names=LABELS, detections=_table(), video_root="", video_id="clip")
    assert plain.video_pane is None and len(plain.figure.layout.images) == 0


def _table():
    from tal_kit.detections import Detections

    rows = [("clip", s, e, sc, int(lb)) for (s, e), sc, lb in zip(DETS.segments, DETS.scores, DETS.labels)]
    rows += [("other", 2.0, 3.5, 0.8, 0)]
    return Detections(video_ids=np.array([r[0] for r in rows]), starts=np.array([r[1] for r in rows]),
                      ends=np.array([r[2] for r in rows]), labels=np.array([r[4] for r in rows]),
                      scores=np.array([r[3] for r in rows]))
