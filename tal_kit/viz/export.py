"""One standalone HTML file holding one or several plotly figures, with plotly.js embedded (viewable offline).

The file carries its own copy of plotly.js (about 4-5 MB) so that it opens from a disk, an e-mail attachment or
an air-gapped machine without fetching anything; several figures share that one copy.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Mapping, Sequence

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from tal_kit.atomic import write_text_atomic

__all__ = ["export_html", "standalone_page"]

FigureSet = go.Figure | Sequence[go.Figure] | Mapping[str, go.Figure]

# Zoom with the mouse wheel as well as by dragging; keep the mode bar (pan, zoom, reset, PNG download).
PLOT_CONFIG = {"scrollZoom": True, "displaylogo": False, "responsive": True}


def _named_figures(figures: FigureSet) -> list[tuple[str, go.Figure]]:
    if isinstance(figures, go.Figure):
        return [("", figures)]
    if isinstance(figures, Mapping):
        items = list(figures.items())
    else:
        items = [("", fig) for fig in figures]
    if not items:
        raise ValueError("export_html: no figure to export")
    for name, fig in items:
        if not isinstance(fig, go.Figure):
            raise TypeError(f"export_html: {name or 'an item'} is a {type(fig).__name__}, not a plotly Figure")
    return [(str(name), fig) for name, fig in items]


def export_html(figures: FigureSet, path: str | Path, *, title: str = "tal_kit timelines") -> Path:
    """Write ``figures`` (one figure, a list, or a mapping heading -> figure) into one self-contained HTML file.

    plotly.js is inlined once; each figure gets its own ``<section>`` with an ``<h2>`` heading when named.
    Returns the path written (atomically).
    """
    sections = []
    for index, (name, fig) in enumerate(_named_figures(figures)):
        div = fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"tal-figure-{index}", config=PLOT_CONFIG)
        heading = f"<h2>{html.escape(name)}</h2>\n" if name else ""
        sections.append(f'<section class="tal-figure">\n{heading}{div}\n</section>')
    page = standalone_page(title, sections)
    return write_text_atomic(path, page)


def standalone_page(title: str, body: list[str], *, css: str = "") -> str:
    """One offline HTML page: ``title`` as <title> and <h1>, plotly.js inlined once in the head, then ``body``
    (HTML fragments, in order). ``css`` adds rules to the page's style."""
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>body{{font-family:sans-serif;margin:1em 2em}} h2{{font-size:1.1em;margin:1.2em 0 0.2em}}{css}</style>",
        # plotly.js ships no "</script>" inside, so it can be inlined as is (plotly's own write_html does this).
        f'<script type="text/javascript">{get_plotlyjs()}</script>',
        "</head>",
        "<body>",
        f"<h1>{html.escape(title)}</h1>",
        *body,
        "</body>",
        "</html>",
        "",
    ])
