"""An ipywidgets panel around :func:`timeline`: pick a video and a class, move thresholds, change NMS, see it.

With cached pre-NMS candidates (:mod:`tal_kit.inference.candidates`) the NMS controls (method, Gaussian sigma, IoU
threshold, detections kept per video) re-run post-processing through ``tal_kit.ops`` on every change, without the
model. With a finished ``Detections`` table only, the NMS controls are disabled and the panel shows that table.

With ``video_root`` (the folder holding ``<video_id>.<ext>``), the selected video plays beside the timeline in
JupyterLab, linked as in :mod:`tal_kit.viz.video`: a playhead follows it, a click on a bar seeks to the bar's start,
thumbnails run under the time axis. The video pane is an ``ipywidgets.HTML`` holding a ``<video>`` (ipywidgets'
own ``Video`` widget does not expose ``currentTime``; anywidget is not installed here); the linking script is
displayed, as trusted HTML, next to the figure in the panel's ``Output``, and the video is fetched from the Jupyter
server's /files/ route (:mod:`tal_kit.viz.jupyter_files`), which answers range requests, so seeking works offline.
"""
from __future__ import annotations

import html
import itertools
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import ipywidgets as widgets
import numpy as np
from IPython import get_ipython
from IPython.display import HTML, clear_output, display

from tal_kit.config import TestConfig
from tal_kit.extraction.decode import DecodeError
from tal_kit.inference.candidates import VideoCandidates, VideoDetections
from tal_kit.inference.nms import apply_nms, nms_settings
from tal_kit.viz.jupyter_files import JupyterServer, current_server, files_url
from tal_kit.viz.timeline import DetectionsLike, Track, timeline, video_detections
from tal_kit.viz.video import LINK_JS, VIDEO_MIME, link_figure, video_source_html
from tal_kit.extraction.runner import VIDEO_EXTENSIONS
from tal_kit.viz.video_frames import Thumbnail, playability, thumbnail_times, thumbnails

__all__ = ["Explorer", "explorer"]

ALL_CLASSES = -1


