"""The memory link over a spatial codec of the zoo: whole-frame hits, per-tile hits and conditional misses.

Both endpoints hold a :class:`~semcom.memory.PrototypeMemory` whose prototypes are decoded latent grids
``y^`` (``c x H/8 x W/8``, integers in the model's gain space, flattened), so the two copies are equal
bit for bit by construction. Per frame ``t`` the transmitter computes ``y = g_a(x) * gain[q]`` and tries
as references no prototype (intra) and the ``REFERENCES`` stored prototypes nearest to ``y`` in squared
distance. Against a prototype ``j`` it decides per tile of ``tile x tile`` latent positions (``16 x 16``
pixels by default) whether the prototype already explains the frame there: a tile *hits* when
``mean (y - y^_j)^2 <= (1 - tau) (mean y^2 + 1)`` over the tile, a relative-error form of the Hopfield
paper's similarity test, eq. (1), where the ``+ 1`` (one quantisation step squared) lets tiles that
round to almost nothing hit at low qualities. Of intra and, for each of those prototypes, coding with the
tiles that pass the test hitting or with none hitting, it keeps the way that minimises the rate–distortion
cost the model was trained on, ``bits + lambda_q 255^2 MSE H W`` (the transmitter decodes every candidate:
it knows what the receiver will see). Then:

* every tile hits — a **hit**: the message is the prototype's recency rank; both ends decode
  ``y^_j*`` and mark the slot used (the Hopfield paper's index instead of a latent);
* some tiles miss — an **inter** frame: the residual ``r = y - y^_j*`` is set to zero on the tiles that
  hit and coded *given the prototype* (:class:`~semcom.models.hyperprior.SpatialHyperprior`'s conditional
  coding: hyper-latent ``z^``, then ``r^`` under scales ``h_s(z^, y^_j*)``); both ends decode
  ``y^ = y^_j* + r^`` and store it;
* no reference — an **intra** frame: the same with ``y^_ref = 0``.

A stream (version 2) is a CRC-protected header naming the scheme, model, quality and weights, then one
range-coded payload (constriction) for all frames — the kind with adaptive counts, the reference as an
adaptive recency rank (:func:`semcom.link.coding.recency_rank`), ``z^`` and ``r^`` — then a CRC-32.
Its length is the bit count. ``FrameRecord.bits`` is each frame's information content under the
coder's models; the file's length is the truth it adds up to (within 1 % and the coder's final word).
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from semcom.config import Float32, FrameSide, FullPolicy, validated
from semcom.errors import ConfigError, WeightsError, WireFormatError
from semcom.frames import to_tensor, to_uint8
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
from semcom.models.entropy import clip_symbols
from semcom.models.weights import fingerprint
from semcom.models.zoo import entry, entry_by_wire_id
from semcom.schemes import MAGIC, code_clip

VERSION = 2
SCHEME_ID = 1
HIT, INTER, INTRA = 0, 1, 2
KINDS = ("hit", "inter", "intra")
#: How many stored prototypes, nearest first, the transmitter tries as the reference of a frame (beside intra).
REFERENCES = 2
#: The most frames, and frame pixels in all, a stream may declare. A range decoder cannot tell where its data
#: ends (a crafted stream of hits decodes for ever at almost no bits), so these bound a receiver's work, whatever
#: the payload: at most ``frames`` syntheses and ``2 frames`` range decodes of at most ``c H W / 64`` symbols,
#: output memory ``3 x frames x H x W`` bytes (<= 768 MiB), memory ``m_max x c H W / 64`` floats.
MAX_FRAMES = 1 << 16
MAX_PIXELS = 1 << 28
_HEADER = struct.Struct(">3sBBBBBHfBHHI4s")
HEADER_SIZE = _HEADER.size + 4
_POLICIES = ("none", "lru")
_INTRA_ONLY = 0x80  # flags bit 7: the memory is off, every frame intra


class CodecLinkConfig(BaseModel):
    """What both ends of the codec link share: model and quality, ``tau`` of the tile test, memory size
    ``m_max`` and its ``full_policy``, the tile side in latent positions, the frame size. ``inter=False``
    turns the memory off: every frame is intra coded and nothing is stored (the codec alone)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = "hyperprior"
    quality: int = Field(8, ge=1, le=64)
    tau: Float32 = Field(0.9, gt=0.0, lt=1.0)
    m_max: int = Field(64, ge=1, le=4096)
    full_policy: FullPolicy = "lru"
    tile: int = Field(2, ge=1, le=16)
    inter: bool = True
    height: FrameSide = Field(64, ge=16, le=4096)
    width: FrameSide = Field(64, ge=16, le=4096)



