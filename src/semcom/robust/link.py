"""The robust paper's link (Section V-A): 8x4 MIMO, 16-QAM, 5G LDPC at rate 1/2, for the masked VQ-VAE's indices,
the ViT JSCC's analogue latent and the JPEG+LDPC anchor (issue 11, item 4).

**Indices** (:class:`IndexLink`, an :data:`~semcom.robust.model.IndexChannel`). Each image's transmitted index grid
(``[N]``, ``-1`` where nothing is sent) becomes bits, image after image, in one stream:

* the ``J_c = log2 J`` bits of every sent index (MSB first), in ascending patch order;
* with ``position_map=True`` first an ``N``-bit map (bit ``n`` is 1 when patch ``n`` carries an index). It is needed
  only when the set of sent positions is not known to the receiver, i.e. when the FIM threshold or the
  deduplication of Fig. 2b drop indices. Without it (the default for a model that sends every kept patch) the
  receiver knows the positions: they are the noise-aware mask drawn from the shared ``mask_seed`` and the masking
  statistics shipped with the weights, so the paper's Table I count ``T J_c`` bits holds.

The stream goes through :class:`semcom.phy.link.BitPipe` configured as the paper (``channel="mimo"``,
``num_tx_ant=8``, ``num_rx_ant=4``, hence ``min(8, 4) = 4`` streams per channel use through a DFT precoder, LMMSE
equalisation, 16-QAM with APP demapping, 5G LDPC rate 1/2 with 20 BP iterations, codewords of 1536 bits): raw bits,
no CRC, decoded right or wrong, as a semantic receiver "decodes whatever indices arrive". The receiver cuts the
stream back at the known per-image lengths (the transport block size, which 5G signals in the control channel)
and reads the indices back (any 8-bit value is a valid index for ``J = 256``; for a smaller ``J`` a value
``>= J`` is reduced modulo ``J``). With a position map, the first ``c`` set bits of the received map give the
positions of the ``c`` indices the segment holds (``c`` follows from its length); if the received map has fewer
than ``c`` set bits, the indices without a position are lost (the receiver's mask token takes their place).

**Analogue latent** (:class:`MIMOLatentChannel`, a :data:`~semcom.robust.model.LatentChannel`): the JSCC's power
normalised real latent, in pairs, as complex symbols (unit average energy) through the same 8x4 MIMO channel module
with LMMSE equalisation (:class:`semcom.phy.channels.MIMOChannel`), differentiable, so the JSCC trains through it.

**JPEG+LDPC** (:class:`JPEGLink`): Pillow's JPEG at ``quality`` (baseline, 4:2:0 for colour), one packet per image
through :class:`semcom.phy.link.DigitalLink` (CRC24A per codeword, 5G LDPC 1/2, 16-QAM, 8x4 MIMO). **The failure
rule**: a packet whose CRC fails, or whose bytes Pillow cannot decode, is delivered as a mid-grey image (every
pixel 0.5), and the classifier classifies that image. ``mode="exact"`` sends every packet through the link;
``mode="cwer"`` (for the long sweeps of the reproductions: the Sionna LDPC decoder takes about 15 ms per codeword
on one CPU core, and a 28x28 JPEG takes 6-8 codewords) measures the link's codeword error rate at the SNR once, on
``probe_codewords`` one-codeword packets, and erases a packet of ``c`` codewords with probability
``1 - (1 - CWER)^c`` (seeded), which is the same law when codeword failures are independent.

**Channel uses** (:func:`symbols_per_image`): complex symbols per image, ``bits / (B_s R_c)`` with ``B_s = 4``
(16-QAM) and ``R_c = 1/2``; MIMO time slots are that over the 4 streams.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from semcom.errors import ConfigError

__all__ = ["PAPER_PHY", "IndexLink", "JPEGLink", "MIMOLatentChannel", "index_bits_per_image", "index_link_for",
           "jpeg_bytes", "symbols_per_image", "systematic_positions"]

#: Section V-A's physical layer: Nt = 8, Nr = 4, 16-QAM, LDPC rate 1/2 (every other PhyConfig field at its default).
PAPER_PHY = {"modulation": "qam16", "channel": "mimo", "code": "ldpc-1/2", "num_tx_ant": 8, "num_rx_ant": 4}
BITS_PER_SYMBOL = 4
CODE_RATE = 0.5
#: The MIMO streams per channel use, ``min(Nt, Nr)``.
STREAMS = 4


def _check_snr(snr_db) -> float:
    if isinstance(snr_db, bool) or not isinstance(snr_db, (int, float)) or not math.isfinite(snr_db) \
            or not -50.0 <= snr_db <= 100.0:
        raise ConfigError(f"invalid snr_db={snr_db!r}: must be a finite number of dB in [-50, 100]")
    return float(snr_db)


def index_bits_per_image(sent: int, bits_per_index: int, num_patches: int, position_map: bool) -> int:
    """Information bits of one image: ``sent * J_c`` (plus ``N`` with a position map)."""
    return sent * bits_per_index + (num_patches if position_map else 0)


def symbols_per_image(info_bits: float, bits_per_symbol: int = BITS_PER_SYMBOL, code_rate: float = CODE_RATE) -> float:
    """Complex channel symbols (channel uses of one antenna stream) for ``info_bits`` information bits:
    ``info_bits / (B_s R_c)`` (Section V-B's formulas; the paper leaves ``R_c`` out of the masked VQ-VAE's count,
    pass ``code_rate=1`` for that)."""
    return info_bits / (bits_per_symbol * code_rate)


@dataclass
class LinkStats:
    """What the last call of an :class:`IndexLink` did: images, indices sent, indices received wrong (value or
    position), information bits, bit errors, channel uses (whole codewords of the whole batch)."""

    images: int = 0
    indices: int = 0
    index_errors: int = 0
    bits: int = 0
    bit_errors: int = 0
    channel_uses: int = 0
    history: list = field(default_factory=list, repr=False)

    @property
    def index_error_rate(self) -> float:
        return self.index_errors / self.indices if self.indices else 0.0

    @property
    def bit_error_rate(self) -> float:
        return self.bit_errors / self.bits if self.bits else 0.0


class IndexLink:
    """The masked VQ-VAE's indices over the paper's PHY at ``snr_db`` (``E_s/N_0`` per stream and receive antenna,
    dB): call it on a transmitted grid ``[B, N]`` (int64, ``-1``: nothing sent) to get the received grid. ``J`` the
    codebook size (``log2 J`` bits per index); ``position_map`` see the module docstring; ``seed`` seeds the
    channel, noise and nothing else (the same seed and input give the same output); ``codeword_bits`` the LDPC
    codeword length ``n`` (``k = n / 2`` information bits). ``.stats`` holds the last call's :class:`LinkStats`."""

    def __init__(self, snr_db: float, J: int = 256, position_map: bool = False, seed: int = 0,
                 codeword_bits: int = 1536, *, perturb=None, record: bool = False, **phy):
        from semcom.phy.link import BitPipe

        self.snr_db = _check_snr(snr_db)
        #: eq. (8)'s receiver-side semantic noise: ``perturb(x_hat)`` gets the equalised symbols of each batch of
        #: codewords (complex ``[C, n / B_s]``) before demapping and returns them perturbed (Fig. 8).
        self.perturb = perturb
        #: with ``record=True`` each call appends ``(u, x_hat, no_eff)`` (information bits ``[C, k]``, equalised
        #: symbols before ``perturb``, the equaliser's noise variance) to ``.records``: what Algorithm 1's attacker
        #: collects.
        self.record, self.records = bool(record), []
        if isinstance(J, bool) or not isinstance(J, int) or J < 2 or J & (J - 1):
            raise ConfigError(f"invalid J={J!r}: must be a power of two >= 2")
        self.J, self.bits_per_index, self.position_map = J, int(math.log2(J)), bool(position_map)
        self.pipe = BitPipe(**(PAPER_PHY | {"seed": seed, "codeword_bits": codeword_bits, "snr_db": self.snr_db}
                               | phy))
        self.stats = LinkStats()

    def bits(self, grid: np.ndarray) -> tuple[np.ndarray, list[int]]:
        """The bit stream of a grid ``[B, N]`` and each image's bit count."""
        weights = 1 << np.arange(self.bits_per_index - 1, -1, -1)
        parts, lengths = [], []
        for row in grid:
            sent = row[row >= 0]
            idx_bits = ((sent[:, None] & weights) > 0).astype(np.uint8).reshape(-1)
            seg = np.concatenate([(row >= 0).astype(np.uint8), idx_bits]) if self.position_map else idx_bits
            parts.append(seg)
            lengths.append(seg.size)
        return (np.concatenate(parts) if parts else np.zeros(0, np.uint8)), lengths

    def unbits(self, stream: np.ndarray, lengths: list[int], grid: np.ndarray) -> np.ndarray:
        """The received grid from the received stream (``grid`` supplies the positions when there is no map)."""
        b, n = grid.shape
        out = np.full((b, n), -1, dtype=np.int64)
        weights = 1 << np.arange(self.bits_per_index - 1, -1, -1)
        start = 0
        for i, length in enumerate(lengths):
            seg = stream[start:start + length]
            start += length
            if self.position_map:
                count = (length - n) // self.bits_per_index
                positions = np.flatnonzero(seg[:n])[:count]
                seg = seg[n:]
            else:
                positions = np.flatnonzero(grid[i] >= 0)
                count = positions.size
            values = (seg.reshape(count, self.bits_per_index) * weights).sum(axis=1) % self.J
            out[i, positions] = values[:positions.size]
        return out

    def __call__(self, grid: torch.Tensor) -> torch.Tensor:
        g = torch.as_tensor(grid)
        if g.dim() != 2 or g.is_floating_point():
            raise ConfigError(f"invalid index grid: expected an integer [B, N] tensor, got {g.dtype} "
                              f"{tuple(g.shape)}")
        arr = g.detach().cpu().numpy().astype(np.int64)
        if arr.size and (arr.min() < -1 or arr.max() >= self.J):
            raise ConfigError(f"invalid index grid: values must be -1 or in 0..{self.J - 1}")
        stream, lengths = self.bits(arr)
        received = self.send_bits(stream)
        out = self.unbits(received, lengths, arr)
        sent = arr >= 0
        self.stats = LinkStats(images=arr.shape[0], indices=int(sent.sum()),
                               index_errors=int((sent & (out != arr)).sum()), bits=int(stream.size),
                               bit_errors=int((received != stream).sum()),
                               channel_uses=self.pipe.channel_uses(int(stream.size)))
        return torch.from_numpy(out).to(g.device)


    def send_bits(self, stream: np.ndarray) -> np.ndarray:
        """``stream`` through the link (:meth:`semcom.phy.link.BitPipe.send`, the same blocks in the same order),
        with :attr:`perturb` applied to the equalised symbols and :attr:`records` kept when asked."""
        if self.perturb is None and not self.record:
            return self.pipe.send(stream, snr_db=self.snr_db)
        if stream.size == 0:
            return stream.astype(np.uint8)
        chain, k = self.pipe.chain, self.pipe.k
        no = 10.0 ** (-self.pipe.config.esn0_db(self.snr_db) / 10.0)
        blocks = math.ceil(stream.size / k)
        u = np.zeros(blocks * k, dtype=np.float32)
        u[:stream.size] = stream
        u = torch.from_numpy(u.reshape(blocks, k))
        out = torch.empty_like(u)
        step = self.pipe.config.batch_codewords
        with torch.no_grad():
            for start in range(0, blocks, step):
                ub = u[start:start + step]
                x_hat, no_eff = chain.channel(chain.modulation.map(chain.code.encode(ub)), no)
                if self.record:
                    self.records.append((ub, x_hat, no_eff))
                if self.perturb is not None:
                    x_hat = self.perturb(x_hat)
                out[start:start + step] = chain.code.decode(chain.modulation.demap(x_hat, no_eff))
        return out.reshape(-1)[:stream.size].numpy().astype(np.uint8)


