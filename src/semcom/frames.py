"""Conversions between uint8 frames (H, W, 3) and model tensors (3, H, W) in [0, 1]."""

from __future__ import annotations

import numpy as np
import torch

from semcom.errors import SourceError


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """(B, H, W, 3) or (H, W, 3) uint8 -> (B, 3, H, W) float32 in [0, 1]."""
    arr = np.asarray(frames)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise SourceError(f"expected frames of shape (H, W, 3), got {arr.shape[1:]}")
    if arr.dtype != np.uint8:
        if not np.all(np.isfinite(arr)):
            raise SourceError("frame contains NaN or infinite values")
        raise SourceError(f"expected uint8 frames, got {arr.dtype}")
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float().div_(255.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [0, 1] -> (B, H, W, 3) uint8 (rounded)."""
    return x.detach().clamp(0, 1).mul(255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
