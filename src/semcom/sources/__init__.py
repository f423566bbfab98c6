"""Frame sources: the paper's eight content regimes, video files and image folders.

:func:`open_source` turns a user's spec into a :class:`Source`, a small
materialised clip of ``height x width`` RGB uint8 frames:

* a regime name (see :data:`REGIMES`) renders that regime from real photographs
  (:mod:`semcom.sources.regimes`);
* a path to a video file is decoded with PyAV (:mod:`semcom.sources.video`);
* a path to a folder is read as one image per frame (:mod:`semcom.sources.folder`).

Files are centre-cropped to the target aspect ratio and resized.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np

from semcom.errors import SourceError
from semcom.sources.folder import IMAGE_EXTENSIONS, read_folder, write_folder
from semcom.sources.regimes import DEFAULT_FRAMES, REGIMES, SCENARIOS, regime_clip, scenario_of
from semcom.sources.resize import check_max_frames, check_size, fit_frame
from semcom.sources.video import VIDEO_EXTENSIONS, read_video, write_video

__all__ = [
    "DEFAULT_FRAMES", "IMAGE_EXTENSIONS", "REGIMES", "SCENARIOS", "Source", "VIDEO_EXTENSIONS",
    "fit_frame", "open_source", "read_folder", "read_video", "regime_clip", "scenario_of",
    "write_folder", "write_video",
]

SourceKind = Literal["regime", "video", "folder"]


@dataclass
class Source:
    """A clip ready for the link: ``frames`` is a (T, H, W, 3) uint8 array with T >= 1.

    ``name`` is the regime name or the file/folder's base name; ``spec`` is what the
    user passed to :func:`open_source`.
    """

    name: str
    kind: SourceKind
    frames: np.ndarray
    spec: str = ""

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.frames)

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def scenario(self) -> str | None:
        """The paper's scenario for a regime source, None for files."""
        return scenario_of(self.name) if self.kind == "regime" else None


def open_source(spec: str | os.PathLike, height: int = 64, width: int = 64,
                frames: int | None = None, seed: int = 0) -> Source:
    """Open ``spec`` (a regime name, a video file or a folder of images) as a :class:`Source`.

    For a regime, ``frames`` is the clip length T (default :data:`DEFAULT_FRAMES`) and
    ``seed`` selects the rendering. For files, ``frames`` is a maximum and ``seed`` is
    ignored. A regime name wins over a file or folder of the same name in the working
    directory (write ``./static`` to mean the path). Raises :class:`SourceError` for a
    spec that is none of these, for unreadable files and for sources without frames.
    """
    height, width = check_size(height, width)
    text = os.fspath(spec)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if text in REGIMES:
        clip = regime_clip(text, seed=seed, frames=frames, height=height, width=width)
        return Source(name=text, kind="regime", frames=clip, spec=text)
    max_frames = check_max_frames(frames, "frames")
    if os.path.isdir(text):
        kind: SourceKind = "folder"
        it = read_folder(text, height, width, max_frames)
    elif os.path.isfile(text):
        kind = "video"
        it = read_video(text, height, width, max_frames)
    else:
        raise SourceError(f"no such regime, video file or image folder: {text} "
                          f"(regimes: {', '.join(REGIMES)})")
    clip = list(it)
    if not clip:
        raise SourceError(f"no frames in {kind}: {text}")
    name = os.path.basename(os.path.normpath(text)) or text
    return Source(name=name, kind=kind, frames=np.stack(clip), spec=text)
