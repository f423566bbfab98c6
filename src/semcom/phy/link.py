"""The digital link: bytes in, bytes (or an erasure) out, over Sionna's modulation, channel and LDPC.

:class:`PhyChain` is the bit pipe, an ``nn.Module`` of Sionna blocks::

    u [B, k] -> LDPC encode -> c [B, n] -> map -> x [B, n/m] -> channel + equalise
             -> demap (LLRs log P(1)/P(0)) -> BP decode -> u_hat [B, k]

(for the BSC: ``c -> BSC -> LLRs -> decode``). :class:`DigitalLink` carries
packets over it. Framing of one packet of ``L`` bytes (``kp = k - crc`` payload
bits per codeword):

1. its ``8 L`` bits (MSB first), one ``1`` bit, then ``0`` bits up to
   ``C * kp`` with ``C = ceil((8 L + 1) / kp)`` codewords (the "1 then zeros"
   padding of ISO/IEC 9797-1 method 2, so the receiver recovers ``L``
   without a length field);
2. ``C`` segments of ``kp`` bits, each followed by its CRC (5G CRC24A by
   default, Sionna's :class:`~sionna.phy.fec.crc.CRCEncoder`);
3. the codewords of all packets go through :class:`PhyChain` in batches.

A packet is returned only if the CRC of every one of its codewords holds and
its padding is well formed; otherwise it is ``None`` (an erasure), and the
receiver's repair path takes over. A corrupted codeword passes a 24-bit CRC
with probability about ``2**-24`` (6e-8), so a packet of ``C`` codewords
is delivered corrupted with probability at most about ``C * 2**-24`` *given*
that its decoding failed.

Channel uses are complex symbols, ``n / m`` per codeword (``m`` bits per
symbol), as the robust-codebook paper's Table I counts them; for MIMO,
``time_slots`` is that divided by the streams sent per channel use.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from semcom.config import validated
from semcom.errors import ConfigError
from semcom.phy._rng import make_generator, use_generator
from semcom.phy.channels import AWGNChannel, BSCChannel, MIMOChannel, RayleighChannel
from semcom.phy.coding import CRC, CRC_LENGTHS, make_code
from semcom.phy.config import PhyConfig, esn0_to_ebn0_db
from semcom.phy.modulation import Modulation
from semcom.phy.theory import ber_qam_awgn

__all__ = ["BitPipe", "PhyChain", "DigitalLink", "LinkResult", "make_channel"]


def make_channel(cfg: PhyConfig) -> nn.Module:
    """The channel module of ``cfg``."""
    if cfg.channel == "awgn":
        return AWGNChannel()
    if cfg.channel == "rayleigh":
        return RayleighChannel(cfg.coherence_symbols)
    if cfg.channel == "mimo":
        return MIMOChannel(cfg.num_tx_ant, cfg.num_rx_ant, cfg.streams, cfg.equalizer)
    return BSCChannel()


class PhyChain(nn.Module):
    """Encoder, mapper, channel, demapper and decoder of one :class:`PhyConfig` (Sionna blocks throughout).

    ``forward(u, esn0_db)`` sends information bits ``u`` (``[B, k]``, 0/1
    floats) at ``E_s/N_0 = esn0_db`` and returns the decoded bits. ``.code``,
    ``.modulation`` and ``.channel`` expose the blocks.
    """

    def __init__(self, cfg: PhyConfig):
        super().__init__()
        self.cfg = cfg
        m = cfg.bits_per_symbol
        self.modulation = Modulation(cfg.modulation, cfg.demapping)
        self.channel = make_channel(cfg)
        try:
            self.code = make_code(cfg.code, cfg.codeword_bits, bits_per_symbol=m if m > 1 else None,
                                  num_iter=cfg.ldpc_iterations, cn_update=cfg.cn_update)
        except (ValueError, TypeError) as exc:  # Sionna's own checks on (k, n)
            raise ConfigError(f"invalid code={cfg.code!r} with codeword_bits={cfg.codeword_bits}: {exc}") from None

    @property
    def n(self) -> int:
        return self.code.n

    @property
    def k(self) -> int:
        return self.code.k

    def crossover(self, esn0_db: float) -> float:
        """The BSC crossover probability at ``esn0_db``: ``bsc_p``, or the modulation's uncoded AWGN BER."""
        if self.cfg.bsc_p is not None:
            return float(self.cfg.bsc_p)
        ebn0_ch = esn0_to_ebn0_db(esn0_db, self.cfg.bits_per_symbol)
        return float(ber_qam_awgn(self.modulation.spec.order, ebn0_ch))

    def llrs(self, c: torch.Tensor, esn0_db: float) -> torch.Tensor:
        """Codeword bits ``[B, n]`` through mapping, channel, equalisation and demapping to LLRs ``[B, n]``."""
        if isinstance(self.channel, BSCChannel):
            return self.channel(c, self.crossover(esn0_db))
        no = 10.0 ** (-float(esn0_db) / 10.0)
        x = self.modulation.map(c)
        x_hat, no_eff = self.channel(x, no)
        return self.modulation.demap(x_hat, no_eff)

    @torch.no_grad()
    def forward(self, u: torch.Tensor, esn0_db: float) -> torch.Tensor:
        return self.code.decode(self.llrs(self.code.encode(u), esn0_db))


