"""The timeline linked to its video: the video plays beside the plotly timeline, a playhead follows it, a click on a
bar seeks the video to the bar's start, and a strip of thumbnails under the time axis shows what happens where.

The linking is plain JavaScript on the page (:data:`LINK_JS`): ``timeupdate`` and, while playing,
``requestAnimationFrame`` move the playhead (a thin layout image named ``tal-playhead``) with ``Plotly.relayout``;
``plotly_click`` on a bar sets ``video.currentTime`` to the bar's ``base`` (its start), on a thumbnail or a track
line to its time. The same script links the explorer's pane in JupyterLab (:mod:`tal_kit.viz.explorer`).

:func:`write_linked_report` writes one standalone HTML file: plotly.js inlined, thumbnails as data URIs, the video
referenced by a path relative to the HTML file (or embedded when small and asked), nothing fetched from a network.
"""
from __future__ import annotations

import base64
import html
import os
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from tal_kit.atomic import write_text_atomic
from tal_kit.inference.candidates import VideoDetections
from tal_kit.viz.export import PLOT_CONFIG, standalone_page
from tal_kit.viz.timeline import timeline
from tal_kit.viz.video_frames import (
    Thumbnail, playability, thumbnail_times, thumbnails, write_browser_proxy,
)

__all__ = ["LinkedVideo", "write_linked_report", "link_figure", "LINK_JS", "PLAYHEAD", "video_source_html",
           "VIDEO_MIME"]

PLAYHEAD = "tal-playhead"  # the name of the playhead's layout image (the script finds it by name)
PLAYHEAD_COLOUR = "#e8112d"
PLAYHEAD_PX = 2  # its width on screen
PLAYHEAD_SVG = "data:image/svg+xml;base64," + base64.b64encode(
    f'<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"><rect width="1" height="1" '
    f'fill="{PLAYHEAD_COLOUR}"/></svg>'.encode()).decode("ascii")
STRIP_PX = 64  # height of the thumbnail strip
STRIP_GAP_PX = 46  # room for the time axis' tick labels and title above the strip
VIDEO_MIME = {".mp4": "video/mp4", ".m4v": "video/mp4", ".webm": "video/webm", ".ogv": "video/ogg",
              ".ogg": "video/ogg"}


@dataclass
class LinkedVideo:
    """One video of a linked report: its detections and (optionally) ground truth, and its file when known.

    ``ground_truth``: ``(start, end, label name)`` in seconds, or None for a video without annotations;
    ``video_path`` None means no video pane (the feature-only datasets): the timeline alone, as before.
    """

    video_id: str
    video_path: Path | None
    duration: float
    detections: VideoDetections
    ground_truth: list[tuple[float, float, str]] | None = None
    label_names: Sequence[str] = field(default_factory=list)

    def record(self) -> SimpleNamespace | None:
        """The ground truth as the record :func:`timeline` reads (segments, label ids, duration)."""
        if self.ground_truth is None:
            return None
        index = {name: i for i, name in enumerate(self.label_names)}
        unknown = sorted({name for _, _, name in self.ground_truth if name not in index})
        if unknown:
            raise ValueError(f"{self.video_id}: ground-truth labels not in label_names: {', '.join(unknown)}")
        segments = np.array([[s, e] for s, e, _ in self.ground_truth], np.float64).reshape(-1, 2)
        labels = np.array([index[name] for _, _, name in self.ground_truth], np.int64)
        return SimpleNamespace(video_id=self.video_id, segments=segments, labels=labels, duration=self.duration,
                               num_segments=len(labels))


def _axis_numbers(fig: go.Figure, letter: str) -> list[int]:
    names = [k for k in fig.layout.to_plotly_json() if k.startswith(f"{letter}axis")]
    return sorted(int(k[5:] or 1) for k in names) or [1]


