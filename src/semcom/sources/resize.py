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


def scale_to_uint8(arr: np.ndarray, where: str) -> np.ndarray:
    """An image array of any depth as uint8, scaled rather than clipped: 8-bit as is, 16-bit (and other
    unsigned integers up to 16 bits) divided by 257, booleans to 0/255, floats in [0, 1] times 255 (in
    [0, 255] as they are, up to 65535 divided by 257). NaN or infinite values, negative values and
    integers or floats beyond 16 bits are a :class:`SourceError` naming ``where`` (the file and frame)."""
    arr = np.asarray(arr)
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if arr.size == 0:
        raise SourceError(f"empty image: {where}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
            raise SourceError(f"image has {bad} NaN or infinite values: {where}")
        arr = arr.astype(np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0 or hi > 65535:
            raise SourceError(f"image values span {lo:g}..{hi:g}, outside 0..1, 0..255 or 0..65535: {where}")
        scale = 255.0 if hi <= 1.0 else (1.0 if hi <= 255.0 else 1.0 / 257.0)
        return np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 65535:
            raise SourceError(f"image values span {lo}..{hi}, outside 0..65535: {where}")
        if arr.dtype.itemsize == 1:
            return arr.astype(np.uint8)
        return ((arr.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    raise SourceError(f"image of unsupported dtype {arr.dtype}: {where}")


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
