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
* no reference — an **intra** frame: the same with ``y^_ref = 0``;
* a **motion** frame (unless ``motion=False``): the *anchor* (the last frame shown that was not itself predicted
  whole) warped by a global motion of ten integers (:mod:`semcom.prediction.global_motion`) predicts the frame;
  the tiles where the rate–distortion cost says so are coded, as a residual on zero or on the prediction's own
  latent ``g_a(x_pred)`` with scales ``h_s(z^, 0)``, and shown as ``g_s(base + r^)``. A motion frame stores and
  touches no prototype; one with a coded tile becomes the anchor. The anchor is pixels, and the receiver reads
  pixels only to draw frames, never to decode a symbol, so the two memories stay identical on any device;
* after every frame (unless ``refine=False``), its **pixel refinement** (:mod:`semcom.prediction.refinement`): a
  DCT-coded residual on the 8x8 blocks where it lowers the rate–distortion cost; a refined motion frame becomes
  the anchor;
* with ``bframes = B > 0``, **B-frames** (:mod:`semcom.prediction.bidirectional`): the transmitter holds back up
  to ``B`` frames, codes the frame after them first (the group's length, then that frame in any of the kinds
  above), then each frame held back, as a pyramid: predicted from the nearest frames coded around it (forward,
  backward or both, eq. (2) there) and refined with a refinement state of their own, a step ``sqrt 2`` coarser
  (:data:`~semcom.prediction.bidirectional.B_WEIGHT`). A group is taken where it
  costs less than coding its frames one by one. A B-frame touches no prototype and is never a motion frame's
  anchor; the receiver shows frames in display order.

