"""The eight content regimes of the paper (section IV-A), rendered from real photographs.

The paper evaluates on short video clips (T in [36, 80] frames) in eight content
regimes. We cannot download clips, so each regime is filmed by a *virtual camera*
looking at real photographs that ship inside installed packages
(:mod:`semcom.sources.photos`). A camera view is a crop window on a photo: its
centre, its height in photo pixels (the width follows from the output aspect
ratio) and a rotation. Every frame is resampled from the photo to
``height x width`` with bilinear interpolation from a copy of the photo that was
Gaussian-blurred for the view's scale (``sigma = (scale - 1) / 2`` photo pixels,
the same anti-aliasing rule as :func:`skimage.transform.rescale`), so
downscaled views do not alias. Every frame then gets sensor noise
(Gaussian, sigma = 1 grey level) and is rounded to uint8.

Regimes (and the scenario of the paper each belongs to, see :data:`SCENARIOS`):

* ``static`` (STABLE): the astronaut portrait, a fixed view; only sensor noise changes.
* ``low_motion`` (STABLE): the cat (``chelsea``), a slow pan of 0.3-0.6 output pixels per
  frame in a random direction with a very slow zoom (at most +-6 % over the clip).
* ``high_motion`` (MODERATE): a fast Lissajous pan and zoom over the Summer Palace
  photo (``china``), about 4-7 output pixels per frame, sweeping the pagoda, the
  trees and the lake, so the clip covers different content.
* ``scene_change`` (SCENE_CHANGE): hard cuts between four photos (rocket, coffee,
  immunohistochemistry, coins) in a seed-dependent order; each segment pans slightly.
* ``repetitive_return`` (STABLE): three scenes (retina, cameraman, garage shelves)
  visited in the pattern A B A C A B A C ...; every visit starts from the scene's
  own view (within a pixel) and drifts slightly, so later visits nearly repeat earlier ones.
* ``cam_shake`` (GRADUAL_DRIFT): the motorcycle, a fixed view shaken by a smoothed
  random walk, as if hand-held: translation with a standard deviation of about 1.5-2
  output pixels (excursions of a few pixels) and rotation of about 0.8 degrees.
* ``high_texture`` (MODERATE): a texture photo (gravel or grass, chosen by the seed)
  panned at a moderate 1.5-2.5 output pixels per frame along a gently curved path.
* ``illum_change`` (GRADUAL_DRIFT): the dahlia (``flower``), an almost fixed view
  while the lighting changes gradually over the clip: a gain ramp between 1.0 and
  about 0.45 (darkening or, depending on the seed, brightening), a gamma drift and a
  colour-temperature drift.

Clips are deterministic: :func:`regime_clip` draws everything from
``numpy.random.default_rng(seed + offset)`` with a fixed per-regime offset. Motion
is specified relative to the crop window, so the same seed shows the same content
at every output size.
"""

from __future__ import annotations

import operator
import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from semcom.errors import SourceError
from semcom.sources.photos import load_photo
from semcom.sources.resize import check_size

REGIMES: tuple[str, ...] = ("static", "low_motion", "high_motion", "scene_change",
                            "repetitive_return", "cam_shake", "high_texture", "illum_change")

#: The paper's scenarios (section IV-A) and the regimes in each.
SCENARIOS: dict[str, tuple[str, ...]] = {
    "STABLE": ("static", "low_motion", "repetitive_return"),
    "GRADUAL_DRIFT": ("illum_change", "cam_shake"),
    "MODERATE": ("high_motion", "high_texture"),
    "SCENE_CHANGE": ("scene_change",),
}

#: Default clip length T per regime, all in the paper's range [36, 80].
DEFAULT_FRAMES: dict[str, int] = {
    "static": 48,
    "low_motion": 64,
    "high_motion": 72,
    "scene_change": 80,
    "repetitive_return": 80,
    "cam_shake": 60,
    "high_texture": 56,
    "illum_change": 72,
}

#: Sensor noise added to every frame, in grey levels (standard deviation).
NOISE_SIGMA = 1.0

#: Reference output height for motion speeds: "px per frame" in the docs means
#: pixels of a 64-pixel-high output, i.e. 1/64 of the crop window's height.
_REF = 64.0

