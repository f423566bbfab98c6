"""Channel coding: 5G NR LDPC (Sionna's encoder and BP decoder), the uncoded pass-through, and CRCs.

``code`` strings: ``"none"`` or ``"ldpc-R"`` with ``R`` a fraction (``ldpc-1/2``,
``ldpc-1/3``, ``ldpc-2/3``, ``ldpc-3/4``, ``ldpc-5/6``; any ``1/5 <= R <= 0.95``
that makes ``k = R n`` an integer). :class:`LDPCCode` keeps Sionna's
:class:`~sionna.phy.fec.ldpc.LDPC5GEncoder` (3GPP TS 38.212 base graph
selection, lifting, rate matching and, given the bits per symbol, the
bit interleaver of Sec. 5.4.2.2) and :class:`~sionna.phy.fec.ldpc.LDPC5GDecoder`
(flooding belief propagation, ``num_iter`` iterations, no early stop) as
``.encoder`` and ``.decoder``. The decoder reads Sionna's LLRs
``log P(1)/P(0)``.

The decoder has no reliable failure flag of its own, so the link appends a
5G CRC (:class:`~sionna.phy.fec.crc.CRCEncoder` / ``CRCDecoder``) to each
codeword's information bits; see :mod:`semcom.phy.link`.
"""

from __future__ import annotations

from semcom.phy import _sionna  # noqa: F401  (first: Sionna's import must not reseed torch)

# isort: split

import re
from fractions import Fraction

import torch
from sionna.phy.fec.crc import CRCDecoder, CRCEncoder
from sionna.phy.fec.ldpc import LDPC5GDecoder, LDPC5GEncoder
from torch import nn

__all__ = ["parse_code", "LDPCCode", "Uncoded", "make_code", "CRC", "CRC_POLYNOMIALS", "CRC_LENGTHS"]

CRC_POLYNOMIALS = ("CRC24A", "CRC24B", "CRC24C", "CRC16", "CRC11", "CRC6")
#: Parity bits of each CRC of 3GPP TS 38.212 Sec. 5.1.
CRC_LENGTHS = {"CRC24A": 24, "CRC24B": 24, "CRC24C": 24, "CRC16": 16, "CRC11": 11, "CRC6": 6}
_LDPC = re.compile(r"^ldpc-(\d+)/(\d+)$")


def parse_code(code: str) -> Fraction | None:
    """The code rate of ``code`` (``None`` for ``"none"``); raises ValueError on a malformed name."""
    if code == "none":
        return None
    m = _LDPC.match(code)
    if not m or int(m.group(2)) == 0:
        raise ValueError("must be 'none' or 'ldpc-R' with R a fraction such as 1/2")
    rate = Fraction(int(m.group(1)), int(m.group(2)))
    if not Fraction(1, 5) <= rate <= Fraction(95, 100):
        raise ValueError(f"LDPC rate {rate} outside the 5G range [1/5, 0.95]")
    return rate


class LDPCCode(nn.Module):
    """5G NR LDPC code of length ``n`` and rate ``rate`` (``k = rate * n`` information bits).

    ``bits_per_symbol`` turns on the 38.212 interleaver for that modulation;
    ``num_iter`` is the number of BP iterations; ``cn_update`` Sionna's check
    node rule (``"boxplus-phi"`` exact, ``"minsum"`` faster).
    """

    def __init__(self, n: int, rate: Fraction | float = Fraction(1, 2), bits_per_symbol: int | None = None,
                 num_iter: int = 20, cn_update: str = "boxplus-phi"):
        super().__init__()
        rate = Fraction(rate).limit_denominator(1000)
        k = n * rate
        if k.denominator != 1:
            raise ValueError(f"n={n} times rate {rate} is not an integer number of information bits")
        self.n, self.k, self.rate = int(n), int(k), rate
        self.encoder = LDPC5GEncoder(self.k, self.n, num_bits_per_symbol=bits_per_symbol)
        self.decoder = LDPC5GDecoder(self.encoder, cn_update=cn_update, num_iter=num_iter, hard_out=True,
                                     return_infobits=True)

    def encode(self, u: torch.Tensor) -> torch.Tensor:
        """Information bits ``[..., k]`` to codewords ``[..., n]``."""
        return self.encoder(u)

    def decode(self, llr: torch.Tensor) -> torch.Tensor:
        """Channel LLRs ``[..., n]`` (``log P(1)/P(0)``) to hard information bits ``[..., k]``."""
        return self.decoder(llr)


class Uncoded(nn.Module):
    """No channel code: ``k = n``, decoding is the hard decision ``llr > 0``."""

    rate = Fraction(1)

    def __init__(self, n: int):
        super().__init__()
        self.n = self.k = int(n)

    def encode(self, u: torch.Tensor) -> torch.Tensor:
        return u

    def decode(self, llr: torch.Tensor) -> torch.Tensor:
        return (llr > 0).to(llr.dtype)


def make_code(code: str, n: int, bits_per_symbol: int | None = None, num_iter: int = 20,
              cn_update: str = "boxplus-phi") -> LDPCCode | Uncoded:
    """Build the code named ``code`` for codewords of ``n`` bits."""
    rate = parse_code(code)
    if rate is None:
        return Uncoded(n)
    return LDPCCode(n, rate, bits_per_symbol=bits_per_symbol, num_iter=num_iter, cn_update=cn_update)


class CRC(nn.Module):
    """A 5G CRC over blocks of ``k`` bits: Sionna's :class:`~sionna.phy.fec.crc.CRCEncoder` (built for
    fixed ``k``) and :class:`~sionna.phy.fec.crc.CRCDecoder` as ``.encoder`` / ``.decoder``.
    A corrupted block passes the check with probability about ``2 ** -length``."""

    def __init__(self, polynomial: str, k: int):
        super().__init__()
        self.encoder = CRCEncoder(polynomial, k=k)
        self.decoder = CRCDecoder(self.encoder)
        self.k, self.length = k, self.encoder.crc_length

    def add(self, bits: torch.Tensor) -> torch.Tensor:
        """``[..., k]`` to ``[..., k + length]``."""
        return self.encoder(bits)

    def check(self, bits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[..., k + length]`` to the payload ``[..., k]`` and a validity flag ``[...]`` (bool)."""
        info, ok = self.decoder(bits)
        return info, ok[..., 0]
