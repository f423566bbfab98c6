"""The validated configuration of the digital link (:class:`PhyConfig`).

A wrong value raises :class:`semcom.errors.ConfigError` with a one-line
message naming the field (through :func:`semcom.config.validated`).

SNR conventions: ``snr_db`` is ``E_s / N_0``, the energy of one complex
symbol (unit energy, per stream for MIMO, at each receive antenna) over the
noise variance ``no`` per complex dimension, so ``no = 10 ** (-snr_db / 10)``.
``ebn0_db`` is ``E_b / N_0`` per *information* bit of the channel code:
``E_s / N_0 = E_b / N_0 * bits_per_symbol * R`` (``R`` the LDPC rate; the CRC
is not counted, as in Sionna's :func:`~sionna.phy.utils.ebnodb2no`). Give one
of the two; neither means ``snr_db = 10``. For the BSC, the crossover
probability is ``bsc_p`` when given, else the exact uncoded bit error rate of
the modulation over AWGN at that SNR (the BSC is the hard-decision channel).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from semcom.phy.coding import CRC_LENGTHS, CRC_POLYNOMIALS, parse_code
from semcom.phy.modulation import MODULATIONS

__all__ = ["PhyConfig", "DEFAULT_SNR_DB", "DEFAULT_CODEWORD_BITS"]

DEFAULT_SNR_DB = 10.0
#: 1536 = 2^9 * 3 is a multiple of 6 bits (64-QAM) times 8 streams, and of every listed rate's denominator.
DEFAULT_CODEWORD_BITS = 1536

ModulationName = Literal["bpsk", "qpsk", "qam16", "qam64"]
ChannelName = Literal["awgn", "rayleigh", "bsc", "mimo"]
CRCName = Literal[CRC_POLYNOMIALS]  # type: ignore[valid-type]


class PhyConfig(BaseModel):
    """Modulation, channel, code and SNR of a :class:`~semcom.phy.link.DigitalLink`.

    ``codeword_bits`` is ``n``, the coded bits per codeword: a multiple of the
    bits per symbol (times ``num_streams`` for MIMO), with ``n * R`` an integer.
    ``crc`` is the 5G CRC appended to each codeword's information bits.
    ``coherence_symbols`` is the Rayleigh coherence block (``None``: one
    codeword). ``batch_codewords`` bounds how many codewords go through the
    Sionna blocks at once. ``fit_codeword``: a packet that fits in one
    codeword of ``n / 2``, ``n / 4``, ... bits (still a valid length) is sent
    in the shortest such codeword instead of a padded length-``n`` one, as 5G
    sizes its LDPC code to the transport block (fewer channel uses for short
    packets, at a weaker code).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    modulation: ModulationName = "qam16"
    channel: ChannelName = "awgn"
    code: str = "ldpc-1/2"
    snr_db: float | None = Field(None, ge=-50.0, le=100.0)
    ebn0_db: float | None = Field(None, ge=-50.0, le=100.0)
    seed: int = Field(0, ge=0, lt=2**63)
    codeword_bits: int = Field(DEFAULT_CODEWORD_BITS, ge=12, le=316 * 384)
    ldpc_iterations: int = Field(20, ge=1, le=1000)
    cn_update: Literal["boxplus-phi", "boxplus", "minsum", "offset-minsum"] = "boxplus-phi"
    demapping: Literal["app", "maxlog"] = "app"
    crc: CRCName = "CRC24A"
    equalizer: Literal["lmmse", "zf"] = "lmmse"
    num_tx_ant: int = Field(8, ge=1, le=256)
    num_rx_ant: int = Field(4, ge=1, le=256)
    num_streams: int | None = Field(None, ge=1, le=256)
    coherence_symbols: int | None = Field(None, ge=1)
    bsc_p: float | None = Field(None, ge=0.0, le=0.5)
    batch_codewords: int = Field(512, ge=1, le=1 << 20)
    fit_codeword: bool = False

    @field_validator("code")
    @classmethod
    def _code(cls, v: str) -> str:
        parse_code(v)
        return v

    @model_validator(mode="after")
    def _consistent(self):
        if self.snr_db is not None and self.ebn0_db is not None:
            raise ValueError("give snr_db or ebn0_db, not both")
        if self.channel == "mimo":
            if self.streams > self.num_tx_ant:
                raise ValueError(f"num_streams={self.streams} exceeds num_tx_ant={self.num_tx_ant}")
            if self.equalizer == "zf" and self.streams > self.num_rx_ant:
                raise ValueError(f"ZF cannot separate num_streams={self.streams} > num_rx_ant={self.num_rx_ant}")
        unit = self.bits_per_symbol * self.streams
        if self.codeword_bits % unit:
            raise ValueError(f"codeword_bits={self.codeword_bits} must be a multiple of {unit} "
                             f"({self.bits_per_symbol} bits per symbol x {self.streams} streams)")
        k = self.codeword_bits * self.rate
        if k.denominator != 1:
            raise ValueError(f"codeword_bits={self.codeword_bits} x rate {self.rate} is not an integer")
        if self.rate != 1 and not 12 <= k <= 8448:
            raise ValueError(f"5G LDPC needs 12 <= k <= 8448 information bits per codeword, got k={k}")
        crc_len = CRC_LENGTHS[self.crc]
        if k <= crc_len:
            raise ValueError(f"k={k} information bits per codeword leave no room for the {crc_len}-bit {self.crc}")
        return self

    # ------------------------------------------------------------------ derived
    @property
    def bits_per_symbol(self) -> int:
        return MODULATIONS[self.modulation].bits_per_symbol

    @property
    def rate(self) -> Fraction:
        """Code rate ``R`` (1 uncoded)."""
        r = parse_code(self.code)
        return Fraction(1) if r is None else r

    @property
    def streams(self) -> int:
        """Symbols per channel use: ``num_streams`` (default ``min(num_tx_ant, num_rx_ant)``) for MIMO, else 1."""
        if self.channel != "mimo":
            return 1
        return self.num_streams if self.num_streams is not None else min(self.num_tx_ant, self.num_rx_ant)

    def valid_length(self, n: int) -> bool:
        """Whether ``n`` coded bits make a valid codeword for this modulation, code, streams and CRC."""
        k = n * self.rate
        return (n >= 12 and n % (self.bits_per_symbol * self.streams) == 0 and k.denominator == 1
                and (self.rate == 1 or 12 <= k <= 8448) and k > CRC_LENGTHS[self.crc])

    @property
    def codeword_lengths(self) -> list[int]:
        """The codeword lengths a packet may use, shortest first: ``codeword_bits`` alone, or with
        ``fit_codeword`` also its valid halvings ``n / 2, n / 4, ...``."""
        lengths = [self.codeword_bits]
        n = self.codeword_bits
        while self.fit_codeword and n % 2 == 0 and self.valid_length(n // 2):
            n //= 2
            lengths.insert(0, n)
        return lengths

    @property
    def info_bits_per_codeword(self) -> int:
        """``k = R n``, CRC included."""
        return int(self.codeword_bits * self.rate)

    @property
    def payload_bits_per_codeword(self) -> int:
        """``k`` minus the CRC: the packet bits each codeword carries."""
        return self.info_bits_per_codeword - CRC_LENGTHS[self.crc]

    def esn0_db(self, snr_db: float | None = None, ebn0_db: float | None = None) -> float:
        """``E_s / N_0`` in dB from an explicit ``snr_db`` / ``ebn0_db``, else from the config's."""
        if snr_db is None and ebn0_db is None:
            snr_db, ebn0_db = self.snr_db, self.ebn0_db
        if snr_db is not None:
            return float(snr_db)
        if ebn0_db is not None:
            return ebn0_to_esn0_db(ebn0_db, self.bits_per_symbol, self.rate)
        return DEFAULT_SNR_DB


def ebn0_to_esn0_db(ebn0_db: float, bits_per_symbol: int, rate: Fraction | float = 1) -> float:
    """``E_s/N_0 = E_b/N_0 * bits_per_symbol * R``, in dB."""
    return float(ebn0_db) + 10.0 * math.log10(bits_per_symbol * float(rate))


def esn0_to_ebn0_db(esn0_db: float, bits_per_symbol: int, rate: Fraction | float = 1) -> float:
    return float(esn0_db) - 10.0 * math.log10(bits_per_symbol * float(rate))
