"""What an mAP number measures, so that every place that shows one can say so (results table, metrics.json,
notebook 05, the ``train`` and ``infer`` output). ``python -m tal_kit evaluate`` scores a results file against the
ground truth's own classes, so it is per-class by construction.

Two things make a tal_kit number incomparable with a published one:

* **class-agnostic evaluation.** ANet, HACS and FineAction train a single-class proposal generator
  (``num_classes: 1``); their published mAP labels the proposals with video-level classifier scores
  (``test_cfg.ext_score_file``, SPEC §B.3). Without a score file the ground truth is collapsed to one class too,
  so classification errors cost nothing: a different, easier metric.
* **synthetic data.** The demo dataset and dry-run data (``python -m tal_kit dry-run-data``) carry made-up
  features; their numbers test the pipeline, not the method.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tal_kit.config import Config

# Written by ``dry-run-data`` into the data root; its presence marks the features as synthetic.
SYNTHETIC_MARKER = "SYNTHETIC_DATA.json"
SYNTHETIC_DATASETS = ("demo", "demo_videos")  # the generated datasets' dataset_name


@dataclass(frozen=True)
class MetricKind:
    """How to name an mAP and whether it may stand beside the published number."""

    name: str  # "mAP" or "class-agnostic mAP"
    class_agnostic: bool
    synthetic: bool
    comparable_to_published: bool
    note: str  # one sentence for the user; "" for a plain per-class mAP on real data

    @property
    def label(self) -> str:
        """``name`` plus the note, e.g. "class-agnostic mAP (no video-level class scores: ...)"."""
        return f"{self.name} ({self.note})" if self.note else self.name

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "label": self.label}


def is_synthetic_data(dataset_name: str, data_root: str | Path | None) -> bool:
    """True for the generated datasets (the demo, the video demo) and for a data root written by ``dry-run-data``."""
    if dataset_name in SYNTHETIC_DATASETS:
        return True
    return data_root is not None and (Path(data_root) / SYNTHETIC_MARKER).exists()


def metric_kind(num_classes: int, ext_score_file: str | None, *, synthetic: bool = False,
                published: str | None = None) -> MetricKind:
    """The kind of mAP evaluated with ``num_classes`` classes: class-agnostic when there is one class and no
    video-level score file gives the detections real classes.

    ``published`` (e.g. "InternVideo 39.00") names the number the note says it is not comparable to.
    """
    class_agnostic = num_classes == 1 and not ext_score_file
    notes = []
    if class_agnostic:
        target = f"the published {published}, which is" if published else "published numbers, which are"
        notes.append("no video-level class scores (test_cfg.ext_score_file), so classification errors are not "
                     f"counted: not comparable to {target} per-class mAP")
    if synthetic:
        notes.append("synthetic features: a test of the pipeline, not a result")
    return MetricKind(name="class-agnostic mAP" if class_agnostic else "mAP", class_agnostic=class_agnostic,
                      synthetic=synthetic, comparable_to_published=not (class_agnostic or synthetic),
                      note="; ".join(notes))


def metric_kind_for_config(cfg: Config, data_root: str | Path | None = None,
                           published: str | None = None) -> MetricKind:
    """:func:`metric_kind` of a Config; ``data_root`` (default data/<preset>) is where a dry-run marker would be."""
    from tal_kit.config import default_data_root

    root = Path(data_root) if data_root is not None else default_data_root(cfg)
    return metric_kind(cfg.dataset.num_classes, cfg.test_cfg.ext_score_file,
                       synthetic=is_synthetic_data(cfg.dataset_name, root), published=published)