def link_figure(fig: go.Figure, duration: float, thumbs: Sequence[Thumbnail] = ()) -> go.Figure:
    """Add what the linking script needs to a :func:`timeline` figure, in place: the playhead, a ``meta``
    on each trace saying where a click seeks (a bar's start, a point's x), and the thumbnail strip (its own row
    under the time axis, one image per thumbnail centred at its time). Returns ``fig``."""
    for trace in fig.data:
        trace.meta = {"tal_seek": "base" if trace.type == "bar" else "x"}
    # The playhead is a layout image (a filled SVG rectangle stretched to a line), not a shape: moving an image
    # is a redraw of the images (~10 ms here), moving a shape recomputes the whole figure (65-160 ms), too slow to
    # follow a playing video. The script keeps its width at PLAYHEAD_PX on zoom.
    fig.add_layout_image(source=PLAYHEAD_SVG, name=PLAYHEAD, xref="x", yref="paper", x=0.0, y=1.0,
                         sizex=max(duration, 1e-6) * PLAYHEAD_PX / 1000, sizey=1.0, xanchor="center", yanchor="top",
                         sizing="stretch", layer="above")
    if not thumbs:
        return fig
    layout = fig.layout
    height = layout.height or 450
    top, bottom = (layout.margin.t or 60), (layout.margin.b or 40)
    plot_px = height - top - bottom
    new_plot_px = plot_px + STRIP_GAP_PX + STRIP_PX
    lift = (STRIP_GAP_PX + STRIP_PX) / new_plot_px
    for n in _axis_numbers(fig, "y"):  # squeeze the timeline rows into the top, keeping their pixel heights
        axis = layout[f"yaxis{n if n > 1 else ''}"]
        lo, hi = axis.domain or (0.0, 1.0)
        axis.domain = [lift + lo * (1 - lift), lift + hi * (1 - lift)]
    strip = _axis_numbers(fig, "y")[-1] + 1
    layout[f"yaxis{strip}"] = dict(domain=[0.0, STRIP_PX / new_plot_px], range=[0, 1], visible=False,
                                   fixedrange=True, anchor="x")
    cell = duration / len(thumbs)
    layout.images = list(layout.images) + [
        dict(source=t.data_uri, xref="x", yref=f"y{strip}", x=t.time, y=0.5, sizex=cell, sizey=1.0,
             xanchor="center", yanchor="middle", sizing="contain", layer="above", name=f"thumbnail {t.time:.3f}")
        for t in thumbs]
    # Invisible points under the thumbnails: hovering one says which frame it is, clicking it seeks there.
    fig.add_trace(go.Scatter(x=[t.time for t in thumbs], y=[0.5] * len(thumbs), xaxis="x", yaxis=f"y{strip}",
                             mode="markers", marker=dict(size=28, opacity=0), showlegend=False, name="thumbnails",
                             customdata=[t.frame_time for t in thumbs], meta={"tal_seek": "x"},
                             hovertemplate="frame at %{customdata:.2f} s<extra>thumbnail</extra>"))
    layout.height = height + STRIP_GAP_PX + STRIP_PX
    layout.margin.b = 10
    return fig


