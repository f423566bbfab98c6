"""Clips made from the validation photos (:data:`~semcom.sources.photos.VALIDATION_PHOTOS`), which no
learned codec of the zoo trains on and no content regime uses: fidelity measured on them is fidelity on
content the training never saw, in the motions a user's video has.

Rendered by the same virtual camera as the regimes (:mod:`semcom.sources.regimes`): bilinear views of a
photo, anti-aliased for their scale, with sensor noise of one grey level.

* ``heldout_pan_zoom`` — a slow pan over ``ascent`` with a zoom in of about 25 %;
* ``heldout_fast_pan`` — a fast pan over ``ascent`` (about 4 output pixels per frame), bouncing at its edges;
* ``heldout_light`` — ``present``, an almost fixed view while the light dims to about half;
* ``heldout_cuts`` — hard cuts every 12 frames between views of ``ascent`` and ``present``.
"""

from __future__ import annotations

import numpy as np

from semcom.errors import SourceError
from semcom.sources.regimes import _bounce, _concat, _finish, _render, _shots

HELDOUT_CLIPS = ("heldout_pan_zoom", "heldout_fast_pan", "heldout_light", "heldout_cuts")
HELDOUT_SCENARIO = "HELD-OUT"
DEFAULT_HELDOUT_FRAMES = 48


def _pan_zoom(rng, n):
    t = np.arange(n) / max(n - 1, 1)
    hs = 300.0 * (1.0 - 0.25 * t)
    return _shots("ascent", 200.0 + 90.0 * t, 260.0 - 40.0 * t, hs, n=n), None


def _fast_pan(rng, n):
    hs = 200.0
    step = 4.0 * hs / 64.0
    x = _bounce(120.0 + step * np.arange(n) * 0.8, 100.0, 412.0)
    y = _bounce(150.0 + step * np.arange(n) * 0.6, 100.0, 412.0)
    return _shots("ascent", x, y, hs, n=n), None


def _light(rng, n):
    t = np.arange(n) / max(n - 1, 1)
    gain = (1.0 - 0.5 * t * t * (3.0 - 2.0 * t)).astype(np.float32)

    def light(clip):
        return np.clip(clip * gain[:, None, None, None], 0.0, 255.0)

    return _shots("present", 64.0 + 2.0 * t, 64.0, 100.0, n=n), light


def _cuts(rng, n):
    parts = []
    views = [("ascent", 256.0, 256.0, 260.0), ("present", 64.0, 64.0, 110.0), ("ascent", 150.0, 380.0, 180.0)]
    for k, start in enumerate(range(0, n, 12)):
        m = min(12, n - start)
        photo, cx, cy, hs = views[k % len(views)]
        drift = np.arange(m) * 0.5
        parts.append(_shots(photo, cx + drift, cy, hs, n=m))
    return _concat(parts), None


_BUILDERS = {"heldout_pan_zoom": _pan_zoom, "heldout_fast_pan": _fast_pan, "heldout_light": _light,
             "heldout_cuts": _cuts}


def heldout_clip(name: str, seed: int = 0, frames: int = DEFAULT_HELDOUT_FRAMES, height: int = 64,
                 width: int = 64) -> np.ndarray:
    """Render the held-out clip ``name`` as (T, height, width, 3) uint8 (deterministic per seed: the noise)."""
    if name not in _BUILDERS:
        raise SourceError(f"unknown held-out clip {name!r}; choose from {', '.join(HELDOUT_CLIPS)}")
    rng = np.random.default_rng(seed)
    shots, light = _BUILDERS[name](rng, frames)
    clip = _render(shots, height, width)
    if light is not None:
        clip = light(clip)
    return _finish(clip, rng)