class Explorer:
    """The panel's state and widgets; display it in a notebook (``explorer(...)`` as a cell's last line).

    Attributes a script (or a test) can use: ``panel`` (the ipywidgets VBox), the controls (``video``,
    ``class_filter``, ``score_threshold``, ``tiou_threshold``, ``nms_method``, ``sigma``, ``iou_threshold``,
    ``max_seg_num``), ``figure`` (the plotly figure last drawn) and :meth:`current_detections`.
    """

    def __init__(self, ground_truth: Sequence[Any] | Mapping[str, Any], *, label_names: Sequence[str],
                 candidates: Mapping[str, VideoCandidates] | None = None, detections: DetectionsLike | None = None,
                 test_cfg: TestConfig | None = None, tiou_threshold: float = 0.5, score_threshold: float = 0.05,
                 tracks: Mapping[str, Track] | Callable[[str], Track | None] | None = None,
                 video_id: str | None = None, max_detections: int = 200,
                 video_root: str | Path | None = None, server: JupyterServer | None = None,
                 num_thumbnails: int = 16):
        if candidates is None and detections is None:
            raise ValueError("explorer: give pre-NMS candidates, a Detections table, or both")
        records = list(ground_truth.values()) if isinstance(ground_truth, Mapping) else list(ground_truth)
        self.ground_truth = {r.video_id: r for r in records}
        self.label_names = list(label_names)
        self.candidates = dict(candidates) if candidates is not None else None
        self.detections = detections
        self.tracks = tracks
        self.max_detections = max_detections
        self.figure = None
        self._drawn = False
        self._nms_cache: dict[tuple, VideoDetections] = {}
        # The linked video pane ("" or None: no pane, the timeline alone as before).
        self.video_root = Path(video_root) if video_root else None
        self.server = server
        self.num_thumbnails = num_thumbnails
        self._thumbnails: dict[str, list[Thumbnail]] = {}
        self._pane_video: str | None = None
        self._uid = f"{id(self):x}"
        self._draws = itertools.count()
        defaults = nms_settings(test_cfg)
        self._fixed_settings = {k: v for k, v in defaults.items()
                                if k not in ("method", "sigma", "iou_threshold", "max_seg_num")}

        video_ids = [v for v in self.ground_truth if self.candidates is None or v in self.candidates]
        if not video_ids:
            raise ValueError("explorer: no video has both ground truth and candidates")
        options = [(f"{v}  ({self.ground_truth[v].num_segments} GT)", v) for v in video_ids]
        style = {"description_width": "120px"}
        wide = widgets.Layout(width="420px")
        self.video = widgets.Dropdown(options=options, value=video_id or video_ids[0], description="video",
                                      style=style, layout=wide)
        present = sorted({int(c) for r in records for c in np.asarray(r.labels)})
        self.class_filter = widgets.Dropdown(
            options=[("all classes", ALL_CLASSES)] + [(self._name(c), c) for c in present], value=ALL_CLASSES,
            description="class", style=style, layout=wide)
        self.score_threshold = widgets.FloatSlider(value=score_threshold, min=0.0, max=1.0, step=0.01,
                                                   description="score ≥", continuous_update=False, style=style,
                                                   readout_format=".2f", layout=wide)
        self.tiou_threshold = widgets.FloatSlider(value=tiou_threshold, min=0.1, max=0.95, step=0.05,
                                                  description="tIoU for TP", continuous_update=False, style=style,
                                                  readout_format=".2f", layout=wide)
        self.nms_method = widgets.ToggleButtons(options=["soft", "hard", "none"], value=defaults["method"],
                                                description="NMS", style=style)
        self.sigma = widgets.FloatSlider(value=defaults["sigma"], min=0.05, max=2.0, step=0.05,
                                         description="Gaussian σ", continuous_update=False, style=style,
                                         layout=wide)
        self.iou_threshold = widgets.FloatSlider(value=defaults["iou_threshold"], min=0.05, max=0.95, step=0.05,
                                                 description="NMS IoU", continuous_update=False, style=style,
                                                 layout=wide)
        self.max_seg_num = widgets.IntSlider(value=min(int(defaults["max_seg_num"]), 1000), min=1, max=1000,
                                             description="top-k kept", continuous_update=False, style=style,
                                             layout=wide)
        self.status = widgets.HTML()
        self.output = widgets.Output(layout=widgets.Layout(width="100%"))
        for name, control in self._controls().items():
            control.add_class(f"tal-{name.replace('_', '-')}")
        self.output.add_class("tal-figure")
        self.status.add_class("tal-status")
        if self.candidates is None:
            for control in (self.nms_method, self.sigma, self.iou_threshold, self.max_seg_num):
                control.disabled = True
        nms_box = widgets.VBox([self.nms_method, widgets.HBox([self.sigma, self.iou_threshold]), self.max_seg_num])
        if self.candidates is None:
            nms_box.children += (widgets.HTML("<i>NMS controls need pre-NMS candidates (none cached)</i>"),)
        self.video_pane: widgets.HTML | None = None
        view: widgets.Widget = self.output
        if self.video_root is not None:
            if self.server is None:
                self.server = current_server()
            self.video_pane = widgets.HTML(layout=widgets.Layout(width="340px", min_width="340px"))
            self.video_pane.add_class("tal-video-pane")
            self.output.layout = widgets.Layout(flex="1 1 auto", min_width="0")
            view = widgets.HBox([self.video_pane, self.output], layout=widgets.Layout(width="100%"))
        self.panel = widgets.VBox([
            widgets.HBox([self.video, self.class_filter]),
            widgets.HBox([self.score_threshold, self.tiou_threshold]),
            nms_box, self.status, view,
        ])
        self.panel.add_class("tal-explorer")
        for control in self._controls().values():
            control.observe(self._on_change, names="value")
        self._sync_enabled()
        self.redraw()

    # ---- state -----------------------------------------------------------------------------------------------
    def _controls(self) -> dict[str, widgets.Widget]:
        return {"video": self.video, "class_filter": self.class_filter, "score_threshold": self.score_threshold,
                "tiou_threshold": self.tiou_threshold, "nms_method": self.nms_method, "sigma": self.sigma,
                "iou_threshold": self.iou_threshold, "max_seg_num": self.max_seg_num}

    def _name(self, label: int) -> str:
        return self.label_names[label] if 0 <= label < len(self.label_names) else f"class {label}"

    def settings(self) -> dict:
        """The NMS settings the controls describe (keyword arguments of ``tal_kit.ops.batched_nms``)."""
        return dict(self._fixed_settings, method=self.nms_method.value, sigma=float(self.sigma.value),
                    iou_threshold=float(self.iou_threshold.value), max_seg_num=int(self.max_seg_num.value))

    def current_detections(self) -> VideoDetections:
        """The selected video's detections under the current NMS settings (before score/class filtering)."""
        video_id = self.video.value
        if self.candidates is None:
            return video_detections(self.detections, video_id)
        settings = self.settings()
        key = (video_id, tuple(sorted(settings.items())))
        if key not in self._nms_cache:
            self._nms_cache[key] = apply_nms(self.candidates[video_id], settings)
        return self._nms_cache[key]

    def _track(self, video_id: str) -> Track | None:
        if self.tracks is None:
            return None
        if callable(self.tracks):
            return self.tracks(video_id)
        return self.tracks.get(video_id)

    # ---- the video pane --------------------------------------------------------------------------------------
    def video_file(self, video_id: str) -> Path | None:
        """``video_root/<video_id>.<ext>`` for the first common video extension that exists (None without one)."""
        if self.video_root is None:
            return None
        for ext in VIDEO_EXTENSIONS:
            for candidate in (self.video_root / f"{video_id}{ext}", self.video_root / f"{video_id}{ext.upper()}"):
                if candidate.is_file():
                    return candidate
        return None

    def _pane_html(self, video_id: str, path: Path | None) -> str:
        if path is None:
            return (f"<p class='tal-note'>no video file {html.escape(video_id)}.* in "
                    f"{html.escape(str(self.video_root))}</p>")
        try:
            problem = playability(path)
        except DecodeError as err:
            return f"<p class='tal-note'>{html.escape(str(err))}</p>"
        if problem is not None:
            return f"<p class='tal-note'>{html.escape(problem)}; the thumbnails under the timeline still show it.</p>"
        url = files_url(path, self.server) if self.server is not None else None
        if url is None:
            where = f"outside the Jupyter server's root {self.server.root_dir}" if self.server else \
                "not under a Jupyter server this kernel knows"
            return (f"<p class='tal-note'>{html.escape(str(path))} is {html.escape(where)}: the server's /files/ route "
                    "cannot serve it. Start "
                    "JupyterLab from a folder that contains the videos (or link them in).</p>")
        return video_source_html(url, element_id=f"tal-explorer-video-{self._uid}",
                                 mime=VIDEO_MIME.get(path.suffix.lower()))

    def _update_pane(self, video_id: str, path: Path | None) -> None:
        if self.video_pane is not None and self._pane_video != video_id:
            self.video_pane.value = self._pane_html(video_id, path)
            self._pane_video = video_id

    def _video_thumbnails(self, video_id: str, path: Path, duration: float) -> list[Thumbnail]:
        if video_id not in self._thumbnails:
            try:
                self._thumbnails[video_id] = thumbnails(path, thumbnail_times(duration, self.num_thumbnails))
            except DecodeError as err:  # a broken file must not take the panel down: no strip, the reason shown
                self._thumbnails[video_id] = []
                self.video_pane.value += f"<p class='tal-note'>no thumbnails: {html.escape(str(err))}</p>"
        return self._thumbnails[video_id]

    def _link_script(self) -> HTML:
        """The linking script for the figure just displayed (it waits for plotly to draw it, then links)."""
        marker = f"tal-link-{self._uid}-{next(self._draws)}"
        return HTML(f'<div id="{marker}" class="tal-link-marker"></div><script>{LINK_JS}\n'
                    "window.talLinkWhenReady(function () {\n"
                    f"  var marker = document.getElementById('{marker}');\n"
                    "  var panel = marker && marker.closest('.tal-explorer');\n"
                    "  return panel && [panel.querySelector('.tal-video-pane video'),\n"
                    "                   panel.querySelector('.tal-figure .js-plotly-plot')];\n"
                    "});</script>")

    # ---- drawing ---------------------------------------------------------------------------------------------
    def _sync_enabled(self) -> None:
        if self.candidates is None:
            return
        method = self.nms_method.value
        kind = self._fixed_settings.get("soft_kind", "gaussian")
        self.sigma.disabled = not (method == "soft" and kind == "gaussian")
        self.iou_threshold.disabled = not (method == "hard" or (method == "soft" and kind == "linear"))
        self.max_seg_num.disabled = method == "none"  # "none" keeps every candidate, as upstream does

    def build_figure(self):
        """The timeline for the current control values (also stored as ``self.figure``)."""
        video_id = self.video.value
        record = self.ground_truth[video_id]
        det = self.current_detections()
        classes = None if self.class_filter.value == ALL_CLASSES else [self.class_filter.value]
        self.figure = timeline(record, det, label_names=self.label_names,
                               tiou_threshold=float(self.tiou_threshold.value),
                               score_threshold=float(self.score_threshold.value), classes=classes,
                               max_detections=self.max_detections, track=self._track(video_id))
        path = self.video_file(video_id)
        self._update_pane(video_id, path)
        if path is not None:
            link_figure(self.figure, float(record.duration),
                        self._video_thumbnails(video_id, path, float(record.duration)))
        meta = self.figure.layout.meta
        if self.candidates is None:
            source = f"{len(det)} detections"
        else:
            method = self.nms_method.value
            source = (f"{len(self.candidates[video_id])} candidates → {len(det)} kept "
                      + (f"by {method} NMS" if method != "none" else "(NMS off)"))
        self.status.value = (f"<b>{video_id}</b>: {source}; {meta['num_shown']} shown "
                             f"(score ≥ {self.score_threshold.value:.2f})")
        return self.figure

    def redraw(self) -> None:
        fig = self.build_figure()
        if get_ipython() is None:  # a plain script: nothing to draw into (the figure is in self.figure)
            return
        with self.output:
            # The first draw clears nothing (there is nothing to clear). Headless runs once hung here: nbclient
            # answers captured output with comm messages on the shell socket and could miss the cell's reply
            # (root cause and fix: tal_kit/kernels.py).
            if self._drawn:
                clear_output(wait=True)
            display(fig)
            if self.video_pane is not None and "<video" in self.video_pane.value:
                display(self._link_script())
        self._drawn = True

    def _on_change(self, change: dict) -> None:
        self._sync_enabled()
        self.redraw()

    def _ipython_display_(self) -> None:
        display(self.panel)


def explorer(ground_truth: Sequence[Any] | Mapping[str, Any], *, label_names: Sequence[str],
             candidates: Mapping[str, VideoCandidates] | None = None, detections: DetectionsLike | None = None,
             **kwargs: Any) -> Explorer:
    """An interactive panel (see :class:`Explorer`): video picker, class filter, score and tIoU sliders, and NMS
    method / sigma / IoU / top-k controls that re-run NMS on cached ``candidates``; with ``video_root`` the video
    plays beside the timeline, linked to it."""
    return Explorer(ground_truth, label_names=label_names, candidates=candidates, detections=detections, **kwargs)