# The linking script: defines window.talLinkVideo(video, plotDiv) once; calling it again for the same video (the
# explorer redraws its figure) replaces the previous links.
LINK_JS = r"""
(function () {
  if (window.talLinkVideo) return;
  var PX = __PLAYHEAD_PX__;  // the playhead's width in pixels
  function seekTime(point, gd) {
    var trace = point.fullData || gd._fullData[point.curveNumber] || point.data;
    var how = (trace.meta && trace.meta.tal_seek) || (trace.type === 'bar' ? 'base' : 'x');
    if (how === 'base') {
      var base = trace.base;
      return (base !== null && typeof base === 'object') ? Number(base[point.pointNumber]) : Number(base);
    }
    return Number(point.x);
  }
  window.talLinkVideo = function (video, gd) {
    var Plotly = window.Plotly;
    if (video._talUnlink) video._talUnlink();
    var shown = NaN, shownWidth = NaN, last = 0, frame = 0;
    function draw(force) {
      var images = (gd.layout && gd.layout.images) || [];
      var k = -1;
      for (var i = 0; i < images.length; i++) if (images[i].name === 'tal-playhead') { k = i; break; }
      var xa = gd._fullLayout && gd._fullLayout.xaxis;
      if (k < 0 || !xa || !xa._m) return;
      var t = video.currentTime, now = performance.now(), width = PX / Math.abs(xa._m);
      if ((t === shown && width === shownWidth) || (!force && now - last < 40)) return;  // <= ~25 redraws/s
      shown = t; shownWidth = width; last = now;
      var update = {}; update['images[' + k + '].x'] = t; update['images[' + k + '].sizex'] = width;
      Plotly.relayout(gd, update);
    }
    function onZoom(event) {
      if (Object.keys(event || {}).some(function (key) { return key.indexOf('axis') >= 0; })) draw(true);
    }
    function onTime() { draw(true); }
    function loop() { draw(false); if (!video.paused && !video.ended) frame = requestAnimationFrame(loop); }
    function onPlay() { cancelAnimationFrame(frame); frame = requestAnimationFrame(loop); }
    function onClick(event) {
      var point = event && event.points && event.points[0];
      if (!point) return;
      var t = seekTime(point, gd);
      if (isFinite(t)) video.currentTime = Math.max(0, t);
    }
    ['timeupdate', 'seeked', 'loadedmetadata', 'pause'].forEach(function (e) { video.addEventListener(e, onTime); });
    video.addEventListener('play', onPlay);
    gd.on('plotly_click', onClick);
    gd.on('plotly_relayout', onZoom);
    video._talUnlink = function () {
      ['timeupdate', 'seeked', 'loadedmetadata', 'pause'].forEach(function (e) {
        video.removeEventListener(e, onTime);
      });
      video.removeEventListener('play', onPlay);
      cancelAnimationFrame(frame);
      if (gd.removeListener) {
        gd.removeListener('plotly_click', onClick);
        gd.removeListener('plotly_relayout', onZoom);
      }
    };
    gd.dataset.talLinked = 'true';
    draw(true);
  };
  // Link once both exist and the plot is drawn (plotly draws asynchronously; the explorer's output may attach
  // its elements to the page after this script ran).
  window.talLinkWhenReady = function (find, timeoutMs) {
    var deadline = performance.now() + (timeoutMs || 60000);
    (function attempt() {
      var pair = find();
      if (pair && pair[0] && pair[1] && pair[1]._fullLayout && pair[1].on && window.Plotly) {
        window.talLinkVideo(pair[0], pair[1]);
      } else if (performance.now() < deadline) {
        setTimeout(attempt, 50);
      }
    })();
  };
})();
""".replace("__PLAYHEAD_PX__", str(PLAYHEAD_PX))


def video_source_html(src: str, *, element_id: str = "", mime: str | None = None, css_class: str = "tal-player"
                      ) -> str:
    """A ``<video>`` element with controls playing ``src`` (a URL or data URI)."""
    ident = f' id="{html.escape(element_id)}"' if element_id else ""
    kind = f' type="{mime}"' if mime else ""
    return (f'<video{ident} class="{css_class}" controls preload="auto" playsinline '
            'style="width:100%;background:#000">'
            f'<source src="{html.escape(src, quote=True)}"{kind}></video>')


def _relative_url(target: Path, page_dir: Path) -> str:
    try:
        rel = os.path.relpath(target.resolve(), page_dir.resolve())
    except ValueError:  # another drive (Windows): no relative path exists
        return target.resolve().as_uri()
    return urllib.parse.quote(Path(rel).as_posix())


def _video_pane(video: LinkedVideo, index: int, page_dir: Path, proxy_dir: Path, embed_video_max_mb: float | None,
                make_proxies: bool) -> tuple[str, str | None]:
    """The video pane's HTML and the file whose frames the thumbnails show (None without a video)."""
    path = Path(video.video_path)
    if not path.exists():
        return f'<p class="tal-note">video file not found: {html.escape(str(path))}</p>', None
    problem = playability(path)
    note = ""
    playable = path
    if problem is not None:
        if not make_proxies:
            return (f'<p class="tal-note">{html.escape(problem)}: the timeline and the thumbnails still work; '
                    "<code>detect --browser-copies</code> (or <code>write_linked_report(..., make_proxies=True)</code>) "
                    "writes a browser-playable copy.</p>", path)
        playable = write_browser_proxy(path, proxy_dir / f"{path.stem}.webm")
        note = (f'<p class="tal-note">{html.escape(problem)}: playing a VP8/WebM copy '
                f'({html.escape(playable.name)}).</p>')
    mime = VIDEO_MIME.get(playable.suffix.lower())
    if embed_video_max_mb is not None and playable.stat().st_size <= embed_video_max_mb * 1e6:
        src = f"data:{mime};base64," + base64.b64encode(playable.read_bytes()).decode("ascii")
    else:
        src = _relative_url(playable, page_dir)
    return video_source_html(src, element_id=f"tal-video-{index}", mime=mime) + note, path


