"""Mapping and soft demapping: BPSK, QPSK, 16-QAM and 64-QAM on Sionna's blocks.

:class:`Modulation` holds one :class:`sionna.phy.mapping.Constellation` and the
:class:`~sionna.phy.mapping.Mapper` and :class:`~sionna.phy.mapping.Demapper`
built on it (``.constellation``, ``.mapper``, ``.demapper`` are Sionna's own
objects). Constellations have unit average energy (``E_s = 1``) and Gray
labels: Sionna's ``qam`` is the 3GPP TS 38.211 labelling, a Gray-coded PAM on
each of I and Q; BPSK is Sionna's 1-bit ``pam`` (points ``+1`` for bit 0,
``-1`` for bit 1, on the real axis).

LLR convention (Sionna's, kept everywhere in :mod:`semcom.phy`)::

    llr = log P(b = 1 | y) / P(b = 0 | y)

so ``llr > 0`` decides 1 and ``sigmoid(llr)`` is ``P(b = 1)``; many textbooks
use the opposite sign.
"""

from __future__ import annotations

from semcom.phy import _sionna  # noqa: F401  (first: Sionna's import must not reseed torch)

# isort: split

from dataclasses import dataclass

import torch
from sionna.phy.mapping import Constellation, Demapper, Mapper
from torch import nn

__all__ = ["MODULATIONS", "ModulationSpec", "Modulation", "bits_per_symbol"]


@dataclass(frozen=True)
class ModulationSpec:
    """A modulation's name, Sionna constellation type and bits per symbol."""

    name: str
    constellation_type: str
    bits_per_symbol: int

    @property
    def order(self) -> int:
        """Number of constellation points ``M = 2 ** bits_per_symbol``."""
        return 2 ** self.bits_per_symbol


MODULATIONS: dict[str, ModulationSpec] = {
    "bpsk": ModulationSpec("bpsk", "pam", 1),
    "qpsk": ModulationSpec("qpsk", "qam", 2),
    "qam16": ModulationSpec("qam16", "qam", 4),
    "qam64": ModulationSpec("qam64", "qam", 6),
}


def bits_per_symbol(name: str) -> int:
    """Bits per complex symbol of the modulation ``name``."""
    return MODULATIONS[name].bits_per_symbol


class Modulation(nn.Module):
    """Sionna's mapper and soft demapper for one constellation.

    ``demapping`` is Sionna's demapping method: ``"app"`` (exact a-posteriori
    LLRs) or ``"maxlog"``.
    """

    def __init__(self, name: str = "qpsk", demapping: str = "app"):
        super().__init__()
        if name not in MODULATIONS:
            raise ValueError(f"unknown modulation {name!r}; choose from {sorted(MODULATIONS)}")
        self.spec = MODULATIONS[name]
        self.constellation = Constellation(self.spec.constellation_type, self.spec.bits_per_symbol)
        self.mapper = Mapper(constellation=self.constellation)
        self.demapper = Demapper(demapping, constellation=self.constellation)
        m = self.spec.bits_per_symbol
        # labels[c, i]: bit i (MSB first, as Sionna's Mapper reads a group of m bits) of point c
        idx = torch.arange(2**m)
        self.register_buffer("labels", ((idx[:, None] >> torch.arange(m - 1, -1, -1)) & 1).float(),
                             persistent=False)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def bits_per_symbol(self) -> int:
        return self.spec.bits_per_symbol

    @property
    def points(self) -> torch.Tensor:
        """The constellation points, shape ``[2**m]`` complex, unit average energy."""
        return self.constellation()

    def map(self, bits: torch.Tensor) -> torch.Tensor:
        """Bits ``[..., n]`` (0/1, ``n`` a multiple of the bits per symbol) to symbols ``[..., n / m]``."""
        return self.mapper(bits)

    def demap(self, y: torch.Tensor, no) -> torch.Tensor:
        """Received (equalised) symbols ``[..., s]`` and noise variance ``no`` (scalar or broadcastable
        to ``y``) to LLRs ``[..., s * m]`` in Sionna's convention ``log P(1)/P(0)``."""
        return self.demapper(y, no)

    def soft_map(self, bits: torch.Tensor) -> torch.Tensor:
        """Differentiable mapping: ``sum_c P(c | bits) * point_c`` with ``P(c | bits)`` the product of the
        per-bit probabilities ``bits`` (in [0, 1]). Equals :meth:`map` exactly on hard bits, and passes
        gradients to ``bits`` (Sionna's Mapper casts bits to integers and cuts the graph)."""
        m = self.bits_per_symbol
        if bits.shape[-1] % m:
            raise ValueError(f"last dimension {bits.shape[-1]} is not a multiple of {m} bits per symbol")
        b = bits.reshape(*bits.shape[:-1], bits.shape[-1] // m, 1, m)
        p = torch.where(self.labels.bool(), b, 1.0 - b).prod(dim=-1)  # [..., s, M]
        pts = self.points
        return torch.complex(p @ pts.real, p @ pts.imag)
