"""1-D NMS for temporal action localization: hard NMS, soft-NMS, segment voting, batched over videos.

One behaviour (SPEC §E), three backends: CUDA kernels, C++ kernels (a torch extension built on first use) and pure
torch (vectorised fallback; plus the sequential reference the others are tested against). See tal_kit/ops/nms.py
for the API and tal_kit/ops/reference.py for the exact semantics.
"""
from .build import backend_info, cli_build_ext, cli_info_lines
from .nms import PackedDetections, batched_nms, hard_nms, nms_packed, nms_videos, soft_nms
from .params import NMSParams, params_from_test_cfg

__all__ = ["batched_nms", "nms_videos", "nms_packed", "soft_nms", "hard_nms", "backend_info", "NMSParams",
           "PackedDetections", "params_from_test_cfg", "cli_build_ext", "cli_info_lines"]
