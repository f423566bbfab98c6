"""Pixel refinement: a transform-coded residual on top of whatever the codec link shows.

The learned model's synthesis ``g_s`` has a ceiling: on fine texture no latent it can decode comes within a few
dB of the frame, whatever the rate (issue 9: 28 dB on ``high_texture`` at the top quality). Refinement codes what
is left, the residual ``e = x - x^`` of the frame the link would show, the way a hybrid video codec codes its
prediction error, and adds it back; a refined frame becomes the anchor of the next motion frame, so the gain
carries forward.

Per 8x8 block and colour channel:

* colour: ``e`` in the orthonormal colour basis ``C`` (:data:`COLOUR`: the mean and two differences, a KLT-like
  decorrelation that keeps the squared error, so one step size is the right one for RGB PSNR);
* transform: the orthonormal 2-D DCT-II of the block (:func:`scipy.fft.dctn`, ``norm="ortho"``), so the squared
  error in coefficients is the squared error in pixels;
* quantisation, rate–distortion optimised: each coefficient's ``|q|`` is its rounded ``|c| / Delta`` or one less,
  whichever costs less in ``mu (c - q Delta)^2 + bits(q)``; reconstruction ``q Delta``. The step follows from
  the link's Lagrangian ``bits + mu SSE`` (``mu = lambda_q 255^2 / 3``) by the high-rate rule for entropy-coded
  uniform quantisation (rate ``h - log2 Delta``, distortion ``Delta^2 / 12``): ``Delta = sqrt(6 / (mu ln 2))``
  times :data:`STEP_SCALE`;
* decision: a block is refined where ``bits + mu SSE_refined < mu SSE_shown`` (its flag's bits included), and
  the frame is refined at all where the blocks' gain pays for the flags of every block;
* entropy coding: one flag per frame, then (if set) one flag per block and channel, both under adaptive counts
  that start in favour of no refinement (:data:`PRIOR_FLAGS`), then the coefficients of the refined
  blocks under a quantised Laplace (constriction's ``QuantizedLaplace``) of mean 0 and a scale per band
  (channel and frequency ``(u, v)``) estimated from the symbols already coded, with forgetting
  (:data:`FORGET`). Scales and counts are functions of decoded integers only, never of pixels, so both ends
  compute them equal bit for bit.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy.fft import dctn, idctn

from semcom.errors import ConfigError

__all__ = ["COLOUR", "FORGET", "LIMIT", "STEP_SCALE", "Refinement", "RefinementPlan", "step_size"]

#: The orthonormal colour basis, rows: ``(R + G + B) / sqrt 3``, ``(R - B) / sqrt 2``, ``(R - 2G + B) / sqrt 6``.
COLOUR = np.array([[1.0, 1.0, 1.0], [1.0, 0.0, -1.0], [1.0, -2.0, 1.0]]) / np.sqrt([[3.0], [2.0], [6.0]])
#: The step relative to the high-rate optimum: 0.8 and 1.2 both did worse (BD-rate against x264 on 24-frame
#: clips of high_motion, high_texture and heldout_fast_pan: +6.3 / +5.5 % against +2.5 % on high_motion).
STEP_SCALE = 1.0
#: The largest ``|q|``; a coefficient beyond it is clipped (a residual in [-1, 1] has ``|c| <= 8 sqrt 3``).
LIMIT = 4095
#: Forgetting of the band statistics per coded frame.
FORGET = 0.875
#: Prior of each band's statistics: ``PRIOR_WEIGHT`` blocks of mean ``|q|`` ``PRIOR_SCALE``; the least scale.
PRIOR_SCALE, PRIOR_WEIGHT, MIN_SCALE = 0.5, 2.0, 0.1
#: Initial counts of the frame flag and of each channel's block flags: (not refined, refined).
PRIOR_FLAGS = (4.0, 1.0)
_BLOCK = 8


def step_size(mu: float) -> float:
    """``Delta = STEP_SCALE sqrt(6 / (mu ln 2))`` for the Lagrangian weight ``mu`` (bits per unit squared error of
    values in [0, 1])."""
    return STEP_SCALE * math.sqrt(6.0 / (mu * math.log(2.0)))


def to_blocks(e: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` -> ``(3, H/8, W/8, 8, 8)`` in the colour basis :data:`COLOUR`."""
    h, w, _ = e.shape
    t = (e @ COLOUR.T).transpose(2, 0, 1)
    return t.reshape(3, h // _BLOCK, _BLOCK, w // _BLOCK, _BLOCK).transpose(0, 1, 3, 2, 4)


def from_blocks(b: np.ndarray) -> np.ndarray:
    """The inverse of :func:`to_blocks`."""
    _, h, w, _, _ = b.shape
    t = b.transpose(0, 1, 3, 2, 4).reshape(3, h * _BLOCK, w * _BLOCK).transpose(1, 2, 0)
    return t @ COLOUR


def laplace_information(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``-log2 P(q)`` under a Laplace of mean 0 and ``scale`` quantised to the integers (bits, elementwise)."""
    a = np.abs(q).astype(np.float64)
    p_zero = -np.expm1(-0.5 / scale)
    p_other = 0.5 * (np.exp(-(a - 0.5) / scale) - np.exp(-(a + 0.5) / scale))
    return -np.log2(np.maximum(np.where(a == 0, p_zero, p_other), 1e-300))


@functools.cache
def _laplace_family():
    """constriction's quantised Laplace on ``-LIMIT .. LIMIT`` (one per process: it holds no state, and a
    :class:`Refinement` that refers to it stays copyable)."""
    import constriction

    return constriction.stream.model.QuantizedLaplace(-LIMIT, LIMIT)


@dataclass(frozen=True)
class RefinementPlan:
    """One frame's refinement: the flags ``(3, H/8, W/8)`` (True: refined; none set: the frame flag is 0), the
    coefficients' symbols ``(3, H/8, W/8, 8, 8)`` (zero where not refined), and the information of all (bits)."""

    flags: np.ndarray
    q: np.ndarray
    bits: float


class Refinement:
    """What both ends keep: the step, the flag counts (per channel) and the band statistics."""

    def __init__(self, mu: float, height: int, width: int) -> None:
        self.mu, self.step = float(mu), step_size(mu)
        self.blocks = (3, height // _BLOCK, width // _BLOCK)
        self.frame_counts = np.array(PRIOR_FLAGS)
        self.flag_counts = np.tile(PRIOR_FLAGS, (3, 1))
        self.band_sum = np.full((3, _BLOCK, _BLOCK), PRIOR_SCALE * PRIOR_WEIGHT)
        self.band_weight = np.full((3, _BLOCK, _BLOCK), PRIOR_WEIGHT)

    # -- the model both ends evaluate ------------------------------------------------------------------------------

    def scales(self) -> np.ndarray:
        """Each band's Laplace scale, in steps, ``(3, 8, 8)``."""
        return np.maximum(self.band_sum / self.band_weight, MIN_SCALE)

    def flag_information(self, flags: np.ndarray) -> np.ndarray:
        """``-log2 p`` of each flag ``(3, h, w)`` under the channel's counts."""
        p = self.flag_counts / self.flag_counts.sum(1, keepdims=True)
        return -np.log2(np.where(flags, p[:, 1, None, None], p[:, 0, None, None]))

    def update(self, plan_flags: np.ndarray, q: np.ndarray) -> None:
        """After a frame: count its flags and, with forgetting, the magnitudes of its refined blocks."""
        on = bool(plan_flags.any())
        self.frame_counts[int(on)] += 1
        if not on:
            return
        self.flag_counts[:, 1] += plan_flags.sum((1, 2))
        self.flag_counts[:, 0] += (~plan_flags).sum((1, 2))
        n = plan_flags.sum((1, 2)).astype(np.float64)[:, None, None]
        self.band_sum = FORGET * self.band_sum + np.abs(q).sum((1, 2))
        self.band_weight = FORGET * self.band_weight + n

    def residual(self, q: np.ndarray) -> np.ndarray:
        """The pixels ``(H, W, 3)`` the symbols ``q`` add (values in [0, 1] units)."""
        return from_blocks(idctn(q * self.step, axes=(-2, -1), norm="ortho"))

    def apply(self, shown: np.ndarray, q: np.ndarray) -> np.ndarray:
        """``shown`` (uint8) with the refinement ``q`` added, rounded and clipped (uint8); both ends call this."""
        if not q.any():
            return shown
        out = shown.astype(np.float64) / 255.0 + self.residual(q)
        return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)

    # -- transmitter -------------------------------------------------------------------------------------------

    def _analyse(self, frame: np.ndarray, shown: np.ndarray):
        """Per block and channel: the symbols ``q`` of the residual, their bits, the squared error before and after,
        and the Lagrangian gain of refining (flag bits included)."""
        c = dctn(to_blocks(frame - shown.astype(np.float64) / 255.0), axes=(-2, -1), norm="ortho")
        scale = self.scales()[:, None, None]
        q, bits = self._quantise(c, scale)
        bits = bits.sum((-2, -1))
        d_shown = (c**2).sum((-2, -1))
        d_refined = ((c - q * self.step) ** 2).sum((-2, -1))
        on = np.ones(self.blocks, dtype=bool)
        gain = self.mu * (d_shown - d_refined) - bits - self.flag_information(on) + self.flag_information(~on)
        return q, bits, d_shown, d_refined, np.where(q.any((-2, -1)), gain, 0.0)

    def _quantise(self, c: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rate-distortion optimised quantisation: each coefficient takes, of its rounded magnitude and the one
        below, the one with the lesser ``mu (c - q Delta)^2 + bits(q)`` under the band's Laplace; returns the
        symbols and their bits."""
        a = np.abs(c) / self.step
        hi = np.clip(np.floor(a + 0.5), 0, LIMIT)
        lo = np.maximum(hi - 1, 0)
        bits_hi, bits_lo = laplace_information(hi, scale), laplace_information(lo, scale)
        lower = self.mu * self.step**2 * (a - lo) ** 2 + bits_lo < self.mu * self.step**2 * (a - hi) ** 2 + bits_hi
        return (np.sign(c) * np.where(lower, lo, hi)).astype(np.int64), np.where(lower, bits_lo, bits_hi)

    def block_costs(self, frame: np.ndarray, shown: np.ndarray) -> np.ndarray:
        """The Lagrangian cost ``mu SSE`` of each 8x8 block of ``shown`` against ``frame`` once refined where that
        pays, bits of the refinement included, ``(H/8, W/8)``: what the transmitter's decisions before refinement
        weigh a candidate frame by."""
        _, _, d_shown, _, gain = self._analyse(frame, shown)
        return (self.mu * d_shown - np.maximum(gain, 0.0)).sum(0)

    def plan(self, frame: np.ndarray, shown: np.ndarray) -> RefinementPlan:
        """Which blocks of ``shown`` (uint8 (H, W, 3)) to refine towards ``frame`` (values in [0, 1], (H, W, 3))
        and their symbols."""
        q, bits, d_shown, d_refined, gain = self._analyse(frame, shown)
        flags = gain > 0
        frame_bits = -np.log2(self.frame_counts / self.frame_counts.sum())  # the frame flag: off, on
        on = float(self.flag_information(flags).sum() + (bits * flags).sum()) + frame_bits[1]
        if not flags.any() or on - frame_bits[0] >= self.mu * float(((d_shown - d_refined) * flags).sum()):
            return RefinementPlan(np.zeros(self.blocks, dtype=bool), np.zeros_like(q), float(frame_bits[0]))
        return RefinementPlan(flags, q * flags[..., None, None], on)

    def encode(self, plan: RefinementPlan, encoder) -> None:
        """Write the flags, then the refined blocks' symbols; then update the statistics."""
        from semcom.link.coding import categorical

        sel = plan.flags
        encoder.encode(np.array([int(sel.any())], np.int32), categorical(self.frame_counts))
        if sel.any():
            for ch in range(3):
                encoder.encode(sel[ch].ravel().astype(np.int32), categorical(self.flag_counts[ch]))
            scales = self._symbol_scales(sel)
            encoder.encode(plan.q[sel].ravel().astype(np.int32), self.laplace(), np.zeros_like(scales), scales)
        self.update(plan.flags, plan.q)

    # -- receiver ----------------------------------------------------------------------------------------------

    def decode(self, decoder) -> np.ndarray:
        """Read one frame's flags and symbols (no pixel read); update the statistics; returns ``q``."""
        from semcom.link.coding import categorical, decode_symbols

        n = self.blocks[1] * self.blocks[2]
        flags = np.zeros(self.blocks, dtype=bool)
        q = np.zeros(self.blocks + (_BLOCK, _BLOCK), dtype=np.int64)
        if decode_symbols(decoder, categorical(self.frame_counts))[0]:
            flags = np.stack([decode_symbols(decoder, categorical(self.flag_counts[ch]), n).reshape(self.blocks[1:])
                              for ch in range(3)]).astype(bool)
        if flags.any():
            scales = self._symbol_scales(flags)
            q[flags] = decode_symbols(decoder, self.laplace(), np.zeros_like(scales), scales).reshape(-1, _BLOCK,
                                                                                                      _BLOCK)
        self.update(flags, q)
        return q

    def _symbol_scales(self, flags: np.ndarray) -> np.ndarray:
        """The Laplace scale of every symbol of the blocks ``flags`` marks, in coding order (float64)."""
        return np.broadcast_to(self.scales()[:, None, None], self.blocks + (_BLOCK, _BLOCK))[flags].ravel()

    @staticmethod
    def laplace():
        return _laplace_family()

    # -- state (the live link's state file and rollback) ------------------------------------------------------

    def state(self) -> dict[str, np.ndarray]:
        return {"refine_frame_counts": self.frame_counts.copy(), "refine_flag_counts": self.flag_counts.copy(),
                "refine_band_sum": self.band_sum.copy(),
                "refine_band_weight": self.band_weight.copy()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore :meth:`state`; a missing, misshapen or non-positive array is a one-line ConfigError."""
        arrays = {}
        for name, ref in self.state().items():
            a = np.asarray(state.get(name, np.zeros(0)), dtype=np.float64)
            if a.shape != ref.shape or not (np.isfinite(a).all() and (a > 0).all()):
                raise ConfigError(f"invalid refinement state: {name} missing, not of shape {ref.shape}, "
                                  "or not finite and positive")
            arrays[name] = a.copy()
        self.frame_counts, self.flag_counts = arrays["refine_frame_counts"], arrays["refine_flag_counts"]
        self.band_sum = arrays["refine_band_sum"]
        self.band_weight = arrays["refine_band_weight"]
