"""The memory link over the codebook paper's token grid (issue 10, item 6): an index instead of tokens.

Both endpoints hold a :class:`~semcom.memory.PrototypeMemory` of token grids (each a ``H/8 x W/8`` grid of
codeword indices of a :class:`~semcom.models.vqvae.CodebookVQVAE`, stored flattened), equal bit for bit by
construction. Per frame the transmitter quantises the frame to its token grid ``k`` and takes as reference
the stored grid with the most tokens equal to ``k`` (ties: the most recently used). A tile of
``tile x tile`` tokens (16 x 16 pixels by default) *hits* when at least a fraction ``tau`` of its tokens equal
the reference's; a hitting tile is shown from the reference, a missing one carries its tokens. With the
default ``tau = 1`` a tile hits only when all its tokens agree, so the receiver shows exactly what the
codebook scheme without memory would (the memory saves bits, never fidelity); ``tau < 1`` also reuses
tiles that differ in a few tokens.

* every tile hits: a **hit**, the message is the reference's recency rank; both ends touch the slot;
* some tiles hit: **inter**, the rank, the tile mask and the tokens of the missing tiles;
* no tile hits, or the memory is empty: **intra**, every token.

Both ends store what an inter or intra frame decodes to. Everything is range coded (constriction) with
adaptive counts both ends keep in step: the kind, the rank (:func:`semcom.link.coding.recency_rank`), each
tile's hit flag, and the tokens (one categorical over the ``J`` codewords).

**Stream (version 4).** A 26-byte header (the version-3 fields but the reserved one, then ``tau`` as float32,
``m_max``, the tile side and the full policy) with its CRC-32, the range-coded payload in 32-bit words, and
a CRC-32 of the payload (:func:`semcom.link.wire.pack_stream`). A receiver decodes exactly the declared
frames, each bounded by ``(H/8)(W/8)`` tokens, then requires the payload to be exhausted.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from semcom.config import FrameSide, FullPolicy, validated
from semcom.errors import ConfigError, WeightsError, WireFormatError
from semcom.link.coding import (
    categorical,
    decode_symbols,
    grown,
    information,
    range_decoded,
    recency_rank,
    slot_of_rank,
)
from semcom.memory import PrototypeMemory
from semcom.models.vqvae import VARIANT_PATTERN
from semcom.models.weights import fingerprint
from semcom.schemes import MAGIC, code_clip
from semcom.schemes.codebook import VARIANT_IDS, CodebookReceiver, CodebookTransmitter

__all__ = ["VERSION", "TokenHeader", "TokenLinkConfig", "TokenReceiver", "TokenTransmitter", "decode_stream",
           "encode_clip"]

VERSION = 4
HIT, INTER, INTRA = 0, 1, 2
KINDS = ("hit", "inter", "intra")
_HEADER = struct.Struct(">3sBBB4sIHHfHBB")
HEADER_SIZE = _HEADER.size + 4
#: The most frames a stream may declare, and pixels over all its frames (as version 2): a receiver's work is at
#: most ``frames`` range decodes of at most ``(H/8)(W/8)`` tokens and memory writes, plus one synthesis per
#: *distinct* grid shown (a run of hits costs one), and its output ``3 frames H W`` bytes (<= 768 MiB).
MAX_FRAMES = 1 << 16
MAX_PIXELS = 1 << 28
_POLICIES = ("none", "lru")


class TokenLinkConfig(BaseModel):
    """What both ends share: the variant, ``tau`` of the tile test in (0, 1], the memory size ``m_max`` and
    its ``full_policy``, the tile side in tokens, the frame size (multiples of 8)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    variant: str = Field("proposed", pattern=VARIANT_PATTERN)
    tau: float = Field(1.0, gt=0.0, le=1.0)
    m_max: int = Field(64, ge=1, le=4096)
    full_policy: FullPolicy = "lru"
    tile: int = Field(2, ge=1, le=16)
    height: FrameSide = Field(64, ge=16, le=4096)
    width: FrameSide = Field(64, ge=16, le=4096)


@dataclass(frozen=True)
class TokenHeader:
    config: TokenLinkConfig
    J: int
    weights: bytes
    frames: int

    def to_bytes(self) -> bytes:
        c = self.config
        body = _HEADER.pack(MAGIC, VERSION, VARIANT_IDS[c.variant], int(math.log2(self.J)), self.weights,
                            self.frames, c.height, c.width, c.tau, c.m_max, c.tile, _POLICIES.index(c.full_policy))
        return body + struct.pack(">I", zlib.crc32(body))

    @classmethod
    def from_bytes(cls, data: bytes) -> TokenHeader:
        if len(data) < HEADER_SIZE:
            raise WireFormatError(f"truncated token-link stream: {len(data)} bytes, the header is {HEADER_SIZE}")
        body = data[:_HEADER.size]
        if struct.pack(">I", zlib.crc32(body)) != data[_HEADER.size:HEADER_SIZE]:
            raise WireFormatError("token-link stream header fails its CRC-32")
        magic, version, vid, nbits, weights, frames, h, w, tau, m_max, tile, policy = _HEADER.unpack(body)
        if magic != MAGIC or version != VERSION:
            raise WireFormatError(f"not a token-link stream (magic {magic!r}, version {version})")
        names = list(VARIANT_IDS)
        if vid >= len(names) or policy >= len(_POLICIES) or not 4 <= nbits <= 12:
            raise WireFormatError(f"token-link stream names variant {vid}, policy {policy}, log2 J {nbits}: "
                                  "not all are known")
        if not 1 <= frames <= MAX_FRAMES or frames * h * w > MAX_PIXELS:
            raise WireFormatError(f"token-link stream declares {frames} frames of {h}x{w}: outside 1.."
                                  f"{MAX_FRAMES} frames of at most {MAX_PIXELS} pixels in all")
        try:
            cfg = validated(TokenLinkConfig, variant=names[vid], tau=tau, m_max=m_max, full_policy=_POLICIES[policy],
                            tile=tile, height=h, width=w)
        except ConfigError as exc:
            raise WireFormatError(f"token-link stream header holds an invalid config: {exc}") from None
        return cls(cfg, 1 << nbits, weights, frames)


