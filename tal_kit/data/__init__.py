"""Data: annotations (JSON -> VideoRecord), feature files and time grids, the torch Dataset, the demo dataset.

Names are imported lazily, so that reading annotations (e.g. for evaluation) does not import torch.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "tal_kit.data.annotations": ["AnnotationDB", "AnnotationError", "AnnotationWarning", "VideoRecord",
                                 "load_annotations"],
    "tal_kit.data.dataset": ["TALDataset", "build_train_loader", "collate_videos", "truncate_video"],
    "tal_kit.data.features": ["FeatureError", "FeatureSource", "load_feature_file"],
    "tal_kit.data.grid": ["FeatureGrid", "grid_for_video", "resample_features"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'tal_kit.data' has no attribute {name!r}")