@dataclass
class LinkResult:
    """What :meth:`DigitalLink.transmit` delivered and what it cost.

    ``packets[i]`` is the ``i``-th packet as received, or ``None`` when it was
    erased (a CRC failed). ``channel_uses`` counts complex symbols,
    ``coded_bits`` the bits after channel coding, ``info_bits`` the packets'
    own bits (``8 * len``); ``codewords`` the LDPC codewords sent.
    """

    packets: list[bytes | None]
    channel_uses: int
    coded_bits: int
    info_bits: int
    codewords: int
    time_slots: int
    packet_codewords: list[int] = field(default_factory=list)
    packet_channel_uses: list[int] = field(default_factory=list)
    packet_codeword_bits: list[int] = field(default_factory=list)
    snr_db: float = 0.0
    ebn0_db: float = 0.0

    @property
    def erased(self) -> list[bool]:
        return [p is None for p in self.packets]

    @property
    def erasures(self) -> int:
        return sum(p is None for p in self.packets)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["packets"] = [None if p is None else p.hex() for p in self.packets]
        d["erased"] = self.erased
        return d


class DigitalLink:
    """Bytes over the air: segment, CRC, LDPC-encode, map, channel, demap, decode, check, reassemble.

    ``DigitalLink(modulation="qam64", channel="rayleigh", code="ldpc-1/2", snr_db=10.0, seed=0)``;
    every other :class:`PhyConfig` field is a keyword too. The same seed gives
    the same channel realisations, hence the same bits out. ``.chain`` is the
    :class:`PhyChain` (Sionna blocks) of the full codeword length; with
    ``fit_codeword=True``, shorter chains are built on first use
    (:meth:`chain_for`), all drawing from the one seeded generator.
    """

    def __init__(self, modulation: str = "qam16", channel: str = "awgn", code: str = "ldpc-1/2",
                 snr_db: float | None = None, seed: int = 0, **options):
        cfg = options.pop("config", None)
        if cfg is None:
            cfg = validated(PhyConfig, modulation=modulation, channel=channel, code=code, snr_db=snr_db,
                            seed=seed, **options)
        self.config: PhyConfig = cfg
        self.generator = make_generator(cfg.seed)
        self._chains: dict[int, tuple[PhyChain, CRC]] = {}
        self.chain, self.crc = self.chain_for(cfg.codeword_bits)

    @classmethod
    def from_config(cls, cfg: PhyConfig) -> DigitalLink:
        return cls(config=cfg)

    def chain_for(self, n: int) -> tuple[PhyChain, CRC]:
        """The :class:`PhyChain` and :class:`~semcom.phy.coding.CRC` of codewords of ``n`` bits (cached)."""
        if n not in self._chains:
            cfg = self.config.model_copy(update={"codeword_bits": n})
            chain = use_generator(PhyChain(cfg), self.generator)
            self._chains[n] = (chain, CRC(cfg.crc, cfg.payload_bits_per_codeword))
        return self._chains[n]

    # ------------------------------------------------------------------ costs
    def _payload_bits(self, n: int) -> int:
        return int(n * self.config.rate) - CRC_LENGTHS[self.config.crc]

    def codeword_bits_for(self, nbytes: int) -> int:
        """The codeword length ``n`` a packet of ``nbytes`` bytes is sent in."""
        need = 8 * nbytes + 1
        for n in self.config.codeword_lengths:  # shortest first; just codeword_bits without fit_codeword
            if self._payload_bits(n) >= need:
                return n
        return self.config.codeword_bits

    def codewords_for(self, nbytes: int) -> int:
        """Codewords a packet of ``nbytes`` bytes takes (``8 nbytes`` bits plus one padding bit)."""
        return max(1, math.ceil((8 * nbytes + 1) / self._payload_bits(self.codeword_bits_for(nbytes))))

    def channel_uses_for(self, nbytes: int) -> int:
        """Complex symbols a packet of ``nbytes`` bytes takes."""
        return self.codewords_for(nbytes) * self.codeword_bits_for(nbytes) // self.config.bits_per_symbol

    # ------------------------------------------------------------------ framing
    def segment(self, packets: Sequence[bytes], n: int | None = None) -> tuple[torch.Tensor, list[int]]:
        """Packets to CRC-protected information blocks ``[C_total, k]`` of codewords of ``n`` bits
        (default ``codeword_bits``) and the number of codewords of each packet."""
        n = self.config.codeword_bits if n is None else n
        kp = self._payload_bits(n)
        counts = [max(1, math.ceil((8 * len(p) + 1) / kp)) for p in packets]
        blocks = np.zeros((sum(counts), kp), dtype=np.float32)
        row = 0
        for p, c in zip(packets, counts):
            flat = blocks[row:row + c].reshape(-1)
            bits = np.unpackbits(np.frombuffer(bytes(p), dtype=np.uint8))
            flat[:bits.size] = bits
            flat[bits.size] = 1.0
            row += c
        return self.chain_for(n)[1].add(torch.from_numpy(blocks)), counts

    def reassemble(self, u_hat: torch.Tensor, counts: Sequence[int], n: int | None = None) -> list[bytes | None]:
        """Decoded blocks ``[C_total, k]`` back to packets; ``None`` where a CRC or the padding fails."""
        n = self.config.codeword_bits if n is None else n
        payload, ok = self.chain_for(n)[1].check(u_hat)
        payload = payload.numpy().astype(np.uint8)
        ok = ok.numpy()
        out: list[bytes | None] = []
        row = 0
        for c in counts:
            if not ok[row:row + c].all():
                out.append(None)
            else:
                flat = payload[row:row + c].reshape(-1)
                ones = np.flatnonzero(flat)
                end = int(ones[-1]) if ones.size else -1
                out.append(np.packbits(flat[:end]).tobytes() if end >= 0 and end % 8 == 0 else None)
            row += c
        return out

    # ------------------------------------------------------------------ transmit
    def transmit(self, packets: Sequence[bytes], snr_db: float | None = None,
                 ebn0_db: float | None = None) -> LinkResult:
        """Send ``packets`` (a sequence of ``bytes``) at the configured SNR, or at ``snr_db`` / ``ebn0_db``."""
        if isinstance(packets, (bytes, bytearray)):
            raise ConfigError("transmit() takes a sequence of packets; wrap a single packet in a list")
        if snr_db is not None and ebn0_db is not None:
            raise ConfigError("invalid ebn0_db: give snr_db or ebn0_db, not both")
        cfg = self.config
        esn0 = cfg.esn0_db(snr_db, ebn0_db)
        m = cfg.bits_per_symbol
        lengths = [self.codeword_bits_for(len(p)) for p in packets]
        received: list[bytes | None] = [None] * len(packets)
        counts = [0] * len(packets)
        for n in sorted(set(lengths)):  # one batched pass per codeword length
            idx = [i for i, ln in enumerate(lengths) if ln == n]
            u, cs = self.segment([packets[i] for i in idx], n)
            chain = self.chain_for(n)[0]
            u_hat = torch.empty_like(u)
            for start in range(0, u.shape[0], cfg.batch_codewords):
                stop = start + cfg.batch_codewords
                u_hat[start:stop] = chain(u[start:stop], esn0)
            for i, c, got in zip(idx, cs, self.reassemble(u_hat, cs, n)):
                received[i], counts[i] = got, c
        coded = [c * n for c, n in zip(counts, lengths)]
        uses = sum(coded) // m
        return LinkResult(
            packets=received, channel_uses=uses, coded_bits=sum(coded),
            info_bits=8 * sum(len(p) for p in packets), codewords=sum(counts),
            time_slots=math.ceil(uses / cfg.streams),
            packet_codewords=counts, packet_channel_uses=[b // m for b in coded],
            packet_codeword_bits=lengths,
            snr_db=esn0, ebn0_db=esn0_to_ebn0_db(esn0, m, cfg.rate))

    def send(self, packet: bytes, snr_db: float | None = None) -> bytes | None:
        """One packet over the link: the packet as received, or ``None`` (erased)."""
        return self.transmit([packet], snr_db=snr_db).packets[0]

    def __repr__(self) -> str:
        c = self.config
        return (f"DigitalLink(modulation={c.modulation!r}, channel={c.channel!r}, code={c.code!r}, "
                f"snr_db={c.esn0_db():g}, n={c.codeword_bits}, seed={c.seed})")


class BitPipe:
    """Raw bits over the air, no CRC and no erasures: what a semantic receiver that "decodes whatever indices
    arrive" gets (the grounded codebook paper's link, issue 10 item 3).

    ``BitPipe(modulation="qam64", channel="rayleigh", code="none", snr_db=10, seed=0, coherence_symbols=1)``
    (every :class:`PhyConfig` field is a keyword). :meth:`send` cuts a bit string into blocks of ``k`` bits
    (the last padded with zeros), sends each through the :class:`PhyChain` (encode, map, channel, equalise,
    demap, decode; Sionna's blocks) and returns the first ``len(bits)`` decoded bits, right or wrong.
    ``code="none"`` is the uncoded link (``k = n``, hard decisions); ``"ldpc-1/2"`` the 5G LDPC code."""

    def __init__(self, modulation: str = "qam64", channel: str = "rayleigh", code: str = "none",
                 snr_db: float | None = None, seed: int = 0, **options):
        options.setdefault("crc", "CRC24A")
        self.config: PhyConfig = validated(PhyConfig, modulation=modulation, channel=channel, code=code,
                                           snr_db=snr_db, seed=seed, **options)
        self.generator = make_generator(self.config.seed)
        self.chain = use_generator(PhyChain(self.config), self.generator)

    @property
    def k(self) -> int:
        """Information bits per codeword."""
        return self.chain.k

    def channel_uses(self, nbits: int) -> int:
        """Complex symbols spent on ``nbits`` information bits (whole codewords)."""
        return math.ceil(nbits / self.k) * self.chain.n // self.config.bits_per_symbol

    @torch.no_grad()
    def send(self, bits, snr_db: float | None = None) -> np.ndarray:
        """``bits`` (a 1-D array of 0/1) through the link at ``snr_db`` (default the config's ``E_s/N_0``);
        the received bits, ``uint8``, same length."""
        bits = np.asarray(bits)
        if bits.ndim != 1 or (bits.size and (bits.min() < 0 or bits.max() > 1)):
            raise ConfigError(f"invalid bits: expected a 1-D array of 0/1, got shape {bits.shape}")
        if bits.size == 0:
            return bits.astype(np.uint8)
        esn0 = self.config.esn0_db(snr_db)
        blocks = math.ceil(bits.size / self.k)
        u = np.zeros(blocks * self.k, dtype=np.float32)
        u[:bits.size] = bits
        u = torch.from_numpy(u.reshape(blocks, self.k))
        out = torch.empty_like(u)
        step = self.config.batch_codewords
        for start in range(0, blocks, step):
            out[start:start + step] = self.chain(u[start:start + step], esn0)
        return out.reshape(-1)[:bits.size].numpy().astype(np.uint8)

    def __repr__(self) -> str:
        c = self.config
        return (f"BitPipe(modulation={c.modulation!r}, channel={c.channel!r}, code={c.code!r}, "
                f"snr_db={c.esn0_db():g}, n={c.codeword_bits}, coherence_symbols={c.coherence_symbols})")
