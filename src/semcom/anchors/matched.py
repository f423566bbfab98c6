"""Codecs at matched PSNR: search a codec's knob so that the clip's PSNR lands within +-tol of a target.

The same rule as the semantic link's tau calibration
(:func:`semcom.experiments.calibration.calibrate_tau`, the Hopfield paper's Section IV
"PSNR within a +-0.2 dB range"): find the *cheapest* setting whose clip PSNR reaches
``target - tol``, and call it matched iff its PSNR is also ``<= target + tol``. The
search brackets the crossing between the codec's worst and best settings and narrows
the bracket by safeguarded interpolation (regula falsi, each step kept at least 10 %
inside the bracket, and a bisection step whenever the same end moved twice), down
to one integer step (JPEG quality, SVT-AV1 CRF) or to ``resolution`` for continuous
knobs (WebP quality, x264/x265 CRF), or until the point found sits in the lower
quarter of the window.

PSNR is the clip PSNR of :func:`semcom.metrics.psnr` (from the mean MSE over every
pixel of every frame), SSIM the mean per-frame :func:`semcom.metrics.ssim`. A target
the codec cannot reach is reported unmatched with the reason, never silently:
below the codec's floor ("PSNR 31.2 dB at the lowest quality ..."), above its
ceiling, or jumped over by one integer step. For the first and last of these,
``at_least_target`` gives the cheapest point tried whose PSNR is at least the target,
the honest fallback a user would pick.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from semcom.anchors.codecs import Codec, EncodedClip, check_frames, get_codec
from semcom.errors import ConfigError
from semcom.metrics import psnr, ssim


@dataclass(frozen=True)
class Point:
    """One setting of a codec's knob on one clip."""

    param: float
    psnr_db: float
    bits_per_frame: float


@dataclass(frozen=True)
class MatchResult:
    """A codec at (or as near as it can get to) a target PSNR on one clip.

    ``param`` is the knob value (``param_name``: quality or crf), ``psnr_db``/``ssim`` the
    fidelity it gives, ``bits_per_frame`` the real bits divided by the clip length.
    ``matched`` is False when no setting lands within ``target_db +- tol_db``; ``reason``
    says why. ``at_least_target`` is the cheapest point tried with PSNR >= target, given
    for unmatched results where one exists. ``details`` is the codec's settings and side
    measurements (header bytes, container bytes) at ``param``.
    """

    codec: str
    param: float
    psnr_db: float
    ssim: float
    bits_per_frame: float
    matched: bool
    reason: str | None
    target_db: float = math.nan
    tol_db: float = 0.2
    param_name: str = "quality"
    bits_total: int = 0
    frames: int = 0
    evaluations: int = 0
    at_least_target: Point | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _knob_text(codec: Codec, value: float) -> str:
    return f"{codec.param_name} {value:g}"


