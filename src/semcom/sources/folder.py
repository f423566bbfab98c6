"""Reading and writing clips as folders of image files (one image per frame).

:func:`read_folder` reads the images of a folder in name order (natural order, so
``frame2.png`` comes before ``frame10.png``) and centre-crops/resizes each with
:func:`semcom.sources.resize.fit_frame`, exactly like :func:`semcom.sources.video.read_video`.
:func:`write_folder` writes lossless PNGs ``frame_00000.png``, ``frame_00001.png``, ...
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator

import numpy as np
from PIL import Image, ImageOps

from semcom.errors import SourceError
from semcom.sources.resize import check_max_frames, check_size, fit_frame, scale_to_uint8

#: Image file extensions read by :func:`read_folder` (case-insensitive).
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def _natural_key(name: str) -> list:
    return [(0, int(part), part) if part.isdigit() else (1, 0, part.lower())
            for part in re.split(r"(\d+)", name)]


def list_images(path: str | os.PathLike) -> list[str]:
    """The image files in folder ``path`` (full paths, natural name order).

    Raises :class:`SourceError` if ``path`` does not exist, is not a folder, or holds no images.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise SourceError(f"image folder not found: {path}")
    if not os.path.isdir(path):
        raise SourceError(f"not a folder: {path}")
    try:
        names = os.listdir(path)
    except OSError as exc:
        raise SourceError(f"cannot list image folder: {path} ({exc.strerror or exc})") from None
    images = [n for n in names
              if os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS
              and not n.startswith(".") and os.path.isfile(os.path.join(path, n))]
    if not images:
        raise SourceError(f"no images ({', '.join(e[1:] for e in IMAGE_EXTENSIONS)}) in folder: {path}")
    return [os.path.join(path, n) for n in sorted(images, key=_natural_key)]


#: Pillow modes whose samples are wider than 8 bits (16-bit and 32-bit integers, 32-bit floats).
_DEEP_MODES = ("I", "F", "I;16", "I;16B", "I;16L", "I;16N")


def _load(file: str, frame: int = 0) -> Image.Image | np.ndarray:
    """One image as RGB: 8-bit images through Pillow; deeper ones (16-bit PNG, float TIFF) scaled to
    8 bits (:func:`semcom.sources.resize.scale_to_uint8`; NaN or inf is an error naming file and frame)."""
    try:
        with Image.open(file) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in _DEEP_MODES:
                arr = scale_to_uint8(np.asarray(im), f"{file} (frame {frame})")
                return np.ascontiguousarray(arr if arr.ndim == 3 else np.stack([arr] * 3, axis=-1))
            return im.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SourceError(f"cannot decode image: {file} ({reason})") from None


def read_folder(path: str | os.PathLike, height: int = 64, width: int = 64,
                max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Yield the images in folder ``path`` as ``height x width x 3`` uint8 RGB frames.

    Images (png, jpg, jpeg, bmp, tif, tiff, webp) are read in natural name order,
    centre-cropped to the aspect ratio ``width / height`` and resized (an image that
    already has the target size is passed through unchanged). At most ``max_frames``
    are yielded. A missing folder or one without images raises :class:`SourceError`
    before this function returns; an image that cannot be decoded raises it while iterating.
    """
    height, width = check_size(height, width)
    max_frames = check_max_frames(max_frames)
    files = list_images(path)
    if max_frames is not None:
        files = files[:max_frames]
    return (fit_frame(_load(f, i), height, width) for i, f in enumerate(files))


def write_folder(path: str | os.PathLike, frames: Iterable[np.ndarray]) -> int:
    """Write ``frames`` (HxWx3 uint8) to folder ``path`` as ``frame_00000.png``, ``frame_00001.png``, ...

    The folder is created if needed; existing files of the same names are overwritten
    and other files are left alone. Returns the number of frames written.
    """
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise SourceError(f"not a folder: {path}")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise SourceError(f"cannot create image folder: {path} ({exc.strerror or exc})") from None
    count = 0
    for i, frame in enumerate(frames):
        arr = np.asarray(frame)
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
            raise SourceError(f"frame {i} for {path} must be an HxWx3 uint8 array, "
                              f"got shape {arr.shape} dtype {arr.dtype}")
        file = os.path.join(path, f"frame_{i:05d}.png")
        try:
            Image.fromarray(np.ascontiguousarray(arr)).save(file)
        except OSError as exc:
            raise SourceError(f"cannot write image: {file} ({exc.strerror or exc})") from None
        count += 1
    return count