@dataclass(frozen=True)
class TokenRecord:
    """One frame at the transmitter: kind, reference slot, tiles that hit, information content, memory size."""

    t: int
    kind: str
    slot: int | None
    tiles_hit: int
    tiles: int
    bits: float
    memory_size: int


class _TokenEndpoint:
    """The state both ends keep in step and the one place it changes (:meth:`_apply`)."""

    def __init__(self, config: TokenLinkConfig, model) -> None:
        if model.hparams["variant"] != config.variant:
            raise WeightsError(f"the link is {config.variant}, the weights are {model.hparams['variant']}")
        if config.height % 8 or config.width % 8:
            raise ConfigError(f"invalid frame size {config.height}x{config.width}: sides must be multiples of 8")
        self.config, self.model, self.J = config, model, model.J
        self.grid = (config.height // 8, config.width // 8)
        k = config.tile
        self.tiles = (math.ceil(self.grid[0] / k), math.ceil(self.grid[1] / k))
        self.memory = PrototypeMemory(self.grid[0] * self.grid[1], config.m_max, config.full_policy)
        self.kind_counts, self.rank_counts = np.ones(3), np.ones(0)
        self.flag_counts, self.token_counts = np.ones(2), np.ones(self.J)
        self.t = 0

    def tile_map(self, mask: torch.Tensor) -> torch.Tensor:
        """A per-tile boolean mask ``tiles`` to the token grid."""
        k = self.config.tile
        return mask.repeat_interleave(k, 0).repeat_interleave(k, 1)[: self.grid[0], : self.grid[1]]

    def reference(self, slot: int) -> torch.Tensor:
        return self.memory.prototypes[slot].view(self.grid).long()

    def ranks(self) -> np.ndarray:
        self.rank_counts = grown(self.rank_counts, self.memory.size)
        return self.rank_counts[: self.memory.size]

    def _apply(self, kind: int, slot: int | None, rank: int | None, hit: torch.Tensor | None,
               tokens: torch.Tensor) -> torch.Tensor:
        """Both ends: count what was sent, then touch (hit) or store (inter, intra) the grid shown."""
        self.kind_counts[kind] += 1
        if rank is not None:
            self.ranks()[rank] += 1
        if kind == INTER:
            self.flag_counts += np.bincount(hit.flatten().long().numpy(), minlength=2)
        if kind == HIT:
            self.memory.touch(slot, self.t)
        else:
            self.memory.write(tokens.flatten().float(), self.t)
        self.t += 1
        return tokens


class TokenTransmitter(_TokenEndpoint):
    """Frames in, one range-coded payload out (:meth:`send`, then :meth:`finish`)."""

    def __init__(self, config: TokenLinkConfig, model) -> None:
        import constriction

        super().__init__(config, model)
        self.quantiser = CodebookTransmitter(model)
        self.encoder = constriction.stream.queue.RangeEncoder()
        self.records: list[TokenRecord] = []
        self.shown: list[torch.Tensor] = []

    def _choose(self, k: torch.Tensor) -> tuple[int, int | None, torch.Tensor]:
        """Kind, reference slot and per-tile hit mask of the grid ``k`` (module docstring)."""
        none = torch.zeros(self.tiles, dtype=torch.bool)
        if self.memory.size == 0:
            return INTRA, None, none
        agree = (self.memory.prototypes.long() == k.flatten()).sum(1).numpy()
        used = self.memory.last_used
        slot = int(np.lexsort((-used, -agree))[0])  # most agreement, then most recently used
        equal = (self.reference(slot) == k).float()[None, None]
        share = torch.nn.functional.avg_pool2d(equal, self.config.tile, self.config.tile, ceil_mode=True)[0, 0]
        hit = share >= self.config.tau - 1e-6
        kind = HIT if bool(hit.all()) else (INTER if bool(hit.any()) else INTRA)
        return kind, (None if kind == INTRA else slot), (none if kind == INTRA else hit)

    @torch.no_grad()
    def send(self, frame) -> torch.Tensor:
        """Code one frame (uint8 ``H x W x 3``); returns the token grid the receiver will show."""
        k = self.quantiser.indices(frame[None] if np.ndim(frame) == 3 else frame)[0]
        if tuple(k.shape) != self.grid:
            raise ConfigError(f"frame gives a {tuple(k.shape)} token grid, the link's is {self.grid}")
        kind, slot, hit = self._choose(k)
        rank = recency_rank(self.memory, slot) if slot is not None else None
        bits = information(self.kind_counts, np.array([kind]))
        self.encoder.encode(np.array([kind], np.int32), categorical(self.kind_counts))
        if rank is not None and self.memory.size > 1:
            bits += information(self.ranks(), np.array([rank]))
            self.encoder.encode(np.array([rank], np.int32), categorical(self.ranks()))
        if kind == INTER:
            flags = hit.flatten().long().numpy().astype(np.int32)
            bits += information(self.flag_counts, flags)
            self.encoder.encode(flags, categorical(self.flag_counts))
        shown = k.clone()
        if kind != INTRA:
            keep = self.tile_map(hit)
            shown[keep] = self.reference(slot)[keep]
        if kind != HIT:
            send = k[~self.tile_map(hit)].numpy().astype(np.int32)
            bits += information(self.token_counts, send)
            self.encoder.encode(send, categorical(self.token_counts))
            self.token_counts += np.bincount(send, minlength=self.J)
        self._apply(kind, slot, rank, hit, shown)
        self.records.append(TokenRecord(self.t - 1, KINDS[kind], slot, int(hit.sum()), hit.numel(), bits,
                                        self.memory.size))
        self.shown.append(shown)
        return shown

    def finish(self) -> bytes:
        from semcom.link.wire import pack_stream

        header = TokenHeader(self.config, self.J, fingerprint(self.model), self.t).to_bytes()
        return pack_stream(header, self.encoder.get_compressed().astype(">u4").tobytes())


class TokenReceiver(_TokenEndpoint):
    """A version-4 stream in, token grids (and frames) out; refuses other weights."""

    @classmethod
    def open(cls, data: bytes, model) -> tuple[TokenReceiver, TokenHeader]:
        header = TokenHeader.from_bytes(data)
        if header.J != model.J or header.config.variant != model.hparams["variant"]:
            raise WeightsError(f"stream is for {header.config.variant} J={header.J}; the weights are "
                               f"{model.hparams['variant']} J={model.J}")
        if header.weights != fingerprint(model):
            raise WeightsError(f"stream was made with weights {header.weights.hex()}, this receiver holds "
                               f"{fingerprint(model).hex()}")
        return cls(header.config, model), header

    def grids(self, data: bytes, count: int):
        """Decode ``count`` token grids from the stream ``data``; yields ``[h, w]`` int64 grids."""
        return range_decoded(data, HEADER_SIZE, count, self._receive)

    def _receive(self, decoder) -> torch.Tensor:
        kind = int(decode_symbols(decoder, categorical(self.kind_counts), 1)[0])
        slot = rank = hit = None
        if kind != INTRA:
            if self.memory.size == 0:
                raise WireFormatError(f"{KINDS[kind]} frame names a prototype of an empty memory")
            counts = self.ranks()
            rank = int(decode_symbols(decoder, categorical(counts), 1)[0]) if len(counts) > 1 else 0
            slot = slot_of_rank(self.memory, rank)
        hit = torch.zeros(self.tiles, dtype=torch.bool)
        if kind == HIT:
            hit[:] = True
        elif kind == INTER:
            flags = decode_symbols(decoder, categorical(self.flag_counts), hit.numel())
            hit = torch.from_numpy(flags.astype(bool)).view(self.tiles)
        tokens = torch.zeros(self.grid, dtype=torch.long)
        keep = self.tile_map(hit)
        if kind != INTRA:
            tokens[keep] = self.reference(slot)[keep]
        if kind != HIT:
            got = decode_symbols(decoder, categorical(self.token_counts), int((~keep).sum()))
            tokens[~keep] = torch.from_numpy(got.astype(np.int64))
            self.token_counts += np.bincount(got, minlength=self.J)
        return self._apply(kind, slot, rank, hit, tokens)


def encode_clip(frames: np.ndarray, config: TokenLinkConfig, model) -> tuple[bytes, TokenTransmitter]:
    """Code a clip (T, H, W, 3) uint8; returns the stream file and the transmitter (records, shown grids)."""
    return code_clip(TokenTransmitter(config, model), frames, MAX_FRAMES)


def decode_stream(data: bytes, model) -> tuple[np.ndarray, TokenReceiver]:
    """Decode a whole version-4 stream; returns the frames (T, H, W, 3) uint8 and the receiver. Each distinct
    grid is synthesised once (hits repeat grids), so a long run of hits costs one synthesis."""
    rx, header = TokenReceiver.open(data, model)
    grids = torch.stack(list(rx.grids(data, header.frames)))
    distinct, inverse = torch.unique(grids.flatten(1), dim=0, return_inverse=True)
    frames = CodebookReceiver(model).frames(distinct.view(-1, *grids.shape[1:]))
    return frames[inverse.numpy()], rx
