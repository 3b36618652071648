"""Data: annotations (JSON -> VideoRecord), feature files and time grids, the torch Dataset, the demo dataset."""
from tal_kit.data.annotations import (AnnotationDB, AnnotationError, AnnotationWarning, VideoRecord,
                                      load_annotations)

__all__ = ["AnnotationDB", "AnnotationError", "AnnotationWarning", "VideoRecord", "load_annotations"]
