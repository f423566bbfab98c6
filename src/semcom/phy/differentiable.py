"""A differentiable digital channel for training: hard bits forward, straight-through gradients back.

Training the codebook papers' encoders "through the channel" needs gradients
across three places where a real link is not differentiable:

1. quantising to bits: :func:`straight_through_bits` thresholds at 0.5 in the
   forward pass and passes the gradient unchanged (Bengio et al., 2013);
2. mapping: Sionna's :class:`~sionna.phy.mapping.Mapper` casts bits to
   integer indices; :meth:`Modulation.soft_map` computes the same symbol as
   ``sum_c P(c | b) point_c``, exactly equal on hard bits and differentiable;
3. the BSC: Sionna's :class:`~sionna.phy.channel.BinarySymmetricChannel`
   already flips with a straight-through XOR.

The channel (AWGN, Rayleigh, MIMO with LMMSE/ZF) and Sionna's
:class:`~sionna.phy.mapping.Demapper` are differentiable as they are. The
LDPC code is left out: its hard decisions (and the CRC) have no useful
gradient; :class:`DifferentiableChannel` is the uncoded path
``bits -> map -> channel -> equalise -> demap -> P(bit = 1)``.
"""

from __future__ import annotations

import torch
from torch import nn

from semcom.config import validated
from semcom.phy._rng import make_generator, use_generator
from semcom.phy.channels import BSCChannel
from semcom.phy.config import PhyConfig, esn0_to_ebn0_db
from semcom.phy.link import make_channel
from semcom.phy.modulation import Modulation
from semcom.phy.theory import ber_qam_awgn

__all__ = ["straight_through_bits", "DifferentiableChannel"]


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, p):
        return (p >= 0.5).to(p.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad


def straight_through_bits(p: torch.Tensor) -> torch.Tensor:
    """Hard bits ``1[p >= 0.5]`` forward, identity gradient backward (straight-through estimator)."""
    return _StraightThrough.apply(p)


class DifferentiableChannel(nn.Module):
    """Uncoded ``bits -> symbols -> channel -> LLRs`` with gradients to the bits.

    ``forward(bits)`` takes bits ``[B, n]`` (floats in {0, 1}, e.g. from
    :func:`straight_through_bits`, ``n`` a multiple of the bits per symbol
    times the MIMO streams) and returns ``P(bit = 1 | y)`` (``[B, n]``),
    i.e. ``sigmoid(llr)`` with Sionna's ``llr = log P(1)/P(0)``; with
    ``return_llrs=True`` the LLRs themselves. ``snr_db`` is ``E_s/N_0``; any
    other :class:`PhyConfig` field (``equalizer``, ``coherence_symbols``...)
    is a keyword. ``set_snr_db`` changes the SNR between steps.
    """

    def __init__(self, modulation: str = "qpsk", channel: str = "awgn", snr_db: float = 10.0, seed: int = 0,
                 return_llrs: bool = False, **options):
        super().__init__()
        self.config: PhyConfig = validated(PhyConfig, modulation=modulation, channel=channel, code="none",
                                           snr_db=snr_db, seed=seed, **options)
        self.modulation = Modulation(modulation, self.config.demapping)
        self.channel = make_channel(self.config)
        self.return_llrs = return_llrs
        self.snr_db = float(snr_db)
        self.generator = make_generator(seed)
        use_generator(self, self.generator)

    def set_snr_db(self, snr_db: float) -> None:
        self.snr_db = float(snr_db)

    def forward(self, bits: torch.Tensor) -> torch.Tensor:
        shape = bits.shape
        b = bits.reshape(-1, shape[-1])
        if isinstance(self.channel, BSCChannel):
            p = self.config.bsc_p
            if p is None:
                ebn0_ch = esn0_to_ebn0_db(self.snr_db, self.modulation.bits_per_symbol)
                p = float(ber_qam_awgn(self.modulation.spec.order, ebn0_ch))
            llr = self.channel(b, p)
        else:
            no = 10.0 ** (-self.snr_db / 10.0)
            x = self.modulation.soft_map(b)
            x_hat, no_eff = self.channel(x, no)
            llr = self.modulation.demap(x_hat, no_eff)
        llr = llr.reshape(shape)
        return llr if self.return_llrs else torch.sigmoid(llr)
