"""Data: annotations (JSON -> VideoRecord), feature files and time grids, the torch Dataset, the demo dataset."""
from tal_kit.data.annotations import (AnnotationDB, AnnotationError, AnnotationWarning, VideoRecord,
                                      load_annotations)
from tal_kit.data.dataset import TALDataset, build_dataloader, collate_videos, truncate_video
from tal_kit.data.features import FeatureError, FeatureSource, load_feature_file
from tal_kit.data.grid import FeatureGrid, grid_for_video, resample_features

__all__ = ["AnnotationDB", "AnnotationError", "AnnotationWarning", "VideoRecord", "load_annotations",
           "TALDataset", "build_dataloader", "collate_videos", "truncate_video",
           "FeatureError", "FeatureSource", "load_feature_file", "FeatureGrid", "grid_for_video", "resample_features"]