def systematic_positions(link: IndexLink) -> tuple[np.ndarray, np.ndarray]:
    """Where the information bits sit in the transmitted codeword of ``link``'s LDPC code: ``(info, coded)`` with
    ``codeword[coded[i]] == u[info[i]]`` for every ``u``. 5G LDPC is systematic but punctures the first ``2 Z``
    information bits and interleaves the rest (rate matching), so ``info`` misses those (for ``n = 1536``: bits
    0..159 of 768). Found by encoding 64 random blocks (seeded): a false match has probability ``2^-64``."""
    code = link.pipe.chain.code
    g = torch.Generator().manual_seed(0)
    u = torch.randint(0, 2, (64, code.k), generator=g).float()
    c = code.encode(u)
    match = (c[:, :, None] == u[:, None, :]).all(0)  # [n, k]
    coded, info = [], []
    for j in range(match.shape[0]):
        hit = torch.nonzero(match[j]).flatten()
        if hit.numel() == 1 and int(hit[0]) not in info:
            coded.append(j)
            info.append(int(hit[0]))
    return np.asarray(info), np.asarray(coded)


def index_link_for(model, snr_db: float, seed: int = 0, **options) -> IndexLink:
    """The :class:`IndexLink` of a :class:`~semcom.robust.model.MaskedVQVAE`: its ``J``, and a position map only
    when its FIM threshold or deduplication can drop kept indices."""
    c = model.config
    needs_map = (c.use_fim and c.fim_threshold > 0) or c.dedup_threshold < 1.0
    return IndexLink(snr_db, J=c.J, position_map=needs_map, seed=seed, **options)


