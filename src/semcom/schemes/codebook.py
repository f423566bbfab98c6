"""The grounded codebook paper's system as a pair of endpoints (issue 10, items 3 and 6): frames in, index
bits out; index bits in, frames out.

The transmitter quantises each frame's ``H/8 x W/8`` grid of encoder vectors to their nearest codewords
(eqs. 1-4, :class:`semcom.models.vqvae.CodebookVQVAE`) and sends each index as its natural ``n = log2 J``-bit
binary label, most significant bit first, the labelling under which eq. (17) and the channel-aware loss (22)
were trained. The receiver maps whatever labels arrive back to codewords and decodes them; it has no other
information about the frame.

**Stream (version 3).** A 24-byte header, then the labels, then a CRC-32 (the file; over the air the labels
alone travel, :class:`IndexAirLink`)::

    magic "SCM" | version 3 | variant id (1) | log2 J (1) | weights fingerprint (4) | frames (4, big endian)
    | height (2) | width (2) | reserved 0 (2) | CRC-32 of the bytes before it (4)
    | labels: frames * (H/8) * (W/8) * log2 J bits, packed MSB first, zero-padded to a byte
    | CRC-32 of the labels (4)

The payload's length follows from the header, so a stream is refused (one line) when it is longer or shorter
than its header says, when a CRC fails, or when the receiver's weights are not the ones the header names.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from semcom.errors import ConfigError, WeightsError, WireFormatError
from semcom.frames import to_tensor, to_uint8
from semcom.models.vqvae import VARIANTS, CodebookVQVAE, load_vqvae, shipped_vqvae_path
from semcom.models.weights import fingerprint
from semcom.quantization.codebook import binary_labels, index_bits
from semcom.schemes import MAGIC

__all__ = ["VERSION", "VARIANT_IDS", "CodebookHeader", "CodebookReceiver", "CodebookTransmitter", "IndexAirLink",
           "bits_to_indices", "indices_to_bits", "load_variant", "parse_header"]

VERSION = 3
#: Wire ids of the paper's four ablation variants.
VARIANT_IDS = {name: i for i, name in enumerate(VARIANTS)}
_HEADER = struct.Struct(">3sBBB4sIHHH")
HEADER_SIZE = _HEADER.size + 4
#: The most frames, and pixels over all frames, a stream may declare (its payload must then be exactly as long as
#: the header implies, so a receiver's work is also linear in the file's size).
MAX_FRAMES = 1 << 16
MAX_PIXELS = 1 << 28


def load_variant(variant: str, weights: str | Path | None = None) -> CodebookVQVAE:
    """The shipped weights of ``variant`` (or the file ``weights``, which must be of that variant)."""
    path = Path(weights) if weights is not None else shipped_vqvae_path(variant)
    model = load_vqvae(path)
    if model.hparams["variant"] != variant:
        raise WeightsError(f"weights {path} are variant {model.hparams['variant']!r}, not {variant!r}")
    return model


def indices_to_bits(indices: torch.Tensor | np.ndarray, J: int) -> np.ndarray:
    """Indices (any shape, ``0..J-1``) to their ``log2 J``-bit natural binary labels, MSB first, flattened in
    C order: a ``uint8`` array of ``indices.size * log2 J`` bits."""
    idx = torch.as_tensor(np.asarray(indices)).reshape(-1).long()
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= J):
        raise ConfigError(f"invalid indices: values must be in 0..{J - 1}")
    return binary_labels(J)[idx].reshape(-1).numpy().astype(np.uint8)


def bits_to_indices(bits: np.ndarray, J: int) -> np.ndarray:
    """The inverse of :func:`indices_to_bits`: ``k * log2 J`` bits to ``k`` indices (int64); any bits decode."""
    n = index_bits(J)
    bits = np.asarray(bits, dtype=np.int64).reshape(-1)
    if bits.size % n:
        raise ConfigError(f"invalid bits: {bits.size} is not a multiple of log2 J = {n}")
    weights = 1 << np.arange(n - 1, -1, -1, dtype=np.int64)
    return bits.reshape(-1, n) @ weights


@dataclass(frozen=True)
class CodebookHeader:
    """What a version-3 header says: variant, ``J``, weights fingerprint, frame count and size."""

    variant: str
    J: int
    weights_id: bytes
    frames: int
    height: int
    width: int

    @property
    def indices_per_frame(self) -> int:
        return (self.height // 8) * (self.width // 8)

    @property
    def payload_bytes(self) -> int:
        return -(-self.frames * self.indices_per_frame * index_bits(self.J) // 8)

    def pack(self) -> bytes:
        body = _HEADER.pack(MAGIC, VERSION, VARIANT_IDS[self.variant], index_bits(self.J), self.weights_id,
                            self.frames, self.height, self.width, 0)
        return body + struct.pack(">I", zlib.crc32(body))


def parse_header(data: bytes) -> CodebookHeader:
    """The header of a version-3 stream, checked field by field (one-line :class:`WireFormatError`)."""
    if len(data) < HEADER_SIZE:
        raise WireFormatError(f"truncated codebook stream: {len(data)} bytes, the header alone is {HEADER_SIZE}")
    body, (crc,) = data[:_HEADER.size], struct.unpack(">I", data[_HEADER.size:HEADER_SIZE])
    if zlib.crc32(body) != crc:
        raise WireFormatError("codebook stream header fails its CRC-32")
    magic, version, vid, nbits, wid, frames, h, w, reserved = _HEADER.unpack(body)
    if magic != MAGIC or version != VERSION:
        raise WireFormatError(f"not a codebook stream (magic {magic!r}, version {version})")
    names = list(VARIANTS)
    if vid >= len(names):
        raise WireFormatError(f"codebook stream names unknown variant id {vid}")
    if not 4 <= nbits <= 12:
        raise WireFormatError(f"codebook stream declares log2 J = {nbits}, outside 4..12")
    if not 1 <= frames <= MAX_FRAMES:
        raise WireFormatError(f"codebook stream declares {frames} frames, outside 1..{MAX_FRAMES}")
    if h < 8 or w < 8 or h % 8 or w % 8 or frames * h * w > MAX_PIXELS:
        raise WireFormatError(f"codebook stream declares {frames} frames of {h}x{w}: sides must be multiples of "
                              f"8, at most {MAX_PIXELS} pixels in all")
    if reserved:
        raise WireFormatError(f"codebook stream has reserved field {reserved}, expected 0")
    return CodebookHeader(names[vid], 1 << nbits, wid, frames, h, w)


class CodebookTransmitter:
    """Frames to a version-3 stream (or to index grids for the air): ``encode(frames)`` takes ``uint8``
    ``[T, H, W, 3]`` or float ``[T, 3, H, W]`` in [0, 1], ``H`` and ``W`` multiples of 8."""

    def __init__(self, model: CodebookVQVAE):
        self.model = model
        self.weights_id = fingerprint(model)

    def indices(self, frames) -> torch.Tensor:
        x = frames if isinstance(frames, torch.Tensor) and frames.is_floating_point() else to_tensor(frames)
        if x.dim() != 4 or x.shape[-2] % 8 or x.shape[-1] % 8:
            raise ConfigError(f"invalid frames: sides must be multiples of 8, got {tuple(x.shape)}")
        return torch.cat([self.model.indices(x[i:i + 64]) for i in range(0, len(x), 64)])

    def encode(self, frames) -> bytes:
        return self.encode_indices(self.indices(frames))

    def encode_indices(self, idx: torch.Tensor) -> bytes:
        """The stream of index grids ``[T, h, w]`` (from :meth:`indices`)."""
        t, h, w = idx.shape
        header = CodebookHeader(self.model.hparams["variant"], self.model.J, self.weights_id, t, 8 * h, 8 * w)
        payload = np.packbits(indices_to_bits(idx, self.model.J)).tobytes()
        return header.pack() + payload + struct.pack(">I", zlib.crc32(payload))


class CodebookReceiver:
    """A version-3 stream (or index grids from the air) to frames, ``uint8`` ``[T, H, W, 3]``."""

    def __init__(self, model: CodebookVQVAE):
        self.model = model
        self.weights_id = fingerprint(model)

    def frames(self, indices: torch.Tensor) -> np.ndarray:
        """Frames from index grids ``[T, h, w]`` (any values in ``0..J-1``: what arrived)."""
        idx = torch.as_tensor(indices)
        return to_uint8(torch.cat([self.model.decode_indices(idx[i:i + 64]) for i in range(0, len(idx), 64)]))

    def read(self, data: bytes) -> tuple[CodebookHeader, torch.Tensor]:
        """The header and index grids of a stream, after every check."""
        header = parse_header(data)
        if header.variant != self.model.hparams["variant"] or header.J != self.model.J:
            raise WeightsError(f"stream is for {header.variant} J={header.J}; this receiver holds "
                               f"{self.model.hparams['variant']} J={self.model.J}")
        if header.weights_id != self.weights_id:
            raise WeightsError(f"stream was made with weights {header.weights_id.hex()}, this receiver holds "
                               f"{self.weights_id.hex()}: decoding would show wrong frames")
        need = HEADER_SIZE + header.payload_bytes + 4
        if len(data) != need:
            raise WireFormatError(f"codebook stream is {len(data)} bytes, its header implies {need}")
        payload = data[HEADER_SIZE:need - 4]
        if zlib.crc32(payload) != struct.unpack(">I", data[need - 4:])[0]:
            raise WireFormatError("codebook stream payload fails its CRC-32")
        n = header.frames * header.indices_per_frame * index_bits(header.J)
        bits = np.unpackbits(np.frombuffer(payload, dtype=np.uint8))[:n]
        idx = bits_to_indices(bits, header.J).reshape(header.frames, header.height // 8, header.width // 8)
        return header, torch.from_numpy(idx)

    def decode(self, data: bytes) -> np.ndarray:
        _, idx = self.read(data)
        return self.frames(idx)


class IndexAirLink:
    """Index grids over the air: labels through a :class:`semcom.phy.link.BitPipe` (no CRC, no erasures), back
    to whatever indices arrive. ``phy`` holds the :class:`~semcom.phy.config.PhyConfig` fields (defaults: 64-QAM,
    Rayleigh fading with a new gain every symbol, as the paper's flip probability assumes, uncoded)."""

    def __init__(self, J: int, snr_db: float = 10.0, seed: int = 0, **phy):
        from semcom.phy.link import BitPipe

        phy = {"modulation": "qam64", "channel": "rayleigh", "code": "none", "coherence_symbols": 1} | phy
        self.J = J
        self.pipe = BitPipe(snr_db=snr_db, seed=seed, **phy)

    def send(self, indices: torch.Tensor, snr_db: float | None = None) -> tuple[torch.Tensor, int]:
        """The received index grids (same shape) and the channel uses spent."""
        bits = indices_to_bits(indices, self.J)
        received = bits_to_indices(self.pipe.send(bits, snr_db), self.J)
        return torch.from_numpy(received).reshape(indices.shape), self.pipe.channel_uses(bits.size)
