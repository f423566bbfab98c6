"""Shared frame geometry: size checks and centre-crop + resize to the model's frame size.

Both file readers (:mod:`semcom.sources.video` and :mod:`semcom.sources.folder`)
use :func:`fit_frame`, so a clip read from a video file and the same clip read
from a folder of images are cropped and resampled identically.
"""

from __future__ import annotations

import operator

import numpy as np
from PIL import Image

from semcom.errors import SourceError


def check_size(height: object, width: object) -> tuple[int, int]:
    """Return ``(height, width)`` as ints, or raise SourceError if either is not a positive integer."""
    out = []
    for label, value in (("height", height), ("width", width)):
        try:
            if isinstance(value, bool):
                raise TypeError
            v = operator.index(value)
        except TypeError:
            raise SourceError(f"frame {label} must be a positive integer, got {value!r}") from None
        if v < 1:
            raise SourceError(f"frame {label} must be a positive integer, got {v}")
        out.append(v)
    return out[0], out[1]


def check_max_frames(max_frames: object, what: str = "max_frames") -> int | None:
    """Return ``max_frames`` as an int (or None), or raise SourceError if it is not a positive integer."""
    if max_frames is None:
        return None
    try:
        if isinstance(max_frames, bool):
            raise TypeError
        v = operator.index(max_frames)
    except TypeError:
        raise SourceError(f"{what} must be a positive integer, got {max_frames!r}") from None
    if v < 1:
        raise SourceError(f"{what} must be a positive integer, got {v}")
    return v


def crop_box(src_height: int, src_width: int, height: int, width: int) -> tuple[float, float, float, float]:
    """The largest centred box ``(left, top, right, bottom)`` of a ``src_height x src_width``
    image that has the aspect ratio ``width / height``."""
    target = width / height
    if src_width / src_height > target:  # too wide: trim left and right
        w = src_height * target
        left = (src_width - w) / 2.0
        return (left, 0.0, left + w, float(src_height))
    h = src_width / target  # too tall (or exact): trim top and bottom
    top = (src_height - h) / 2.0
    return (0.0, top, float(src_width), top + h)


def _as_rgb_image(img: np.ndarray | Image.Image) -> Image.Image:
    if isinstance(img, Image.Image):
        return img if img.mode == "RGB" else img.convert("RGB")
    arr = np.asarray(img)
    if arr.dtype != np.uint8:
        raise SourceError(f"frames must be uint8 arrays, got dtype {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        return Image.fromarray(arr).convert("RGB")
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        return Image.fromarray(np.ascontiguousarray(arr[..., :3]))
    raise SourceError(f"frames must be HxW, HxWx3 or HxWx4 arrays, got shape {arr.shape}")


def fit_frame(img: np.ndarray | Image.Image, height: int, width: int) -> np.ndarray:
    """Centre-crop ``img`` to the aspect ratio ``width / height`` and resize it to ``height x width``.

    ``img`` is a PIL image or a uint8 array (HxW grey, HxWx3 RGB or HxWx4 RGBA; alpha is
    dropped). Downscaling uses Pillow's LANCZOS filter, which low-passes according to the
    scale factor, so fine detail does not alias. A frame that already has the target
    size is returned unchanged (exact round trips). Returns a writable HxWx3 uint8 array.
    """
    height, width = check_size(height, width)
    if not isinstance(img, Image.Image):
        arr = np.asarray(img)
        if arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape == (height, width, 3):
            return np.array(arr, copy=True)
    pil = _as_rgb_image(img)
    if pil.size == (width, height):
        return np.array(pil, dtype=np.uint8)
    box = crop_box(pil.height, pil.width, height, width)
    out = pil.resize((width, height), resample=Image.Resampling.LANCZOS, box=box)
    return np.array(out, dtype=np.uint8)
