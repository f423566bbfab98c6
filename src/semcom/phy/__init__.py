"""Bits over the air, on Sionna (PyPI ``sionna-no-rt``, PyTorch): modulation, channels, LDPC, MIMO, BER.

Thin wrappers that keep Sionna's own blocks visible (``.mapper``,
``.demapper``, ``.encoder``, ``.decoder``, ``.awgn``, ``.channel`` ... are
Sionna objects); semcom adds the byte link (:class:`DigitalLink`: framing,
CRC, erasures, channel-use accounting), the closed forms it is tested against
(:mod:`semcom.phy.theory`), per-link seeding, a differentiable path and
``semcom ber``. LLRs follow Sionna: ``log P(b=1)/P(b=0)``. See ``docs/phy.md``.
"""

from semcom.phy.ber import BerPoint, plot_ber, simulate_ber
from semcom.phy.channels import AWGNChannel, BSCChannel, MIMOChannel, RayleighChannel
from semcom.phy.coding import CRC, LDPCCode, Uncoded, make_code, parse_code
from semcom.phy.config import PhyConfig
from semcom.phy.differentiable import DifferentiableChannel, straight_through_bits
from semcom.phy.link import DigitalLink, LinkResult, PhyChain
from semcom.phy.modulation import MODULATIONS, Modulation, bits_per_symbol

__all__ = [
    "AWGNChannel", "BSCChannel", "BerPoint", "CRC", "DifferentiableChannel", "DigitalLink", "LDPCCode",
    "LinkResult", "MIMOChannel", "MODULATIONS", "Modulation", "PhyChain", "PhyConfig", "RayleighChannel",
    "Uncoded", "bits_per_symbol", "make_code", "parse_code", "plot_ber", "simulate_ber", "straight_through_bits",
]
