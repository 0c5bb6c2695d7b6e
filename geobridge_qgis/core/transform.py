"""Pixels -> a tower's input tensor, exactly as the bundle's manifest says.

The official preprocessing: bicubic resize straight to the square input (no crop, the aspect
ratio is not kept), scale to [0, 1], normalise with the manifest's mean/std (ImageNet's for
GeoBridge), NCHW float32.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
}


def to_pixel_values(images: list[np.ndarray], spec: dict[str, Any]) -> np.ndarray:
    """uint8 RGB arrays [H, W, 3] -> float32 [N, 3, h, w] for a tower with input `spec`."""
    h, w = spec["size"]
    resample = _RESAMPLE[spec.get("resample", "bicubic")]
    mean = np.asarray(spec["mean"], dtype=np.float32)[:, None, None]
    std = np.asarray(spec["std"], dtype=np.float32)[:, None, None]
    out = np.empty((len(images), 3, h, w), dtype=np.float32)
    for i, img in enumerate(images):
        if img.shape[:2] != (h, w):
            img = np.asarray(Image.fromarray(img).resize((w, h), resample))
        out[i] = (img.transpose(2, 0, 1).astype(np.float32) / 255.0 - mean) / std
    return out


def rotations(image: np.ndarray, angles: tuple[int, ...] = (0, 90, 180, 270)) -> list[np.ndarray]:
    """The image turned by each angle (degrees, multiples of 90, counter-clockwise)."""
    return [np.ascontiguousarray(np.rot90(image, k=(a // 90) % 4)) for a in angles]
