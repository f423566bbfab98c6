"""Bits over the air, on Sionna (PyPI ``sionna-no-rt``, PyTorch): modulation, channels, LDPC, MIMO, BER.

Thin wrappers that keep Sionna's own blocks visible (``.mapper``,
``.demapper``, ``.encoder``, ``.decoder``, ``.awgn``, ``.channel`` ... are
Sionna objects); semcom adds the byte link (:class:`DigitalLink`: framing,
CRC, erasures, channel-use accounting), the closed forms it is tested against
(:mod:`semcom.phy.theory`), per-link seeding, a differentiable path and
``semcom ber``. LLRs follow Sionna: ``log P(b=1)/P(b=0)``. See ``docs/phy.md``.
"""

from semcom._lazy import lazy_exports

#: Where each exported name lives: loaded on first use, so that one block does not import them all (matplotlib).
_EXPORTS = {
    "BerPoint": "semcom.phy.ber",
    "plot_ber": "semcom.phy.ber",
    "simulate_ber": "semcom.phy.ber",
    "AWGNChannel": "semcom.phy.channels",
    "BSCChannel": "semcom.phy.channels",
    "MIMOChannel": "semcom.phy.channels",
    "RayleighChannel": "semcom.phy.channels",
    "CRC": "semcom.phy.coding",
    "LDPCCode": "semcom.phy.coding",
    "Uncoded": "semcom.phy.coding",
    "make_code": "semcom.phy.coding",
    "parse_code": "semcom.phy.coding",
    "PhyConfig": "semcom.phy.config",
    "DifferentiableChannel": "semcom.phy.differentiable",
    "straight_through_bits": "semcom.phy.differentiable",
    "DigitalLink": "semcom.phy.link",
    "LinkResult": "semcom.phy.link",
    "PhyChain": "semcom.phy.link",
    "MODULATIONS": "semcom.phy.modulation",
    "Modulation": "semcom.phy.modulation",
    "bits_per_symbol": "semcom.phy.modulation",
}

__all__ = [
    "AWGNChannel", "BSCChannel", "BerPoint", "CRC", "DifferentiableChannel", "DigitalLink", "LDPCCode",
    "LinkResult", "MIMOChannel", "MODULATIONS", "Modulation", "PhyChain", "PhyConfig", "RayleighChannel",
    "Uncoded", "bits_per_symbol", "make_code", "parse_code", "plot_ber", "simulate_ber", "straight_through_bits",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