class MIMOLatentChannel(torch.nn.Module):
    """The JSCC's analogue latent through the paper's 8x4 MIMO channel at ``snr_db`` with LMMSE equalisation:
    ``z`` (``[B, T, D]`` real, ``D`` even, ``mean z^2 = 1/2`` per image so each complex symbol has unit energy) is
    read as ``T D / 2`` complex symbols per image, sent ``STREAMS`` per channel use (zero-padded to a multiple) and
    returned equalised (unbiased LMMSE estimate), as reals of the same shape. Differentiable in ``z``. One call of
    this module draws new channel matrices and noise from its own generator seeded with ``seed``."""

    def __init__(self, snr_db: float, seed: int = 0, num_tx_ant: int = 8, num_rx_ant: int = 4):
        super().__init__()
        from semcom.phy._rng import make_generator, use_generator
        from semcom.phy.channels import MIMOChannel

        self.snr_db = _check_snr(snr_db)
        self.channel = use_generator(MIMOChannel(num_tx_ant, num_rx_ant), make_generator(seed))

    @staticmethod
    def symbols(shape: tuple[int, ...]) -> int:
        """Complex symbols per image of a latent of per-image shape ``[T, D]``."""
        return math.prod(shape) // 2

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.shape[-1] % 2:
            raise ConfigError(f"invalid latent: the last dimension ({z.shape[-1]}) must be even (complex pairs)")
        b = z.shape[0]
        s = torch.complex(z[..., 0::2].float(), z[..., 1::2].float()).reshape(b, -1)
        k = s.shape[1]
        pad = (-k) % self.channel.num_streams
        if pad:
            s = torch.cat([s, s.new_zeros(b, pad)], dim=1)
        no = 10.0 ** (-self.snr_db / 10.0)
        x_hat, _ = self.channel(s, no)
        x_hat = x_hat[:, :k].reshape(*z.shape[:-1], z.shape[-1] // 2)
        return torch.stack([x_hat.real, x_hat.imag], dim=-1).reshape(z.shape).to(z.dtype)


def jpeg_bytes(image: torch.Tensor, quality: int = 75) -> bytes:
    """One image ``[C, H, W]`` in [0, 1] (C = 1 or 3) as JPEG bytes (Pillow, baseline)."""
    from PIL import Image

    arr = (image.detach().cpu().clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()
    pil = Image.fromarray(arr[0], mode="L") if arr.shape[0] == 1 else Image.fromarray(arr.transpose(1, 2, 0), "RGB")
    buf = io.BytesIO()
    pil.save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


def jpeg_image(data: bytes | None, shape: tuple[int, int, int]) -> torch.Tensor:
    """Decoded JPEG bytes as ``[C, H, W]`` floats in [0, 1]; mid-grey (0.5) if ``data`` is None (erased) or does
    not decode to an image of ``shape``."""
    from PIL import Image

    c, h, w = shape
    if data is not None:
        try:
            with Image.open(io.BytesIO(data)) as im:
                im = im.convert("L" if c == 1 else "RGB")
                arr = np.asarray(im, dtype=np.float32) / 255.0
            if arr.shape[:2] == (h, w):
                t = torch.from_numpy(arr.copy())
                return t.unsqueeze(0) if c == 1 else t.permute(2, 0, 1).contiguous()
        except Exception:  # noqa: BLE001 - any undecodable payload is a failed image
            pass
    return torch.full(shape, 0.5)


class JPEGLink:
    """JPEG+LDPC (Section V-A's conventional anchor): each image as one JPEG packet of ``quality`` through
    :class:`semcom.phy.link.DigitalLink` on the paper's PHY at ``snr_db``; call it on images ``[B, C, H, W]`` to get
    the received images (a failed packet is mid-grey, see the module docstring). ``.last`` is the last
    :class:`~semcom.phy.link.LinkResult`."""

    def __init__(self, snr_db: float, quality: int = 75, seed: int = 0, codeword_bits: int = 1536,
                 mode: str = "exact", probe_codewords: int = 256, cwer: float | None = None, **phy):
        from semcom.phy.link import DigitalLink

        self.snr_db = _check_snr(snr_db)
        if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 95:
            raise ConfigError(f"invalid quality={quality!r}: must be an integer in 1..95")
        if mode not in ("exact", "cwer"):
            raise ConfigError(f"invalid mode={mode!r}: 'exact' or 'cwer'")
        self.quality, self.mode, self.seed, self.probe_codewords = quality, mode, seed, probe_codewords
        self.link = DigitalLink(**(PAPER_PHY | {"seed": seed, "codeword_bits": codeword_bits,
                                                "snr_db": self.snr_db} | phy))
        self.last = None
        self._cwer: float | None = cwer  # a codeword error rate measured before, at this SNR

    def codeword_error_rate(self) -> float:
        """The fraction of ``probe_codewords`` one-codeword packets (random payloads filling one codeword) that the
        link erases at this SNR (measured once, cached)."""
        if self._cwer is None:
            kp = self.link.config.payload_bits_per_codeword
            size = (kp - 1) // 8
            rng = np.random.default_rng(self.seed)
            probes = [rng.integers(0, 256, size, dtype=np.uint8).tobytes() for _ in range(self.probe_codewords)]
            self._cwer = self.link.transmit(probes, snr_db=self.snr_db).erasures / self.probe_codewords
        return self._cwer

    def channel_uses(self, images: torch.Tensor) -> list[int]:
        """Complex symbols each image's packet takes (whole codewords)."""
        return [self.link.channel_uses_for(len(jpeg_bytes(x, self.quality))) for x in images]

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        packets = [jpeg_bytes(x, self.quality) for x in images]
        shape = tuple(images.shape[1:])
        if self.mode == "cwer":
            p = self.codeword_error_rate()
            rng = np.random.default_rng([self.seed, len(packets)])
            ok = [rng.random() >= 1.0 - (1.0 - p) ** self.link.codewords_for(len(x)) for x in packets]
            received = [x if good else None for x, good in zip(packets, ok)]
        else:
            self.last = self.link.transmit(packets, snr_db=self.snr_db)
            received = self.last.packets
        return torch.stack([jpeg_image(x, shape) for x in received]).to(images.device)
