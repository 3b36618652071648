"""Pixel recipes: decoded RGB uint8 frames -> the float tensor a ViT backbone reads.

``videomae2_tad`` (the default) is exactly VideoMAEv2 ``extract_tad_feature.py`` (EXTRACTION.md §1): RGB, float32
÷ 255, a bilinear squash of each frame to 224×224 (``align_corners=False``, no antialias, aspect ratio not kept),
no mean/std. ``kinetics`` is the fine-tuning-style alternative: bilinear resize of the short side to 224, a centre
crop, ImageNet mean/std. Which one produced the hosted features is unresolved (EXTRACTION.md §7), hence both.

Every recipe here works frame by frame (the recipe's resize of a [C, T, H, W] tensor treats each frame plane
independently), so each decoded frame is preprocessed once even when overlapping clips share it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["Recipe", "RECIPES", "get_recipe", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Recipe:
    """A named frame preprocessing: ``recipe(frames)`` maps uint8 [n, H, W, 3] to float32 [3, n, size, size]."""

    name: str
    size: int = 224
    short_side_crop: bool = False  # False: squash to size x size; True: short side to size, then centre crop
    normalise: bool = False  # ImageNet mean/std after ÷255

    def __call__(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(frames)
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"recipe {self.name}: expected uint8 frames [n, H, W, 3], got shape {tuple(x.shape)}")
        x = x.permute(3, 0, 1, 2).float() / 255.0  # [3, n, H, W], as the reference (C first, then ÷255)
        h, w = x.shape[-2:]
        if not self.short_side_crop:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        else:
            scale = self.size / min(h, w)
            new_h, new_w = max(self.size, round(h * scale)), max(self.size, round(w * scale))
            x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False)
            top, left = (new_h - self.size) // 2, (new_w - self.size) // 2
            x = x[..., top:top + self.size, left:left + self.size]
        if self.normalise:
            mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1, 1)
            std = torch.tensor(IMAGENET_STD).view(3, 1, 1, 1)
            x = (x - mean) / std
        return x.contiguous()

    def describe(self) -> str:
        geometry = (f"short side {self.size} + centre crop" if self.short_side_crop
                    else f"bilinear squash to {self.size}x{self.size}")
        return f"{self.name}: RGB/255, {geometry}, " + ("ImageNet mean/std" if self.normalise else "no mean/std")


RECIPES: dict[str, Recipe] = {
    "videomae2_tad": Recipe("videomae2_tad"),
    "kinetics": Recipe("kinetics", short_side_crop=True, normalise=True),
}


def get_recipe(name: str, size: int = 224) -> Recipe:
    """The recipe called ``name`` at input size ``size`` (224 for every published backbone)."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r} (choose from {', '.join(RECIPES)})")
    base = RECIPES[name]
    return base if size == base.size else Recipe(base.name, size, base.short_side_crop, base.normalise)
