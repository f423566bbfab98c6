"""Side-by-side videos and stills: original | reconstruction, hits and misses marked."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

HIT, MISS = (40, 180, 60), (220, 40, 40)


def side_by_side(original: np.ndarray, decoded: np.ndarray, hit: Sequence[bool], scale: int = 4,
                 bar: int = 3) -> np.ndarray:
    """Frames (T, scale*H + bar, 2*scale*W + gap, 3): original left, reconstruction right, and a
    bar under the reconstruction, green on a hit (index sent) and red on a miss (latent sent)."""
    t, h, w, _ = original.shape
    gap = 2 * scale
    out = np.full((t, scale * (h + bar), scale * (2 * w) + gap, 3), 255, np.uint8)
    up = lambda a: a.repeat(scale, axis=1).repeat(scale, axis=2)  # noqa: E731
    out[:, : scale * h, : scale * w] = up(original)
    out[:, : scale * h, scale * w + gap :] = up(decoded)
    for i, ok in enumerate(hit):
        out[i, scale * h + scale :, scale * w + gap :] = HIT if ok else MISS
    return out


def still(frames: np.ndarray, picks: int = 4) -> np.ndarray:
    """A few frames of a side-by-side clip stacked vertically, for a README picture."""
    idx = np.linspace(0, len(frames) - 1, picks).round().astype(int)
    return np.concatenate([frames[i] for i in idx], axis=0)


def write_side_by_side(video: dict, out: Path, fps: int = 8) -> tuple[Path, Path]:
    """Write ``side_by_side.mp4`` (H.264 via PyAV) and ``side_by_side.png`` (a still) into ``out``."""
    from PIL import Image

    from semcom.sources import write_video

    frames = side_by_side(video["original"], video["decoded"], video["hit"])
    mp4 = out / "side_by_side.mp4"
    write_video(mp4, frames, fps=fps)
    png = out / "side_by_side.png"
    Image.fromarray(still(frames)).save(png)
    return mp4, png