#: Texture photos of ``high_texture`` and their crop heights (the two with the most
#: fine detail at 64x64; brick and the Hubble deep field are mostly flat at that size).
_TEXTURES: tuple[tuple[str, float], ...] = (("gravel", 180.0), ("grass", 160.0))


def scenario_of(regime: str) -> str:
    """The paper's scenario (STABLE, GRADUAL_DRIFT, MODERATE or SCENE_CHANGE) of ``regime``."""
    for scenario, members in SCENARIOS.items():
        if regime in members:
            return scenario
    raise SourceError(f"unknown regime {regime!r}; choose from {', '.join(REGIMES)}")


def _offset(name: str) -> int:
    """Stable per-regime seed offset (the same in every process, unlike ``hash``)."""
    return zlib.crc32(name.encode("ascii"))


# --------------------------------------------------------------------------- camera

@dataclass
class _Shots:
    """Per-frame camera views: photo name, crop centre (photo px), crop height (photo px), angle (rad)."""

    photo: list[str]
    cx: np.ndarray
    cy: np.ndarray
    hs: np.ndarray
    angle: np.ndarray


def _shots(photo: str | list[str], cx, cy, hs, angle=0.0, n: int | None = None) -> _Shots:
    arrays = [np.asarray(a, dtype=np.float64) for a in (cx, cy, hs, angle)]
    if n is None:
        n = max(a.size for a in arrays)
    cx, cy, hs, angle = (np.broadcast_to(a, (n,)).copy() for a in arrays)
    photos = [photo] * n if isinstance(photo, str) else list(photo)
    return _Shots(photos, cx, cy, hs, angle)


