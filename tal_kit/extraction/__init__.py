"""Raw videos -> per-video [T, C] features: the VideoMAE / VideoMAEv2 extraction recipe (EXTRACTION.md).

Modules, one idea each: :mod:`.decode` (PyAV, every frame once, counted, presentation times, VFR), :mod:`.clips`
(the sliding clip window), :mod:`.recipes` (pixel preprocessing), :mod:`.vit` (the video ViT),
:mod:`.checkpoints` (presets, local checkpoints, HF directories), :mod:`.features` (one video, batched),
:mod:`.runner` (many videos: shards, resume, manifest, failures), :mod:`.cli` (``tal-kit extract``).
"""
from tal_kit.extraction.checkpoints import BACKBONES, CheckpointError, LoadedBackbone, load_backbone, random_backbone
from tal_kit.extraction.clips import clip_starts, num_clips
from tal_kit.extraction.decode import DecodeError, iter_frames, probe_video
from tal_kit.extraction.features import BadVideo, ClipSettings, extract_video
from tal_kit.extraction.recipes import RECIPES, get_recipe
from tal_kit.extraction.runner import ExtractionError, RunReport, find_videos, run_extraction
from tal_kit.extraction.vit import VideoViT, ViTArch

__all__ = ["BACKBONES", "BadVideo", "CheckpointError", "ClipSettings", "DecodeError", "ExtractionError",
           "LoadedBackbone", "RECIPES", "RunReport", "VideoViT", "ViTArch", "clip_starts", "extract_video",
           "find_videos", "get_recipe", "iter_frames", "load_backbone", "num_clips", "probe_video",
           "random_backbone", "run_extraction"]