@dataclass(frozen=True)
class CodecHeader:
    """The stream header of the codec link (CRC-32 protected)."""

    config: CodecLinkConfig
    frames: int
    weights: bytes

    def to_bytes(self) -> bytes:
        c = self.config
        flags = _POLICIES.index(c.full_policy) | (0 if c.inter else _INTRA_ONLY)
        body = _HEADER.pack(MAGIC, VERSION, SCHEME_ID, entry(c.model).wire_id, c.quality, flags, c.m_max, c.tau,
                            c.tile, c.height, c.width, self.frames, self.weights)
        return body + zlib.crc32(body).to_bytes(4, "big")

    @classmethod
    def from_bytes(cls, data: bytes) -> CodecHeader:
        if len(data) < HEADER_SIZE:
            raise WireFormatError(f"truncated stream header: {len(data)} of {HEADER_SIZE} bytes")
        body = data[: _HEADER.size]
        if zlib.crc32(body).to_bytes(4, "big") != data[_HEADER.size : HEADER_SIZE]:
            raise WireFormatError("stream header is corrupted (CRC mismatch)")
        (magic, version, scheme, model_id, quality, policy, m_max, tau, tile, h, w, frames,
         weights) = _HEADER.unpack(body)
        if magic != MAGIC or version != VERSION or scheme != SCHEME_ID:
            raise WireFormatError(f"not a codec-link stream (version {version}, scheme {scheme})")
        inter = not policy & _INTRA_ONLY
        policy &= ~_INTRA_ONLY
        if policy >= len(_POLICIES):
            raise WireFormatError(f"stream header has unknown flags {policy:#04x}")
        if not 1 <= frames <= MAX_FRAMES:
            raise WireFormatError(f"stream declares {frames} frames, outside 1..{MAX_FRAMES}")
        if frames * h * w > MAX_PIXELS:
            raise WireFormatError(f"stream declares {frames} frames of {h}x{w}, more than {MAX_PIXELS} pixels")
        try:
            config = validated(CodecLinkConfig, model=entry_by_wire_id(model_id).name, quality=quality,
                               tau=tau, m_max=m_max, full_policy=_POLICIES[policy], tile=tile, inter=inter,
                               height=h, width=w)
        except ConfigError as exc:
            raise WireFormatError(f"stream header holds an invalid config: {exc}") from None
        return cls(config, frames, weights)


@dataclass(frozen=True)
class _Plan:
    """One way to code a frame: kind, reference slot and its recency rank, tile hits, bits, the decoded latent
    and, unless a hit, the symbols and scale indexes to send."""

    kind: int
    slot: int | None
    rank: int | None
    tile_hit: torch.Tensor
    bits: float
    y_hat: torch.Tensor
    z_sym: torch.Tensor | None = None
    r_sym: torch.Tensor | None = None
    idx: torch.Tensor | None = None


@dataclass(frozen=True)
class FrameRecord:
    """One frame at the transmitter: its kind, reference slot, tiles that hit, bits, memory size after."""

    t: int
    kind: str
    slot: int | None
    tiles_hit: int
    tiles: int
    bits: float
    memory_size: int

    @property
    def hit(self) -> bool:
        return self.kind == "hit"


def link_stats(records: list[FrameRecord]) -> dict[str, float]:
    """The shares of hit, inter and intra frames and of tiles that hit, over a clip's records."""
    kinds = [r.kind for r in records]
    return {f"{k}_rate": kinds.count(k) / len(kinds) for k in KINDS} | {
        "tile_hit_rate": sum(r.tiles_hit for r in records) / sum(r.tiles for r in records)}