def _bounce(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Reflect ``x`` into ``[lo, hi]`` (a camera path that meets an edge turns back)."""
    if hi <= lo:
        return np.full_like(x, (lo + hi) / 2.0)
    span = hi - lo
    y = np.mod(x - lo, 2.0 * span)
    return lo + np.where(y > span, 2.0 * span - y, y)


def _smooth_walk(rng: np.random.Generator, n: int, rho: float, std: float) -> np.ndarray:
    """A smooth random walk (hand-held drift): white noise low-passed twice by an AR(1)
    filter with pole ``rho``, scaled to the stationary standard deviation ``std``."""
    burn = int(np.ceil(6.0 / (1.0 - rho)))
    x = rng.standard_normal(n + burn)
    for _ in range(2):
        y = np.empty_like(x)
        acc = 0.0
        for i in range(x.size):
            acc = rho * acc + x[i]
            y[i] = acc
        x = y
    var = (1.0 + rho * rho) / (1.0 - rho * rho) ** 3  # stationary variance of the double filter
    return x[burn:] * (std / np.sqrt(var))


@lru_cache(maxsize=48)
def _blurred(name: str, level: int) -> np.ndarray:
    """``name`` as float32, pre-blurred for a downscale of ``2 ** (level / 4)`` (read-only)."""
    img = load_photo(name).astype(np.float32)
    scale = 2.0 ** (level / 4.0)
    sigma = max(0.0, (scale - 1.0) / 2.0)
    if sigma > 0.05:
        from scipy.ndimage import gaussian_filter

        img = gaussian_filter(img, sigma=(sigma, sigma, 0.0), mode="reflect", truncate=3.0)
    img.setflags(write=False)
    return img


def _bilinear(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Sample ``img`` (h, w, C) at pixel-index coordinates ``x, y`` (any shape), edges clamped."""
    h, w = img.shape[:2]
    x = np.clip(x, 0.0, w - 1.0)
    y = np.clip(y, 0.0, h - 1.0)
    x0 = np.floor(x).astype(np.intp)
    y0 = np.floor(y).astype(np.intp)
    fx = (x - x0).astype(np.float32)[..., None]
    fy = (y - y0).astype(np.float32)[..., None]
    x1 = np.minimum(x0 + 1, w - 1)
    y1 = np.minimum(y0 + 1, h - 1)
    top = img[y0, x0] * (1.0 - fx) + img[y0, x1] * fx
    bot = img[y1, x0] * (1.0 - fx) + img[y1, x1] * fx
    return top * (1.0 - fy) + bot * fy


def _render(shots: _Shots, height: int, width: int) -> np.ndarray:
    """Render camera views to a float32 clip (T, height, width, 3) in grey levels [0, 255]."""
    n = len(shots.photo)
    out = np.empty((n, height, width, 3), dtype=np.float32)
    aspect = width / height
    # keep every (rotated) crop window inside its photo
    hs, cx, cy, ang = shots.hs.copy(), shots.cx.copy(), shots.cy.copy(), shots.angle
    c, s = np.abs(np.cos(ang)), np.abs(np.sin(ang))
    for i in range(n):
        ph, pw = load_photo(shots.photo[i]).shape[:2]
        ext_w = hs[i] * (aspect * c[i] + s[i])  # bounding box of the rotated window
        ext_h = hs[i] * (aspect * s[i] + c[i])
        shrink = min(1.0, pw / ext_w, ph / ext_h)
        hs[i] *= shrink
        ext_w, ext_h = ext_w * shrink, ext_h * shrink
        cx[i] = np.clip(cx[i], ext_w / 2.0, pw - ext_w / 2.0)
        cy[i] = np.clip(cy[i], ext_h / 2.0, ph - ext_h / 2.0)
    # output pixel centres as offsets in units of the crop height
    v = (np.arange(height) + 0.5) / height - 0.5
    u = ((np.arange(width) + 0.5) / width - 0.5) * aspect
    uu, vv = np.meshgrid(u, v)  # (H, W)
    scale = hs / height  # photo px per output px
    level = np.round(4.0 * np.log2(np.maximum(scale, 1.0))).astype(int)
    cos, sin = np.cos(ang), np.sin(ang)
    groups: dict[tuple[str, int], list[int]] = {}
    for i in range(n):
        groups.setdefault((shots.photo[i], int(level[i])), []).append(i)
    for (name, lev), idx in groups.items():
        img = _blurred(name, lev)
        k = np.asarray(idx)
        h_ = hs[k][:, None, None]
        ou, ov = uu[None] * h_, vv[None] * h_
        # photo coordinates in the continuous frame where pixel j covers [j, j + 1)
        x = cx[k][:, None, None] + cos[k][:, None, None] * ou - sin[k][:, None, None] * ov
        y = cy[k][:, None, None] + sin[k][:, None, None] * ou + cos[k][:, None, None] * ov
        out[k] = _bilinear(img, x - 0.5, y - 0.5)
    return out


def _finish(clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Add sensor noise and quantise to uint8."""
    clip = clip + rng.standard_normal(clip.shape, dtype=np.float32) * np.float32(NOISE_SIGMA)
    return np.clip(np.rint(clip), 0, 255).astype(np.uint8)


def _pan(rng: np.random.Generator, n: int, cx: float, cy: float, hs: float,
         speed: float, centred: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A straight pan at ``speed`` reference px per frame in a random direction."""
    theta = rng.uniform(0.0, 2.0 * np.pi)
    step = speed * hs / _REF
    t = np.arange(n) - ((n - 1) / 2.0 if centred else 0.0)
    return cx + np.cos(theta) * step * t, cy + np.sin(theta) * step * t


def _jitter(rng: np.random.Generator, cx: float, cy: float, hs: float, px: float) -> tuple[float, float, float]:
    """Perturb a base view by about ``px`` reference px and a few percent of zoom (per seed)."""
    d = hs / _REF * px
    return cx + rng.uniform(-d, d), cy + rng.uniform(-d, d), hs * rng.uniform(0.95, 1.05)


# --------------------------------------------------------------------------- regimes

def _static(rng, n):
    cx, cy, hs = _jitter(rng, 250.0, 192.0, 330.0, 4.0)
    return _shots("astronaut", cx, cy, hs, n=n), None


def _low_motion(rng, n):
    cx, cy, hs = _jitter(rng, 228.0, 150.0, 200.0, 3.0)
    x, y = _pan(rng, n, cx, cy, hs, speed=rng.uniform(0.3, 0.6))
    zoom = 1.0 + rng.uniform(-0.06, 0.06) * np.arange(n) / max(n - 1, 1)
    x = _bounce(x, 130.0, 451.0 - 130.0)
    y = _bounce(y, 105.0, 300.0 - 105.0)
    return _shots("chelsea", x, y, hs * zoom, n=n), None


def _high_motion(rng, n):
    t = np.arange(n, dtype=np.float64)
    two_pi = 2.0 * np.pi
    fx = rng.uniform(1.0, 1.5) / 72.0  # cycles per frame
    fy = rng.uniform(1.6, 2.4) / 72.0
    fz = rng.uniform(0.7, 1.3) / 72.0
    x = 330.0 + 185.0 * np.sin(two_pi * fx * t + rng.uniform(0, two_pi))
    y = 290.0 + 45.0 * np.sin(two_pi * fy * t + rng.uniform(0, two_pi))
    hs = 155.0 * (1.0 + 0.2 * np.sin(two_pi * fz * t + rng.uniform(0, two_pi)))
    ang = np.deg2rad(4.0) * np.sin(two_pi * fz * 1.7 * t + rng.uniform(0, two_pi))
    return _shots("china", x, y, hs, ang, n=n), None


#: (photo, centre x, centre y, crop height) of the scenes cut between in ``scene_change``.
_SCENE_CHANGE_VIEWS = (("rocket", 445.0, 255.0, 330.0), ("coffee", 300.0, 165.0, 300.0),
                       ("immunohistochemistry", 256.0, 256.0, 360.0), ("coins", 190.0, 150.0, 230.0))


def _segments(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """Split ``n`` frames into ``k`` segments of roughly equal, seed-dependent lengths."""
    k = max(1, min(k, n))
    w = rng.uniform(0.75, 1.25, size=k)
    ends = np.rint(np.cumsum(w) / w.sum() * n).astype(int)
    lengths = np.diff(np.concatenate([[0], ends]))
    # every segment at least one frame
    while lengths.min() < 1:
        lengths[np.argmax(lengths)] -= 1
        lengths[np.argmin(lengths)] += 1
    return lengths


def _drift_segment(rng, m, photo, cx, cy, hs, speed):
    x, y = _pan(rng, m, cx, cy, hs, speed=speed, centred=True)
    zoom = 1.0 + rng.uniform(-0.03, 0.03) * np.arange(m) / max(m - 1, 1)
    return _shots(photo, x, y, hs * zoom, n=m)


def _concat(parts: list[_Shots]) -> _Shots:
    return _Shots(sum((p.photo for p in parts), []),
                  *(np.concatenate([getattr(p, f) for p in parts]) for f in ("cx", "cy", "hs", "angle")))


def _scene_change(rng, n):
    order = rng.permutation(len(_SCENE_CHANGE_VIEWS))
    lengths = _segments(rng, n, len(order))
    parts = []
    for j, m in zip(order, lengths):
        photo, cx, cy, hs = _SCENE_CHANGE_VIEWS[j]
        cx, cy, hs = _jitter(rng, cx, cy, hs, 3.0)
        parts.append(_drift_segment(rng, int(m), photo, cx, cy, hs, rng.uniform(0.2, 0.6)))
    return _concat(parts), None


#: Scenes A, B, C of ``repetitive_return`` (photo, centre x, centre y, crop height).
_RETURN_VIEWS = (("retina", 430.0, 650.0, 520.0), ("camera", 250.0, 200.0, 300.0),
                 ("motorcycle_right", 590.0, 170.0, 250.0))
_RETURN_PATTERN = (0, 1, 0, 2)  # A B A C, repeated


def _repetitive_return(rng, n):
    parts, done, visit = [], 0, 0
    while done < n:
        photo, cx, cy, hs = _RETURN_VIEWS[_RETURN_PATTERN[visit % len(_RETURN_PATTERN)]]
        m = min(int(rng.integers(7, 12)), n - done)
        cx, cy, hs = _jitter(rng, cx, cy, hs, 0.7)
        x, y = _pan(rng, m, cx, cy, hs, speed=rng.uniform(0.1, 0.25), centred=False)
        parts.append(_shots(photo, x, y, hs, n=m))
        done += m
        visit += 1
    return _concat(parts), None


def _cam_shake(rng, n):
    cx, cy, hs = _jitter(rng, 385.0, 285.0, 320.0, 3.0)
    px = hs / _REF
    x = cx + _smooth_walk(rng, n, 0.7, 1.8 * px)
    y = cy + _smooth_walk(rng, n, 0.7, 1.5 * px)
    ang = np.deg2rad(_smooth_walk(rng, n, 0.7, 0.8))
    return _shots("motorcycle_left", x, y, hs, ang, n=n), None


def _high_texture(rng, n):
    photo, hs = _TEXTURES[int(rng.integers(len(_TEXTURES)))]
    ph, pw = load_photo(photo).shape[:2]
    hs *= rng.uniform(0.9, 1.1)
    x, y = _pan(rng, n, pw / 2.0, ph / 2.0, hs, speed=rng.uniform(1.5, 2.5))
    # a gentle curve across the straight pan
    t = np.arange(n)
    bend = 0.15 * hs * np.sin(2.0 * np.pi * t / 90.0 + rng.uniform(0, 2.0 * np.pi))
    x, y = x + bend, y - bend
    m = 0.75 * hs
    return _shots(photo, _bounce(x, m, pw - m), _bounce(y, m, ph - m), hs, n=n), None


def _illum_change(rng, n):
    cx, cy, hs = _jitter(rng, 330.0, 215.0, 300.0, 3.0)
    x, y = _pan(rng, n, cx, cy, hs, speed=rng.uniform(0.03, 0.1))
    shots = _shots("flower", x, y, hs, n=n)
    # lighting: bright (gain 1, gamma 1, neutral) <-> dim (gain ~0.45, gamma > 1, warmer)
    r = np.arange(n) / max(n - 1, 1)
    r = r * r * (3.0 - 2.0 * r)  # smoothstep: monotonic, gentle at both ends
    if rng.random() < 0.5:
        r = 1.0 - r  # brighten instead of darken
    gain = 1.0 + (rng.uniform(0.4, 0.5) - 1.0) * r
    gamma = 1.0 + rng.uniform(0.1, 0.3) * r
    temp = rng.uniform(0.06, 0.12) * r * rng.choice([-1.0, 1.0])  # warm (+) or cool (-) drift
    white = np.stack([1.0 + temp, 1.0 + 0.2 * temp, 1.0 - temp], axis=-1)

    def light(clip: np.ndarray) -> np.ndarray:
        x01 = np.clip(clip / 255.0, 0.0, 1.0)
        g = gamma.astype(np.float32)[:, None, None, None]
        k = (gain[:, None] * white).astype(np.float32)[:, None, None, :]
        return 255.0 * np.clip(k * x01 ** g, 0.0, 1.0)

    return shots, light


_BUILDERS = {
    "static": _static,
    "low_motion": _low_motion,
    "high_motion": _high_motion,
    "scene_change": _scene_change,
    "repetitive_return": _repetitive_return,
    "cam_shake": _cam_shake,
    "high_texture": _high_texture,
    "illum_change": _illum_change,
}


def regime_clip(name: str, seed: int = 0, frames: int | None = None,
                height: int = 64, width: int = 64) -> np.ndarray:
    """Render the content regime ``name`` as a clip of shape (T, height, width, 3), uint8.

    ``frames`` is T (default :data:`DEFAULT_FRAMES`\\ [name], in the paper's range
    [36, 80]; any T >= 1 is accepted). The clip is a deterministic function of
    ``(name, seed, frames, height, width)``; different seeds give different camera
    paths, noise and (for ``high_texture``) texture photos. See the module docstring
    for what each regime shows. Raises :class:`SourceError` for an unknown regime,
    ``frames < 1`` or a non-positive size.
    """
    if name not in _BUILDERS:
        raise SourceError(f"unknown regime {name!r}; choose from {', '.join(REGIMES)}")
    height, width = check_size(height, width)
    if frames is None:
        frames = DEFAULT_FRAMES[name]
    try:
        if isinstance(frames, bool):
            raise TypeError
        frames = operator.index(frames)
    except TypeError:
        raise SourceError(f"frames must be a positive integer, got {frames!r}") from None
    if frames < 1:
        raise SourceError(f"frames must be a positive integer, got {frames}")
    try:
        seed = operator.index(seed)
    except TypeError:
        raise SourceError(f"seed must be an integer, got {seed!r}") from None
    rng = np.random.default_rng((seed + _offset(name)) % 2**64)
    shots, light = _BUILDERS[name](rng, frames)
    clip = _render(shots, height, width)
    if light is not None:
        clip = light(clip)
    return _finish(clip, rng)
