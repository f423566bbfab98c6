"""Channels on Sionna's blocks: AWGN, Rayleigh block fading, flat-fading MIMO and the BSC.

Every symbol channel is an ``nn.Module`` whose ``forward(x, no)`` takes complex
symbols ``x`` of shape ``[batch, s]`` (unit average energy) and the noise
variance ``no`` per complex dimension, and returns the *equalised* symbols
``x_hat`` (same shape) with the effective noise variance ``no_eff`` of each
(broadcastable to ``x_hat``), ready for :meth:`Modulation.demap`. The receiver
knows the channel perfectly (coherent detection). ``E_s / N_0 = 1 / no`` is the
SNR per symbol (per stream and receive antenna for MIMO).

* :class:`AWGNChannel`: :class:`sionna.phy.channel.AWGN`, ``y = x + n``.
* :class:`RayleighChannel`: one gain ``h ~ CN(0, 1)`` per coherence block, drawn
  by :class:`sionna.phy.channel.RayleighBlockFading`; ``y = h x + n``, then
  equalised ``x_hat = y / h`` with ``no_eff = no / |h|^2``. The block is one
  row (one codeword) unless ``coherence_symbols`` is given.
* :class:`MIMOChannel`: :class:`sionna.phy.channel.FlatFadingChannel` with
  ``num_tx_ant x num_rx_ant`` i.i.d. ``CN(0, 1)`` gains, a new matrix every
  channel use; ``num_streams`` symbols are sent per channel use through a fixed
  precoder with orthonormal columns (so the effective channel ``H P`` is again
  i.i.d. ``CN(0, 1)``, ``num_rx_ant x num_streams``), and separated by
  :func:`sionna.phy.mimo.lmmse_equalizer` or :func:`sionna.phy.mimo.zf_equalizer`.
* :class:`BSCChannel`: :class:`sionna.phy.channel.BinarySymmetricChannel`,
  bits in, LLRs ``+-log((1-p)/p)`` out.
"""

from __future__ import annotations

from semcom.phy import _sionna  # noqa: F401  (first: Sionna's import must not reseed torch)

# isort: split

import math

import torch
from sionna.phy.channel import AWGN, BinarySymmetricChannel, FlatFadingChannel, RayleighBlockFading
from sionna.phy.mimo import lmmse_equalizer, zf_equalizer
from torch import nn

__all__ = ["AWGNChannel", "RayleighChannel", "MIMOChannel", "BSCChannel", "CHANNELS", "dft_precoder"]

CHANNELS = ("awgn", "rayleigh", "bsc", "mimo")