def write_linked_report(path: str | os.PathLike, videos: Sequence[LinkedVideo], *, title: str = "tal_kit detections",
                        num_thumbnails: int = 16, thumbnail_height: int = 72, embed_video_max_mb: float | None = None,
                        make_proxies: bool = False, tiou_threshold: float = 0.5, score_threshold: float = 0.0,
                        max_detections: int | None = 300) -> Path:
    """One standalone HTML file: per video, its ``<video>`` beside its linked timeline (see the module docstring).

    Args:
        videos: the videos to show, in order.
        num_thumbnails: thumbnails per video, at the centres of equal cells of the video's duration.
        thumbnail_height: their height in pixels (JPEG, quality 70: about 2-4 kB each).
        embed_video_max_mb: embed a video file of at most this many MB as a data URI (the HTML then stands alone);
            None (default) always references the file by a path relative to the HTML file.
        make_proxies: for a file browsers cannot play (codec/container, see ``video_frames.BROWSER_CODECS``),
            write a small VP8/WebM copy into ``<html stem>_videos/`` beside the HTML; otherwise the pane says
            why there is no video (timeline and thumbnails still work).
        tiou_threshold, score_threshold, max_detections: passed to :func:`timeline`.

    Returns the path written (atomically).
    """
    path = Path(path)
    page_dir = path.parent
    proxy_dir = page_dir / f"{path.stem}_videos"
    sections = []
    for index, video in enumerate(videos):
        record = video.record()
        fig = timeline(record, video.detections, video_id=video.video_id, label_names=list(video.label_names),
                       tiou_threshold=tiou_threshold, score_threshold=score_threshold,
                       max_detections=max_detections, duration=video.duration)
        pane = ""
        if video.video_path is not None:
            pane, frames_from = _video_pane(video, index, page_dir, proxy_dir, embed_video_max_mb, make_proxies)
            thumbs = (thumbnails(frames_from, thumbnail_times(video.duration, num_thumbnails),
                                 height=thumbnail_height) if frames_from is not None else [])
            link_figure(fig, video.duration, thumbs)
        div = fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"tal-figure-{index}", config=PLOT_CONFIG)
        row = (f'<div class="tal-row"><div class="tal-video-pane">{pane}</div><div class="tal-plot">{div}</div></div>'
               if pane else f'<div class="tal-plot">{div}</div>')
        sections.append(f'<section class="tal-linked" data-video-id="{html.escape(video.video_id, quote=True)}">\n'
                        f"<h2>{html.escape(video.video_id)}</h2>\n{row}\n</section>")
    wiring = (f"{LINK_JS}\nfor (var i = 0; i < {len(videos)}; i++) (function (i) {{\n"
              "  window.talLinkWhenReady(function () { return [document.getElementById('tal-video-' + i),\n"
              "                                                 document.getElementById('tal-figure-' + i)]; });\n"
              "})(i);")
    css = (" .tal-row{display:flex;gap:1em;align-items:flex-start} .tal-video-pane{flex:0 0 360px}"
           " .tal-video-pane video{width:360px;background:#000} .tal-plot{flex:1 1 auto;min-width:0}"
           " .tal-note{color:#8a4b00;font-size:0.9em}")
    intro = ("<p>Play a video: the red line follows it on the timeline. Click a bar (or a thumbnail) to jump there. "
             "Videos are read from paths relative to this file: keep them where they are when moving it.</p>")
    page = standalone_page(title, [intro, *sections, f"<script>{wiring}</script>"], css=css)
    return write_text_atomic(path, page)