class _CodecEndpoint:
    """The state both ends share and the one place it changes (:meth:`_apply`)."""

    def __init__(self, config: CodecLinkConfig, model) -> None:
        if entry(config.model).kind != "spatial":
            raise ConfigError(f"model {config.model} has no latent grid; the codec link takes a spatial model")
        if config.quality > model.qualities:
            raise ConfigError(f"invalid quality={config.quality} for model {config.model}: "
                              f"choose from 1..{model.qualities}")
        self.config, self.model = config, model
        c = model.hparams["c"]
        self.shape = (1, c, config.height // 8, config.width // 8)
        self.z_shape = (1, model.hparams["cz"], config.height // 16, config.width // 16)
        self.memory = PrototypeMemory(math.prod(self.shape), config.m_max, config.full_policy)
        self.q = torch.tensor([config.quality - 1])
        self.kind_counts = np.ones(3)
        self.rank_counts = np.ones(0)
        self.t = 0

    def reference(self, slot: int | None) -> torch.Tensor:
        if slot is None:
            return torch.zeros(self.shape)
        return self.memory.prototypes[slot].view(self.shape)

    def rank_counts_now(self) -> np.ndarray:
        """The adaptive counts of the recency ranks ``0 .. M-1`` (grown with the memory)."""
        self.rank_counts = grown(self.rank_counts, self.memory.size)
        return self.rank_counts[: self.memory.size]

    def _apply(self, kind: int, slot: int | None, rank: int | None, y_hat: torch.Tensor) -> torch.Tensor:
        """Both ends: count the kind and rank, then touch (hit) or store (inter, intra) ``y^``."""
        self.kind_counts[kind] += 1
        if rank is not None:
            self.rank_counts_now()[rank] += 1
        if kind == HIT:
            self.memory.touch(slot, self.t)
        elif self.config.inter:
            self.memory.write(y_hat.flatten(), self.t)
        self.t += 1
        return y_hat

    @torch.no_grad()
    def synthesise(self, y_hat: torch.Tensor) -> np.ndarray:
        """``x^ = g_s(y^)`` as a uint8 frame (H, W, 3)."""
        return to_uint8(self.model.synthesis(y_hat, self.q))[0]

    def _scale_indexes(self, z_sym: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        return self.model.gaussian.indexes(self.model.scales(z_sym, ref))


class CodecTransmitter(_CodecEndpoint):
    """Frames in, one range-coded payload out (:meth:`send`, then :meth:`finish`)."""

    def __init__(self, config: CodecLinkConfig, model) -> None:
        import constriction

        super().__init__(config, model)
        self.rd_lambda = model.rd_lambda(config.quality)
        self.encoder = constriction.stream.queue.RangeEncoder()
        self.records: list[FrameRecord] = []
        self.decoded: list[np.ndarray] = []

    def header(self, frames: int) -> bytes:
        return CodecHeader(self.config, frames, fingerprint(self.model)).to_bytes()

    def _candidates(self, y: torch.Tensor) -> list[tuple[int | None, torch.Tensor]]:
        """Ways worth trying, each a reference and its per-tile hit mask (True where the tile hits): no
        reference (intra), and each of the ``REFERENCES`` stored prototypes nearest to ``y`` with the tiles
        that pass the tau test hitting, and with none hitting."""
        tiles = self._tile_energy(y)
        none = torch.zeros_like(tiles, dtype=torch.bool)
        out = [(None, none)]
        if self.memory.size == 0 or not self.config.inter:
            return out
        d = (self.memory.prototypes - y.flatten()).pow(2).sum(1)
        for j in torch.argsort(d)[:REFERENCES].tolist():
            hit = self._tile_energy(y - self.reference(j)) <= (1.0 - self.config.tau) * (tiles + 1.0)
            out += [(j, hit), (j, none)] if bool(hit.any()) else [(j, none)]
        return out

    def _tile_energy(self, v: torch.Tensor) -> torch.Tensor:
        """Mean square per latent element over each tile, (H/8/tile, W/8/tile)."""
        k = self.config.tile
        return torch.nn.functional.avg_pool2d(v.pow(2).mean(1, keepdim=True), k, k, ceil_mode=True)[0, 0]

    def _plan(self, y: torch.Tensor, slot: int | None, tile_hit: torch.Tensor) -> _Plan:
        """What coding the frame against ``slot`` would send, and its information content in bits."""
        kind = INTRA if slot is None else (HIT if bool(tile_hit.all()) else INTER)
        rank = recency_rank(self.memory, slot) if slot is not None else None
        info = information(self.kind_counts, np.array([kind]))
        if rank is not None and self.memory.size > 1:
            info += information(self.rank_counts_now(), np.array([rank]))
        ref = self.reference(slot)
        if kind == HIT:
            return _Plan(kind, slot, rank, tile_hit, info, ref)
        k = self.config.tile
        keep = (~tile_hit).repeat_interleave(k, 0).repeat_interleave(k, 1)[: self.shape[2], : self.shape[3]]
        r = (y - ref) * keep
        z_sym = clip_symbols(self.model.hyper_analysis(r, ref))
        r_sym = clip_symbols(r)
        idx = self._scale_indexes(z_sym, ref)
        info += float(-torch.log2(self.model.z_prior.likelihood(z_sym)).sum())
        info += float(-torch.log2(self.model.gaussian.likelihood(r_sym, self.model.gaussian.table[idx])).sum())
        return _Plan(kind, slot, rank, tile_hit, info, ref + r_sym, z_sym, r_sym, idx)

    def _cost(self, plan: _Plan, x: torch.Tensor) -> tuple[float, np.ndarray]:
        """The Lagrangian the model was trained on, ``bits + lambda_q 255^2 SSE / 3`` (``SSE`` over the
        frame's values in [0, 1]; CompressAI's ``R + lambda 255^2 MSE`` per image), and the decoded frame."""
        out = self.synthesise(plan.y_hat)
        sse = float(((torch.from_numpy(out).float() / 255.0).permute(2, 0, 1) - x[0]).pow(2).sum())
        return plan.bits + self.rd_lambda * 255.0**2 * sse / 3.0, out

    @torch.no_grad()
    def send(self, frame: np.ndarray) -> np.ndarray:
        """Code one uint8 frame (H, W, 3) the way that minimises the rate–distortion cost (:meth:`_cost`)
        among the candidates (:meth:`_candidates`); returns what the receiver will decode."""
        x = to_tensor(frame)
        if x.shape[-2:] != (self.config.height, self.config.width):
            raise ConfigError(f"frame of {x.shape[-2]}x{x.shape[-1]}, the link is {self.config.height}x"
                              f"{self.config.width}")
        y = self.model.analysis(x, self.q)
        plans = [self._plan(y, slot, hit) for slot, hit in self._candidates(y)]
        costs = [self._cost(p, x) for p in plans]
        best = min(range(len(plans)), key=lambda i: costs[i][0])
        plan, out = plans[best], costs[best][1]
        self.encoder.encode(np.array([plan.kind], np.int32), categorical(self.kind_counts))
        if plan.rank is not None and self.memory.size > 1:  # with one stored prototype the reference is implied
            self.encoder.encode(np.array([plan.rank], np.int32), categorical(self.rank_counts_now()))
        if plan.kind != HIT:
            self.model.z_prior.encode(plan.z_sym, self.encoder)
            self.model.gaussian.encode(plan.r_sym, plan.idx, self.encoder)
        self._apply(plan.kind, plan.slot, plan.rank, plan.y_hat.clone())
        self.records.append(FrameRecord(self.t - 1, KINDS[plan.kind], plan.slot, int(plan.tile_hit.sum()),
                                        plan.tile_hit.numel(), plan.bits, self.memory.size))
        self.decoded.append(out)
        return out

    def finish(self) -> bytes:
        """The stream file: header, the payload, its CRC-32."""
        from semcom.link.wire import pack_stream

        payload = self.encoder.get_compressed().astype(">u4").tobytes()
        return pack_stream(self.header(self.t), payload)


class CodecReceiver(_CodecEndpoint):
    """A stream file in, frames out; refuses a stream made with other weights."""

    @classmethod
    def open(cls, data: bytes, model) -> tuple[CodecReceiver, CodecHeader]:
        header = CodecHeader.from_bytes(data)
        fp = fingerprint(model)
        if header.weights != fp:
            raise WeightsError(f"stream was encoded with {header.config.model} weights {header.weights.hex()}, "
                               f"this receiver has {fp.hex()}")
        return cls(header.config, model), header

    def frames(self, data: bytes, count: int):
        """Decode ``count`` frames from the stream ``data`` (header included); yields uint8 frames."""
        for y_hat in range_decoded(data, HEADER_SIZE, count, self._receive):
            yield self.synthesise(y_hat)

    @torch.no_grad()
    def _receive(self, decoder) -> torch.Tensor:
        kind = int(self._decode(decoder, categorical(self.kind_counts)))
        slot = rank = None
        if kind != INTRA:
            if self.memory.size == 0:  # an intra-only link never stores, so this covers it too
                raise WireFormatError(f"{KINDS[kind]} frame names a prototype of an empty memory")
            counts = self.rank_counts_now()
            rank = int(self._decode(decoder, categorical(counts))) if len(counts) > 1 else 0
            if rank >= len(counts):
                raise WireFormatError(f"reference rank {rank} outside a memory of {len(counts)}")
            slot = slot_of_rank(self.memory, rank)
        ref = self.reference(slot)
        if kind == HIT:
            y_hat = ref
        else:
            z_sym = self.model.z_prior.decode(self.z_shape, decoder)
            r_sym = self.model.gaussian.decode(self._scale_indexes(z_sym, ref), decoder)
            y_hat = ref + r_sym
        return self._apply(kind, slot, rank, y_hat.clone())

    @staticmethod
    def _decode(decoder, model) -> int:
        return int(decode_symbols(decoder, model)[0])


def encode_clip(frames: np.ndarray, config: CodecLinkConfig, model) -> tuple[bytes, CodecTransmitter]:
    """Code a clip (T, H, W, 3) uint8; returns the stream file and the transmitter (records, decoded)."""
    return code_clip(CodecTransmitter(config, model), frames, MAX_FRAMES)


def decode_stream(data: bytes, model) -> tuple[np.ndarray, CodecReceiver]:
    """Decode a whole stream file; returns the frames (T, H, W, 3) and the receiver."""
    rx, header = CodecReceiver.open(data, model)
    return np.stack(list(rx.frames(data, header.frames))), rx