def _as_tensor(no, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(no, dtype=like.real.dtype, device=like.device)


class AWGNChannel(nn.Module):
    """Complex AWGN (Sionna's :class:`~sionna.phy.channel.AWGN`); nothing to equalise."""

    symbols_per_use = 1

    def __init__(self):
        super().__init__()
        self.awgn = AWGN()

    def forward(self, x: torch.Tensor, no) -> tuple[torch.Tensor, torch.Tensor]:
        no = _as_tensor(no, x)
        return self.awgn(x, no), no


class RayleighChannel(nn.Module):
    """Rayleigh block fading with perfect-CSI equalisation.

    One gain ``h ~ CN(0, 1)`` per block of ``coherence_symbols`` symbols
    (``None``: the whole row, i.e. one codeword), from Sionna's
    :class:`~sionna.phy.channel.RayleighBlockFading`; ``x_hat = y / h`` and
    ``no_eff = no / |h|^2`` (for one antenna, ZF and LMMSE give the same LLRs).
    """

    symbols_per_use = 1

    def __init__(self, coherence_symbols: int | None = None):
        super().__init__()
        if coherence_symbols is not None and coherence_symbols < 1:
            raise ValueError("coherence_symbols must be >= 1")
        self.coherence_symbols = coherence_symbols
        self.fading = RayleighBlockFading(num_rx=1, num_rx_ant=1, num_tx=1, num_tx_ant=1)
        self.awgn = AWGN()

    def gains(self, batch: int, s: int) -> torch.Tensor:
        """Draw the gains ``h`` of shape ``[batch, s]``, constant over each coherence block."""
        c = s if self.coherence_symbols is None else min(self.coherence_symbols, s)
        blocks = math.ceil(s / c)
        h, _ = self.fading(batch_size=batch * blocks, num_time_steps=1)
        h = h.reshape(batch, blocks)
        return h.repeat_interleave(c, dim=1)[:, :s]

    def forward(self, x: torch.Tensor, no) -> tuple[torch.Tensor, torch.Tensor]:
        no = _as_tensor(no, x)
        h = self.gains(x.shape[0], x.shape[-1]).to(x.dtype)
        y = self.awgn(h * x, no)
        return y / h, no / h.abs().square()


def dft_precoder(num_tx_ant: int, num_streams: int) -> torch.Tensor:
    """The first ``num_streams`` columns of the unitary ``num_tx_ant``-point DFT matrix (orthonormal columns)."""
    n = torch.arange(num_tx_ant, dtype=torch.float64)
    k = torch.arange(num_streams, dtype=torch.float64)
    phase = -2 * math.pi * n[:, None] * k[None, :] / num_tx_ant
    return (torch.polar(torch.ones_like(phase), phase) / math.sqrt(num_tx_ant)).to(torch.complex64)


class MIMOChannel(nn.Module):
    """Flat-fading MIMO, ``num_tx_ant`` transmit and ``num_rx_ant`` receive antennas (8 x 4 by default).

    Each channel use carries ``num_streams`` symbols (default
    ``min(num_tx_ant, num_rx_ant)``: without channel knowledge at the
    transmitter no more streams can be separated by a linear receiver) through
    the fixed precoder :func:`dft_precoder`; with ``num_streams == num_tx_ant``
    it is the identity (plain spatial multiplexing). Each stream symbol keeps
    unit energy, so ``1 / no`` is the SNR per stream at each receive antenna.
    ``equalizer`` is ``"lmmse"`` or ``"zf"`` (ZF needs ``num_streams <= num_rx_ant``).
    The symbol count of a row must be a multiple of ``num_streams``.
    """

    def __init__(self, num_tx_ant: int = 8, num_rx_ant: int = 4, num_streams: int | None = None,
                 equalizer: str = "lmmse"):
        super().__init__()
        num_streams = min(num_tx_ant, num_rx_ant) if num_streams is None else num_streams
        if not 1 <= num_streams <= num_tx_ant:
            raise ValueError(f"num_streams={num_streams} must be in [1, num_tx_ant={num_tx_ant}]")
        if equalizer not in ("lmmse", "zf"):
            raise ValueError(f"equalizer must be 'lmmse' or 'zf', not {equalizer!r}")
        if equalizer == "zf" and num_streams > num_rx_ant:
            raise ValueError(f"ZF cannot separate num_streams={num_streams} > num_rx_ant={num_rx_ant} streams")
        self.num_tx_ant, self.num_rx_ant, self.num_streams = num_tx_ant, num_rx_ant, num_streams
        self.equalizer = equalizer
        self.channel = FlatFadingChannel(num_tx_ant, num_rx_ant, return_channel=True)
        self.register_buffer("precoder", dft_precoder(num_tx_ant, num_streams), persistent=False)

    @property
    def symbols_per_use(self) -> int:
        return self.num_streams

    @property
    def diversity(self) -> int:
        """Diversity order of ZF over i.i.d. Rayleigh: ``num_rx_ant - num_streams + 1``."""
        return self.num_rx_ant - self.num_streams + 1

    def forward(self, x: torch.Tensor, no) -> tuple[torch.Tensor, torch.Tensor]:
        batch, s = x.shape
        if s % self.num_streams:
            raise ValueError(f"{s} symbols per row is not a multiple of num_streams={self.num_streams}")
        no = _as_tensor(no, x)
        xs = x.reshape(-1, self.num_streams)  # one row per channel use
        p = self.precoder.to(x.dtype)
        y, h = self.channel(xs @ p.T, no)
        h_eff = h @ p
        s_cov = no * torch.eye(self.num_rx_ant, dtype=x.dtype, device=x.device)
        eq = lmmse_equalizer if self.equalizer == "lmmse" else zf_equalizer
        x_hat, no_eff = eq(y, h_eff, s_cov)
        return x_hat.reshape(batch, s), no_eff.reshape(batch, s)


class BSCChannel(nn.Module):
    """Binary symmetric channel with crossover probability ``p`` (Sionna's
    :class:`~sionna.phy.channel.BinarySymmetricChannel`); takes bits, returns LLRs
    ``+-log((1-p)/p)`` (``log P(1)/P(0)``), clipped at ``llr_max``. Differentiable
    in the bits through Sionna's straight-through XOR."""

    def __init__(self, llr_max: float = 100.0):
        super().__init__()
        self.bsc = BinarySymmetricChannel(return_llrs=True, llr_max=llr_max)

    def forward(self, bits: torch.Tensor, p: float) -> torch.Tensor:
        return self.bsc(bits, float(p))