A stream (version 2) is a CRC-protected header naming the scheme, model, quality and weights, then one
range-coded payload (constriction) for all frames in coding order — a group's size, the kind with adaptive
counts, the reference as an adaptive recency rank (:func:`semcom.link.coding.recency_rank`), a motion frame's
motion and tile flags, ``z^`` and ``r^``, a B-frame's mode and motions, refinements — then a CRC-32
(docs/wire-format.md).
Its length is the bit count. ``FrameRecord.bits`` is each frame's information content under the
coder's models; the file's length is the truth it adds up to (within 1 % and the coder's final word).
"""

from __future__ import annotations

import copy
import math
import struct
import zlib
from dataclasses import dataclass, replace

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

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
from semcom.prediction.bidirectional import (
    B_WEIGHT,
    BACKWARD,
    FORWARD,
    MODES,
    ScaledMotionCoder,
    bi_prediction,
    pyramid,
)
from semcom.prediction.global_motion import MotionCoder, dequantise, estimate, quantise, warp
from semcom.prediction.refinement import Refinement
from semcom.schemes import MAGIC, code_clip

VERSION = 2
SCHEME_ID = 1
HIT, INTER, INTRA, MOTION = 0, 1, 2, 3
KINDS = ("hit", "inter", "intra", "motion")
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
_MOTION = 0x40  # flags bit 6: motion frames (global motion compensation of the anchor) are allowed
_REFINE = 0x20  # flags bit 5: every frame carries a pixel refinement (semcom.prediction.refinement)
_BFRAMES = 0x0E  # flags bits 1-3: the most B-frames per group (semcom.prediction.bidirectional)


class CodecLinkConfig(BaseModel):
    """What both ends of the codec link share: model and quality, ``tau`` of the tile test, memory size
    ``m_max`` and its ``full_policy``, the tile side in latent positions, the frame size. ``inter=False``
    turns the memory off: every frame is intra coded and nothing is stored (the codec alone); ``motion=False``
    leaves out motion frames (global motion compensation of the last decoded frame, per tile); ``refine=False``
    leaves out the pixel refinement (a DCT residual per 8x8 block on top of every frame shown); ``bframes`` is the
    most frames held back and coded as B-frames between two others (0: every frame in order, no delay; B-frames
    take motion frames)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = "hyperprior"
    quality: int = Field(8, ge=1, le=64)
    tau: Float32 = Field(0.9, gt=0.0, lt=1.0)
    m_max: int = Field(64, ge=1, le=4096)
    full_policy: FullPolicy = "lru"
    tile: int = Field(2, ge=1, le=16)
    inter: bool = True
    motion: bool = True
    refine: bool = True
    bframes: int = Field(0, ge=0, le=7)
    height: FrameSide = Field(64, ge=16, le=4096)
    width: FrameSide = Field(64, ge=16, le=4096)

    @model_validator(mode="after")
    def _bframes_need_motion(self):
        if self.bframes and not (self.motion and self.inter):
            raise ValueError(f"bframes={self.bframes} needs motion frames (the memory and motion on)")
        return self


@dataclass(frozen=True)
class CodecHeader:
    """The stream header of the codec link (CRC-32 protected)."""

    config: CodecLinkConfig
    frames: int
    weights: bytes

    def to_bytes(self) -> bytes:
        c = self.config
        flags = (_POLICIES.index(c.full_policy) | (0 if c.inter else _INTRA_ONLY) | (_MOTION if c.motion else 0)
                 | (_REFINE if c.refine else 0) | (c.bframes << 1))
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
        inter, motion, refine = not policy & _INTRA_ONLY, bool(policy & _MOTION), bool(policy & _REFINE)
        bframes = (policy & _BFRAMES) >> 1
        policy &= ~(_INTRA_ONLY | _MOTION | _REFINE | _BFRAMES)
        if policy >= len(_POLICIES):
            raise WireFormatError(f"stream header has unknown flags {policy:#04x}")
        if not 1 <= frames <= MAX_FRAMES:
            raise WireFormatError(f"stream declares {frames} frames, outside 1..{MAX_FRAMES}")
        if frames * h * w > MAX_PIXELS:
            raise WireFormatError(f"stream declares {frames} frames of {h}x{w}, more than {MAX_PIXELS} pixels")
        try:
            config = validated(CodecLinkConfig, model=entry_by_wire_id(model_id).name, quality=quality,
                               tau=tau, m_max=m_max, full_policy=_POLICIES[policy], tile=tile, inter=inter,
                               motion=motion, refine=refine, bframes=bframes, height=h, width=w)
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
    r_bits: np.ndarray | None = None  # the information of r^ per latent position (H/8, W/8), bits


@dataclass(frozen=True)
class _MotionPlan:
    """A motion frame: the motion's errors (:class:`MotionCoder`), the tiles coded (the rest predicted), bits, the
    decoded frame and, if any tile is coded, ``z^``, and the symbols and scale indexes of ``r^`` on the coded tiles'
    positions."""

    errors: np.ndarray
    coded: np.ndarray
    bits: float
    out: np.ndarray
    z_sym: torch.Tensor | None = None
    r_sym: torch.Tensor | None = None
    idx: torch.Tensor | None = None
    conditional: bool = False


@dataclass(frozen=True)
class _Received:
    """What the receiver's bit path decoded of one frame: the latent to draw (a motion frame's coded tiles; zero
    elsewhere) and, for a motion frame, the motion's integers and the coded tiles."""

    y_hat: torch.Tensor
    k: np.ndarray | None = None
    coded: np.ndarray | None = None
    conditional: bool = False
    refine: np.ndarray | None = None  # the pixel refinement's symbols, when the link refines


@dataclass(frozen=True)
class _BiReceived:
    """What the receiver's bit path decoded of a B-frame: its position in the group and those of its references
    (:func:`~semcom.prediction.bidirectional.pyramid`), its mode, the motions (None where the mode does not use
    that reference) and its refinement's symbols."""

    at: tuple[int, int, int]
    mode: int
    ks: tuple[np.ndarray | None, np.ndarray | None]
    refine: np.ndarray | None = None


@dataclass(frozen=True)
class FrameRecord:
    """One frame at the transmitter: its display position ``t``, kind, reference slot, tiles that hit the memory,
    bits, memory size after, and tiles predicted by motion."""

    t: int
    kind: str
    slot: int | None
    tiles_hit: int
    tiles: int
    bits: float
    memory_size: int
    tiles_predicted: int = 0

    @property
    def hit(self) -> bool:
        return self.kind == "hit"


def link_stats(records: list[FrameRecord]) -> dict[str, float]:
    """The shares of hit, inter, intra and motion frames, of tiles that hit the memory and of tiles predicted by
    motion, over a clip's records."""
    kinds = [r.kind for r in records]
    tiles = sum(r.tiles for r in records)
    return {f"{k}_rate": kinds.count(k) / len(kinds) for k in (*KINDS, "bi")} | {
        "tile_hit_rate": sum(r.tiles_hit for r in records) / tiles,
        "tile_predicted_rate": sum(r.tiles_predicted for r in records) / tiles}


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
        self.rank_counts = np.ones(0)
        self.t = 0
        k = config.tile
        self.tiles = (-(-self.shape[2] // k), -(-self.shape[3] // k))
        # Motion frames (see :meth:`_apply_motion`): the anchor is the last frame shown that was not a pure motion
        # frame, as floats in [0, 1]; ``motion`` codes the global motion's integers, ``tile_counts`` the tile flags.
        self.motion = MotionCoder() if config.motion and config.inter else None
        self.kind_counts = np.ones(4 if self.motion is not None else 3)
        self.tile_counts = np.ones(2)
        self.base_counts = np.ones(2)  # a motion frame's coded tiles: 0 on zero (intra), 1 on the prediction
        self.anchor: torch.Tensor | None = None
        self.refinement = (Refinement(model.rd_lambda(config.quality) * 255.0**2 / 3.0, config.height, config.width)
                           if config.refine else None)
        # B-frames (semcom.prediction.bidirectional): group lengths, modes, motions and a refinement of their own;
        # ``last_shown`` is the last frame shown that was not a B-frame; ``group_refs`` the frames of the group coded
        # so far by position (0: the frame before it, ``group_size + 1``: its anchor frame).
        self.group_counts = np.ones(config.bframes + 1)
        self.mode_counts = np.ones(len(MODES))
        self.bi_motion = ScaledMotionCoder()
        self.bi_refinement = (Refinement(self.refinement.mu * B_WEIGHT, config.height, config.width)
                              if config.refine and config.bframes else None)
        self.last_shown: torch.Tensor | None = None
        self.group_size = 0
        self.group_refs: dict[int, torch.Tensor] = {}

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
        if self.motion is not None:
            self.motion.reset_anchor()
        self.t += 1
        return y_hat

    @staticmethod
    def _anchors(coded: np.ndarray, refine: np.ndarray | None) -> bool:
        """Whether a motion frame becomes the anchor: a tile of it was coded or a block refined (decided from
        decoded symbols alone). Keeping the old anchor under frames with at most a quarter or half of their blocks
        refined, or under every refined frame, was far worse: BD-rate against the link without refinement on
        24-frame clips, q2-q8, ``low_motion`` +58 / +59 / +59 % and ``heldout_pan_zoom`` +77 / +81 / +81 %, against
        +2 % and -14 % with this rule."""
        return bool(coded.any()) or (refine is not None and bool(refine.any()))

    def _shown(self, out: np.ndarray, new_anchor: bool = True) -> np.ndarray:
        """Both ends, once a frame is shown: ``out`` (uint8) becomes the anchor of motion frames, unless it was
        predicted whole from the anchor and not refined (then the anchor stays, so a still or panning scene is
        resampled once, not at every frame). Pixels never decide a bit: the anchor is read only to draw the next
        motion frame."""
        if self.motion is not None and new_anchor:
            self.anchor = to_tensor(out)
        if self.config.bframes:
            shown = to_tensor(out)
            self.group_refs = {0: self.last_shown, self.group_size + 1: shown}
            self.last_shown = shown
        return out

    def _group(self, n: int) -> None:
        """Both ends, once a group's size ``n`` is coded: count it."""
        self.group_counts[n] += 1
        self.group_size = n

    def _apply_bi(self, mode: int, motions: list[tuple[int, np.ndarray]]) -> None:
        """Both ends, after a B-frame: count its mode and its motions' errors (each with its distance)."""
        self.mode_counts[mode] += 1
        for distance, errors in motions:
            self.bi_motion.distance = distance
            self.bi_motion.update(errors)
        self.t += 1

    def bi_refs(self, at: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The two references of the B-frame at ``at = (i, lo, hi)`` of its group."""
        return self.group_refs[at[1]], self.group_refs[at[2]]

    def bi_show(self, received: _BiReceived, prediction: np.ndarray | None = None) -> np.ndarray:
        """Both ends: the B-frame drawn, eq. (2) of :mod:`semcom.prediction.bidirectional` (``prediction``, when the
        transmitter has drawn it already), refined; it becomes a reference of the group."""
        i = received.at[0]
        out = bi_prediction(received.mode, self.bi_refs(received.at), received.ks) if prediction is None else prediction
        out = out if received.refine is None else self.bi_refinement.apply(out, received.refine)
        self.group_refs[i] = to_tensor(out)
        return out

    def _apply_motion(self, errors: np.ndarray, coded: np.ndarray, conditional: bool,
                      new_anchor: bool) -> np.ndarray:
        """Both ends, after a motion frame: count its kind, tile flags, base and motion errors, step the motion
        state (``new_anchor``: a tile was coded or refined, so the frame shown becomes the anchor); returns the
        motion's integers ``k``."""
        k = self.motion.k_of(errors)
        self.kind_counts[MOTION] += 1
        self.tile_counts += np.bincount(coded.astype(np.int64).ravel(), minlength=2)
        if coded.any():
            self.base_counts[int(conditional)] += 1
        self.motion.update(errors, new_anchor=new_anchor)
        self.t += 1
        return k

    def extra_state(self) -> dict[str, np.ndarray]:
        """The state beside the memory and the counts, as arrays (a live sender's state file, a live receiver's
        rollback): the motion coder's counts, last motion and velocity, and the anchor (uint8 (H, W, 3); empty
        before the first frame), with motion frames; the refinement's counts and band statistics, with refinement."""
        state = {} if self.refinement is None else self.refinement.state()
        if self.motion is None:
            return state
        anchor = np.zeros((0,), np.uint8) if self.anchor is None else to_uint8(self.anchor)[0]
        return state | {"motion_counts": self.motion.counts.copy(), "motion_k_prev": self.motion.k_prev.copy(),
                        "motion_velocity": self.motion.velocity.copy(), "anchor": anchor}

    def load_extra_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`extra_state` saved; a missing or misshapen array is a one-line ConfigError, and then
        nothing changes."""
        motion = None if self.motion is None else self._checked_motion_state(state)
        if self.refinement is not None:
            self.refinement.load_state(state)
        if motion is not None:
            self.motion.counts, self.motion.k_prev, self.motion.velocity, self.anchor = motion

    def _checked_motion_state(self, state: dict[str, np.ndarray]) -> tuple:
        want = {"motion_counts": self.motion.counts.shape, "motion_k_prev": self.motion.k_prev.shape,
                "motion_velocity": self.motion.velocity.shape}
        for name, shape in want.items():
            if name not in state or np.shape(state[name]) != shape:
                raise ConfigError(f"invalid motion state: {name} missing or not of shape {shape}")
        anchor = np.asarray(state.get("anchor", np.zeros((0,), np.uint8)))
        frame = (self.config.height, self.config.width, 3)
        if anchor.size and (anchor.shape != frame or anchor.dtype != np.uint8):
            raise ConfigError(f"invalid motion state: anchor must be uint8 of shape {frame}")
        counts = np.array(state["motion_counts"], np.float64)
        if not (np.isfinite(counts).all() and (counts > 0).all()):
            raise ConfigError("invalid motion state: motion_counts must be finite and positive")
        return (counts, np.array(state["motion_k_prev"], np.int64), np.array(state["motion_velocity"], np.int64),
                to_tensor(anchor) if anchor.size else None)

    def _base(self, pred: np.ndarray, conditional: bool) -> torch.Tensor:
        """The latent a motion frame's coded tiles add their residual to: zero, or ``g_a(x_pred)`` (pixels in, so it
        is used only to draw the frame, never to decode a symbol)."""
        return self.model.analysis(to_tensor(pred), self.q) if conditional else torch.zeros(self.shape)

    def prediction(self, k: np.ndarray) -> np.ndarray:
        """The anchor warped by the motion ``k`` (eq. (1) of :mod:`semcom.prediction.global_motion`), uint8."""
        with torch.no_grad():
            return to_uint8(warp(self.anchor, dequantise(k)).clamp(0.0, 1.0))[0]

    def tile_pixels(self, coded: np.ndarray) -> np.ndarray:
        """The per-tile flags ``coded`` (tiles) as a pixel mask (H, W, 1)."""
        side = 8 * self.config.tile
        m = np.repeat(np.repeat(coded, side, 0), side, 1)[: self.config.height, : self.config.width]
        return m[:, :, None]

    def tile_positions(self, coded: np.ndarray) -> torch.Tensor:
        """The per-tile flags ``coded`` as a mask of latent positions (1, c, H/8, W/8)."""
        k = self.config.tile
        m = np.repeat(np.repeat(coded, k, 0), k, 1)[: self.shape[2], : self.shape[3]]
        return torch.from_numpy(m).expand(self.shape)

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
        self.decoded: list[np.ndarray] = []  # in display order
        self._held: list[tuple[int, torch.Tensor]] = []  # frames held back for B-frames, with their positions
        self.arrived = 0  # frames sent so far

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
        z_sym, r_sym, idx, z_bits, r_bits = self._residual(y, ref, self.tile_positions(~tile_hit.numpy()))
        return _Plan(kind, slot, rank, tile_hit, info + z_bits + float(r_bits.sum()), ref + r_sym, z_sym, r_sym, idx,
                     r_bits.sum((0, 1)).numpy())

    def _residual(self, y: torch.Tensor, ref: torch.Tensor, keep: torch.Tensor):
        """Coding ``y`` given ``ref`` on the latent positions ``keep`` (zero residual elsewhere): ``z^``, ``r^``, the
        scale indexes, the information of ``z^`` (bits) and of each symbol of ``r^`` (a map like ``y``)."""
        r = (y - ref) * keep
        z_sym = clip_symbols(self.model.hyper_analysis(r, ref))
        r_sym = clip_symbols(r)
        idx = self._scale_indexes(z_sym, ref)
        z_bits = float(-torch.log2(self.model.z_prior.likelihood(z_sym)).sum())
        r_bits = -torch.log2(self.model.gaussian.likelihood(r_sym, self.model.gaussian.table[idx]))
        return z_sym, r_sym, idx, z_bits, r_bits

    def _distortion(self, out: np.ndarray, x: torch.Tensor, refinement: Refinement | None = None) -> np.ndarray:
        """The distortion term of :meth:`_cost` per 8x8 block (H/8, W/8): ``lambda_q 255^2 SSE / 3`` of ``out``
        against ``x``, or, when the link refines, that of ``out`` once refined where refining pays, the
        refinement's bits included (:meth:`Refinement.block_costs`), so that every decision made before the
        refinement weighs what the receiver will finally show. ``refinement``: the one that will refine ``out``
        (default the link's)."""
        target = x[0].permute(1, 2, 0).double().numpy()
        refinement = refinement or self.refinement
        if refinement is not None:
            return refinement.block_costs(target, out)
        se = ((out.astype(np.float64) / 255.0 - target) ** 2).sum(-1)
        h, w = se.shape
        return self.rd_lambda * 255.0**2 * se.reshape(h // 8, 8, w // 8, 8).sum((1, 3)) / 3.0

    def _cost(self, plan: _Plan, x: torch.Tensor) -> tuple[float, np.ndarray]:
        """The Lagrangian the model was trained on, ``bits + lambda_q 255^2 SSE / 3`` (``SSE`` over the
        frame's values in [0, 1]; CompressAI's ``R + lambda 255^2 MSE`` per image), and the decoded frame."""
        out = self.synthesise(plan.y_hat)
        return plan.bits + float(self._distortion(out, x).sum()), out

    def _tile_sum(self, v: np.ndarray, side: int) -> np.ndarray:
        """Sums of ``v`` (a 2-D map) over the tiles, ``side`` entries of ``v`` per tile side."""
        h, w = self.tiles
        pad = np.zeros((h * side, w * side))
        pad[: v.shape[0], : v.shape[1]] = v
        return pad.reshape(h, side, w, side).sum((1, 3))

    def _motion_plans(self, x: torch.Tensor, y: torch.Tensor, intra: _Plan,
                      intra_out: np.ndarray) -> list[_MotionPlan]:
        """Motion frames worth trying: the global motion of the anchor onto ``x`` (estimated, then quantised) with
        every tile predicted, and with some tiles coded, the rest predicted, for each base of the coded tiles'
        latent (:meth:`_coded_tiles`): zero (intra, whose every-tile coding is the ``intra`` plan, decoded as
        ``intra_out``) and the prediction's own latent ``g_a(x_pred)``."""
        k = quantise(estimate(self.anchor, x, [dequantise(self.motion.prediction())]))
        errors = self.motion.errors(k)
        pred = self.prediction(k)  # k is within BOUND: its errors code it exactly
        head = information(self.kind_counts, np.array([MOTION])) + self.motion.information(errors)
        none = np.zeros(self.tiles, dtype=bool)
        plans = [_MotionPlan(errors, none, head + information(self.tile_counts, none.ravel().astype(int)), pred)]
        for conditional, every in ((False, (intra_out, intra.r_bits)), (True, None)):
            plan = self._coded_tiles(x, y, pred, errors, head, conditional, every)
            plans += [plan] if plan is not None else []
        return plans

    def _coded_tiles(self, x: torch.Tensor, y: torch.Tensor, pred: np.ndarray, errors: np.ndarray, head: float,
                     conditional: bool, every: tuple[np.ndarray, np.ndarray] | None = None) -> _MotionPlan | None:
        """A motion frame whose tiles are coded where that costs less than predicting them (the tile's bits plus
        its distortion, against the prediction's distortion, with every tile coded): the residual ``r^`` is
        ``y - base`` rounded, ``base`` zero or (``conditional``) ``g_a(x_pred)``, shown as ``g_s(base + r^)``.
        ``r^``'s scales come from ``z^`` alone (``h_s(z^, 0)``), so that the base, which the receiver computes from
        pixels, decides no bit. None if no tile (or, intra, every tile) would be coded. ``every``: the frame with
        every tile coded on this base and its bits per latent position, when the caller has them already."""
        base = self._base(pred, conditional)
        if every is None:
            _, r_sym, _, _, r_map = self._residual(y - base, torch.zeros(self.shape),
                                                   torch.ones(self.shape, dtype=torch.bool))
            every = self.synthesise(base + r_sym), r_map.sum((0, 1)).numpy()
        side = self.config.tile
        d_pred = self._tile_sum(self._distortion(pred, x), side)
        d_coded = self._tile_sum(self._distortion(every[0], x), side)
        coded = d_coded + self._tile_sum(every[1], self.config.tile) < d_pred
        if not coded.any() or (coded.all() and not conditional):  # all coded on zero: the intra frame, dearer
            return None
        keep = self.tile_positions(coded)
        z_sym, r_sym, idx, z_bits, r_map = self._residual(y - base, torch.zeros(self.shape), keep)
        shown = np.where(self.tile_pixels(coded), self.synthesise(base + r_sym), pred)
        bits = (head + information(self.tile_counts, coded.ravel().astype(int))
                + information(self.base_counts, np.array([int(conditional)])) + z_bits + float(r_map[keep].sum()))
        return _MotionPlan(errors, coded, bits, shown, z_sym, r_sym[keep], idx[keep], conditional)

    @torch.no_grad()
    def send(self, frame: np.ndarray) -> np.ndarray | None:
        """Code one uint8 frame (H, W, 3) the way that minimises the rate–distortion cost (:meth:`_cost`)
        among the candidates (:meth:`_candidates`); returns what the receiver will decode. With B-frames, a frame
        may be held back (then None; :meth:`finish` codes what is still held)."""
        x = to_tensor(frame)
        if x.shape[-2:] != (self.config.height, self.config.width):
            raise ConfigError(f"frame of {x.shape[-2]}x{x.shape[-1]}, the link is {self.config.height}x"
                              f"{self.config.width}")
        t, self.arrived = self.arrived, self.arrived + 1
        if not self.config.bframes or self.t == 0:
            return self._send_now(x, t)
        self._held.append((t, x))
        if len(self._held) > self.config.bframes:
            self._send_held()
        return None

    def _send_held(self) -> None:
        """Code the frames held back as one group (B-frames up to the last of them) or each alone, whichever costs
        less in ``bits + lambda_q 255^2 SSE / 3``: both are coded on copies of the transmitter, and the cheaper
        copy's state and stream are kept (x264's ``b-adapt 2`` decides by a cost estimate; this by the real one)."""
        held, self._held = self._held, []
        if len(held) == 1:
            return self._send_group(held)
        trials = []
        for groups in ([held], [[h] for h in held]):
            trial = self._fork()
            for group in groups:
                trial._send_group(group)
            trials.append(trial)
        self._adopt(min(trials, key=lambda trial: trial._lagrangian([x for _, x in held])))

    def _fork(self) -> CodecTransmitter:
        """A copy of the transmitter that codes on from here (the model shared, records and frames shown empty)."""
        memo = {id(self.model): self.model, id(self.encoder): self.encoder.clone(), id(self.records): [],
                id(self.decoded): []}
        return copy.deepcopy(self, memo)

    def _adopt(self, trial: CodecTransmitter) -> None:
        """Continue from ``trial`` (a :meth:`_fork`), its records and frames shown appended to these."""
        records, decoded = self.records + trial.records, self.decoded + trial.decoded
        self.__dict__.update(trial.__dict__)
        self.records, self.decoded = records, decoded

    def _lagrangian(self, frames: list[torch.Tensor]) -> float:
        """``bits + lambda_q 255^2 SSE / 3`` of the records and frames shown so far against ``frames``."""
        se = sum(float(((to_tensor(out) - x) ** 2).sum()) for out, x in zip(self.decoded, frames, strict=True))
        return sum(r.bits for r in self.records) + self.rd_lambda * 255.0**2 * se / 3.0

    def _send_group(self, held: list[tuple[int, torch.Tensor]]) -> None:
        """Code ``held`` (display positions and frames) as a group: its number less one (the group's B-frames), the
        last frame as any frame is coded, then the others as B-frames in pyramid order."""
        n = len(held) - 1
        bits = information(self.group_counts, np.array([n]))
        self.encoder.encode(np.array([n], np.int32), categorical(self.group_counts))
        self._group(n)
        self._send_now(held[-1][1], held[-1][0])
        record = self.records.pop()
        anchor = replace(record, bits=record.bits + bits), self.decoded.pop()
        coded = {at[0]: self._send_bi(held[at[0] - 1], at) for at in pyramid(n)}
        for record, out in [coded[i] for i in sorted(coded)] + [anchor]:
            self.records.append(record)
            self.decoded.append(out)

    def _send_bi(self, held: tuple[int, torch.Tensor], at: tuple[int, int, int]) -> tuple[FrameRecord, np.ndarray]:
        """Code the B-frame ``held`` (display position, frame) at position ``at = (i, lo, hi)`` of its group: its
        mode, the motion to each reference it uses, its refinement; the mode (:data:`MODES`) of least
        rate–distortion cost, refinement included."""
        (t, x), (i, lo, hi) = held, at
        refs = self.bi_refs(at)
        motions = []
        for distance, ref in ((lo - i, refs[0]), (hi - i, refs[1])):
            self.bi_motion.distance = distance
            k = quantise(estimate(ref, x, [dequantise(self.bi_motion.prediction())]))
            errors = self.bi_motion.errors(k)  # escapes included, so the motion coded is k itself
            motions.append((distance, errors, k, self.bi_motion.information(errors)))
        best = None
        for mode in range(len(MODES)):
            on = (mode != BACKWARD, mode != FORWARD)
            ks = tuple(m[2] if used else None for m, used in zip(motions, on))
            pred = bi_prediction(mode, refs, ks)
            bits = information(self.mode_counts, np.array([mode])) + sum(m[3] for m, used in zip(motions, on) if used)
            cost = bits + float(self._distortion(pred, x, self.bi_refinement).sum())
            if best is None or cost < best[0]:
                best = (cost, mode, on, ks, pred, bits)
        _, mode, on, ks, pred, bits = best
        used = [(distance, errors) for (distance, errors, _, _), u in zip(motions, on) if u]
        self.encoder.encode(np.array([mode], np.int32), categorical(self.mode_counts))
        for distance, errors in used:
            self.bi_motion.distance = distance
            self.bi_motion.encode(errors, self.encoder)
        refine, refine_bits = None, 0.0
        if self.bi_refinement is not None:
            plan = self.bi_refinement.plan(x[0].permute(1, 2, 0).double().numpy(), pred)
            self.bi_refinement.encode(plan, self.encoder)
            refine, refine_bits = plan.q, plan.bits
        self._apply_bi(mode, used)
        tiles = self.tiles[0] * self.tiles[1]
        out = self.bi_show(_BiReceived(at, mode, ks, refine), pred)  # what the receiver draws, as it draws it
        return FrameRecord(t, "bi", None, 0, tiles, bits + refine_bits, self.memory.size, tiles), out

    def _send_now(self, x: torch.Tensor, t: int) -> np.ndarray:
        """Code the frame ``x`` (1, 3, H, W) now, shown at display position ``t``."""
        y = self.model.analysis(x, self.q)
        plans = [self._plan(y, slot, hit) for slot, hit in self._candidates(y)]
        costs = [self._cost(p, x) for p in plans]
        if self.motion is not None and self.anchor is not None:
            moves = self._motion_plans(x, y, plans[0], costs[0][1])  # plans[0]: intra, every tile coded
            plans += moves
            costs += [(m.bits + float(self._distortion(m.out, x).sum()), m.out) for m in moves]
        best = min(range(len(plans)), key=lambda i: costs[i][0])
        plan, out = plans[best], costs[best][1]
        if isinstance(plan, _MotionPlan):
            return self._send_motion(plan, x, t)
        self.encoder.encode(np.array([plan.kind], np.int32), categorical(self.kind_counts))
        if plan.rank is not None and self.memory.size > 1:  # with one stored prototype the reference is implied
            self.encoder.encode(np.array([plan.rank], np.int32), categorical(self.rank_counts_now()))
        if plan.kind != HIT:
            self.model.z_prior.encode(plan.z_sym, self.encoder)
            self.model.gaussian.encode(plan.r_sym, plan.idx, self.encoder)
        self._apply(plan.kind, plan.slot, plan.rank, plan.y_hat.clone())
        out, refine_bits, _ = self._refine(x, out)
        self.records.append(FrameRecord(t, KINDS[plan.kind], plan.slot, int(plan.tile_hit.sum()),
                                        plan.tile_hit.numel(), plan.bits + refine_bits, self.memory.size))
        self.decoded.append(self._shown(out))
        return out

    def _refine(self, x: torch.Tensor, out: np.ndarray) -> tuple[np.ndarray, float, np.ndarray | None]:
        """Write the pixel refinement of ``out`` towards the frame ``x`` (when the link refines): the frame shown,
        the refinement's bits and its symbols (None without refinement)."""
        if self.refinement is None:
            return out, 0.0, None
        plan = self.refinement.plan(x[0].permute(1, 2, 0).double().numpy(), out)
        self.refinement.encode(plan, self.encoder)
        return self.refinement.apply(out, plan.q), plan.bits, plan.q

    def _send_motion(self, plan: _MotionPlan, x: torch.Tensor, t: int) -> np.ndarray:
        """Write a motion frame: its kind, the motion's errors, one flag per tile (1: coded) and, if a tile is
        coded, the base of the coded tiles (0: zero, 1: the prediction's latent), ``z^`` and the residual symbols
        of the coded tiles; then its refinement."""
        self.encoder.encode(np.array([MOTION], np.int32), categorical(self.kind_counts))
        self.motion.encode(plan.errors, self.encoder)
        self.encoder.encode(plan.coded.ravel().astype(np.int32), categorical(self.tile_counts))
        if plan.coded.any():
            self.encoder.encode(np.array([int(plan.conditional)], np.int32), categorical(self.base_counts))
            self.model.z_prior.encode(plan.z_sym, self.encoder)
            self.model.gaussian.encode(plan.r_sym, plan.idx, self.encoder)
        predicted = int((~plan.coded).sum())
        out, refine_bits, refine = self._refine(x, plan.out)
        new_anchor = self._anchors(plan.coded, refine)
        self._apply_motion(plan.errors, plan.coded, plan.conditional, new_anchor)
        self._shown(out, new_anchor=new_anchor)
        self.records.append(FrameRecord(t, "motion", None, 0, plan.coded.size, plan.bits + refine_bits,
                                        self.memory.size, predicted))
        self.decoded.append(out)
        return out

    def finish(self) -> bytes:
        """The stream file: header, the payload, its CRC-32 (the frames still held back coded first)."""
        from semcom.link.wire import pack_stream

        if self._held:
            self._send_held()
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

    def __init__(self, config: CodecLinkConfig, model) -> None:
        super().__init__(config, model)
        self.declared = MAX_FRAMES  # the frames the stream declares (its header's count)
        self._b_left: list[tuple[int, int, int]] = []  # the B-frames of the group being decoded (pyramid order)

    def frames(self, data: bytes, count: int):
        """Decode ``count`` frames from the stream ``data`` (header included); yields uint8 frames in display
        order (a group's B-frames, then its anchor frame)."""
        self.declared, group = count, {}
        for received in range_decoded(data, HEADER_SIZE, count, self._receive):
            out = self.show(received)
            group[received.at[0] if isinstance(received, _BiReceived) else self.group_size + 1] = out
            if not self._b_left:
                yield from (group[i] for i in sorted(group))
                group = {}

    @torch.no_grad()
    def show(self, received: _Received) -> np.ndarray:
        """The frame a decoded message draws (uint8): ``g_s(y^)``, or a motion frame's prediction with its coded
        tiles drawn by ``g_s``; it then becomes the anchor as at the transmitter."""
        if isinstance(received, _BiReceived):
            return self.bi_show(received)
        refine = received.refine
        if received.k is None:
            return self._shown(self._refined(self.synthesise(received.y_hat), refine))
        out = self.prediction(received.k)
        if received.coded.any():
            latent = self._base(out, received.conditional) + received.y_hat
            out = np.where(self.tile_pixels(received.coded), self.synthesise(latent), out)
        return self._shown(self._refined(out, refine), new_anchor=self._anchors(received.coded, refine))

    def _refined(self, out: np.ndarray, refine: np.ndarray | None) -> np.ndarray:
        return out if refine is None else self.refinement.apply(out, refine)

    @torch.no_grad()
    def _receive(self, decoder) -> _Received:
        """The bit path: decode one frame's symbols and update the memory and the counts; no pixel is drawn."""
        if self._b_left:
            return self._receive_bi(decoder, self._b_left.pop(0))
        if self.config.bframes and self.t > 0:
            n = self._decode(decoder, categorical(self.group_counts))
            if self.t + 1 + n > self.declared:
                raise WireFormatError(f"a group of {n} B-frames runs past the {self.declared} frames declared")
            self._group(n)
            self._b_left = pyramid(n)
        kind = int(self._decode(decoder, categorical(self.kind_counts)))
        if kind == MOTION:
            return self._receive_motion(decoder)
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
        self._apply(kind, slot, rank, y_hat.clone())
        return _Received(y_hat, refine=self._receive_refinement(decoder))

    def _receive_bi(self, decoder, at: tuple[int, int, int]) -> _BiReceived:
        """The B-frame at position ``at = (i, lo, hi)`` of its group: its mode, motions and refinement (no pixel
        read)."""
        i, lo, hi = at
        mode = self._decode(decoder, categorical(self.mode_counts))
        motions, ks = [], []
        for distance, on in ((lo - i, mode != BACKWARD), (hi - i, mode != FORWARD)):
            if on:
                self.bi_motion.distance = distance
                errors = self.bi_motion.decode(decoder)
                motions.append((distance, errors))
            ks.append(self.bi_motion.k_of(errors) if on else None)
        refine = None if self.bi_refinement is None else self.bi_refinement.decode(decoder)
        self._apply_bi(mode, motions)
        return _BiReceived(at, mode, tuple(ks), refine)

    def _receive_refinement(self, decoder) -> np.ndarray | None:
        return None if self.refinement is None else self.refinement.decode(decoder)

    def _receive_motion(self, decoder) -> _Received:
        if self.t == 0:
            raise WireFormatError("motion frame before any frame to predict it from")
        errors = self.motion.decode(decoder)
        coded = decode_symbols(decoder, categorical(self.tile_counts), self.tiles[0] * self.tiles[1])
        coded = coded.reshape(self.tiles).astype(bool)
        r_sym = torch.zeros(self.shape)
        conditional = False
        if coded.any():
            conditional = bool(self._decode(decoder, categorical(self.base_counts)))
            z_sym = self.model.z_prior.decode(self.z_shape, decoder)
            keep = self.tile_positions(coded)
            r_sym[keep] = self.model.gaussian.decode(self._scale_indexes(z_sym, torch.zeros(self.shape))[keep], decoder)
        refine = self._receive_refinement(decoder)
        new_anchor = self._anchors(coded, refine)
        return _Received(r_sym, self._apply_motion(errors, coded, conditional, new_anchor), coded, conditional,
                         refine)

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