def match_psnr(codec: Codec | str, frames: np.ndarray, target_db: float, tol_db: float = 0.2,
               resolution: float = 0.05, max_evals: int = 24,
               cache: dict[float, EncodedClip] | None = None) -> MatchResult:
    """Cheapest setting of ``codec`` whose clip PSNR lands in ``[target - tol, target + tol]``.

    ``resolution`` is the finest step of a continuous knob; ``max_evals`` bounds the encodes
    (each encode decodes too). ``cache`` maps knob value to :class:`EncodedClip` for this clip
    and codec: pass the same dict to match several targets on one clip with fewer encodes.
    """
    codec = get_codec(codec)
    frames = check_frames(frames)
    if not (isinstance(target_db, (int, float)) and math.isfinite(target_db)):
        raise ConfigError(f"target_db must be a finite number, got {target_db!r}")
    if not (isinstance(tol_db, (int, float)) and tol_db > 0):
        raise ConfigError(f"tol_db must be a positive number, got {tol_db!r}")
    if not resolution > 0:
        raise ConfigError(f"resolution must be positive, got {resolution!r}")
    cache = {} if cache is None else cache
    scores: dict[float, tuple[float, float]] = {}  # param -> (psnr, bits per frame)

    def evaluate(param: float) -> float:
        param = int(round(param)) if codec.integer else float(param)
        if param not in cache:
            cache[param] = codec.encode(frames, param)
        if param not in scores:
            clip = cache[param]
            scores[param] = (psnr(frames, clip.decoded), clip.bits_per_frame)
        return scores[param][0]

    # s: the knob as a fidelity coordinate (increasing s = higher fidelity)
    sign = 1.0 if codec.higher_is_better else -1.0
    low_edge = target_db - tol_db
    s_lo, s_hi = sign * codec.worst, sign * codec.best
    p_lo, p_hi = evaluate(sign * s_lo), evaluate(sign * s_hi)

    def result(param: float, matched: bool, reason: str | None, fallback: bool = False) -> MatchResult:
        param = int(round(param)) if codec.integer else float(param)
        clip = cache[param]
        at_least = None
        if fallback:
            ok = [(b, p, q) for q, (p, b) in scores.items() if p >= target_db]
            if ok:
                b, p, q = min(ok)
                at_least = Point(q, p, b)
        return MatchResult(codec=codec.name, param=param, psnr_db=scores[param][0], ssim=ssim(frames, clip.decoded),
                           bits_per_frame=clip.bits_per_frame, matched=matched, reason=reason,
                           target_db=float(target_db), tol_db=float(tol_db), param_name=codec.param_name,
                           bits_total=clip.bits_total, frames=clip.frames, evaluations=len(scores),
                           at_least_target=at_least, details=dict(clip.param))

    worst, best = sign * s_lo, sign * s_hi
    if p_lo >= low_edge:
        if p_lo <= target_db + tol_db:
            return result(worst, True, None)
        return result(worst, False, f"PSNR {p_lo:.2f} dB at the lowest setting ({_knob_text(codec, worst)}): "
                                    f"{codec.name} cannot go down to {target_db:g} dB on this clip", fallback=True)
    if p_hi < low_edge:
        return result(best, False, f"PSNR {p_hi:.2f} dB at the highest setting ({_knob_text(codec, best)}): "
                                   f"{codec.name} cannot reach {target_db:g} dB on this clip")

    # invariant: psnr(a) < target - tol <= psnr(b), a < b in the fidelity coordinate
    a, b, pa, pb = s_lo, s_hi, p_lo, p_hi
    step = 1.0 if codec.integer else resolution
    moved = ""  # which end moved last: after the same end moves twice, bisect (regula falsi stalls otherwise)
    repeat = False
    while b - a > step + 1e-12 and pb > low_edge + tol_db / 2 and len(scores) < max_evals:
        w = b - a
        if repeat or not (math.isfinite(pb) and pb > pa):
            s = a + w / 2
        else:
            s = min(max(a + w * (low_edge - pa) / (pb - pa), a + 0.1 * w), b - 0.1 * w)
        if codec.integer:
            s = float(round(s))
            if s <= a:
                s = a + 1
            if s >= b:
                s = b - 1
        p = evaluate(sign * s)
        side = "b" if p >= low_edge else "a"
        if side == "b":
            b, pb = s, p
        else:
            a, pa = s, p
        repeat, moved = side == moved, side
    if pb <= target_db + tol_db:
        return result(sign * b, True, None)
    if b - a > step + 1e-12:
        return result(sign * b, False, f"search stopped after {len(scores)} encodes (max_evals) with PSNR "
                                       f"between {pa:.2f} and {pb:.2f} dB", fallback=True)
    return result(sign * b, False,
                  f"PSNR jumps from {pa:.2f} dB ({_knob_text(codec, sign * a)}) to {pb:.2f} dB "
                  f"({_knob_text(codec, sign * b)}): no setting lands within {target_db:g} +- {tol_db:g} dB",
                  fallback=True)
