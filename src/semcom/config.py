"""Typed, validated configuration of the semantic link.

Configs are pydantic models validated at the door: a wrong value raises
:class:`semcom.errors.ConfigError` with a one-line message naming the field.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from semcom.errors import ConfigError

#: Defaults chosen from a tau/beta sweep of ``semcom run`` with the shipped weights (docs/semantic-link.md):
#: the latents of neighbouring frames have cosine similarity well above 0.9, so tau = 0.98 is where the
#: memory starts to grow, and beta must be large for Hopfield readouts to stay near their prototype.
DEFAULT_TAU = 0.98
DEFAULT_BETA = 100.0
#: B-frames per group of the codec link where frames may be held back (a file, a sweep; not the live link):
#: ``semcom.prediction.bidirectional``. Chosen by measurement (docs/rd.md).
DEFAULT_BFRAMES = 3

RuleName = Literal["nearest", "hopfield", "paper"]
FullPolicy = Literal["none", "lru"]
Coding = Literal["fixed", "adaptive"]
IndexKind = Literal["exact", "approx"]


def as_float32(v):
    """Round to float32, the precision of the stream headers, before the range checks, so both ends use the
    same value and it stays in range once rounded (a value of the wrong type passes, for pydantic to report)."""
    try:
        return float(np.float32(float(v)))
    except (TypeError, ValueError, OverflowError):
        return v


def multiple_of_16(v: int) -> int:
    """A frame side: the models downsample by 16 (the sphere autoencoder, the hyperprior's hyper-latent)."""
    if v % 16:
        raise ValueError("must be a multiple of 16 (the models downsample by 16)")
    return v


#: A float rounded to float32 before its range checks (``as_float32``); a frame side, a multiple of 16.
Float32 = Annotated[float, BeforeValidator(as_float32)]
FrameSide = Annotated[int, AfterValidator(multiple_of_16)]


class LinkConfig(BaseModel):
    """Parameters shared by the transmitter and the receiver.

    ``tau`` is the similarity threshold of eq. (1), ``beta`` the inverse
    temperature of eq. (4), ``m_max`` the memory capacity, ``d`` the latent
    dimension and ``latent_bits`` the bits per dimension of eq. (2)'s ``Q``.
    ``coding`` is how a stream's messages become bits: ``fixed`` (eq. 3's
    fixed-length fields) or ``adaptive`` (arithmetic coding, :mod:`semcom.link.coding`).
    ``residual_bits > 0`` turns on residual refinement (eq. 2's ``epsilon_t``): a hit whose
    score lies in ``[tau, tau_refine)`` also carries ``d`` residual codes of that many bits.
    ``index`` is how the transmitter finds its candidates: ``exact`` (a scan of the whole memory) or
    ``approx`` (a FAISS inverted file, :mod:`semcom.memory.index`, candidates re-scored exactly); it is not on the
    wire, since the receiver never searches.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    rule: RuleName = "hopfield"
    tau: Float32 = Field(DEFAULT_TAU, gt=0.0, lt=1.0)
    beta: Float32 = Field(DEFAULT_BETA, gt=0.0, le=1e6)
    m_max: int = Field(256, ge=1, le=2**24 - 1)
    d: int = Field(64, ge=1, le=4096)
    latent_bits: Literal[8] = 8
    full_policy: FullPolicy = "lru"
    coding: Coding = "fixed"
    residual_bits: int = Field(0, ge=0, le=8)
    tau_refine: Float32 = Field(0.995, gt=0.0, lt=1.0)
    top_k: int = Field(4, ge=1, le=64)
    height: FrameSide = Field(64, ge=8, le=4096)
    width: FrameSide = Field(64, ge=8, le=4096)
    index: IndexKind = "exact"

    @model_validator(mode="after")
    def _refine_above_tau(self):
        if self.residual_bits and self.tau_refine <= self.tau:
            raise ValueError(f"tau_refine={self.tau_refine} must exceed tau={self.tau} when residual_bits > 0")
        return self



def validated(model: type[BaseModel], /, **values) -> BaseModel:
    """Build ``model(**values)``, turning a validation failure into a one-line ConfigError."""
    try:
        return model(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        if not err["loc"]:  # a check across fields
            raise ConfigError(f"invalid {model.__name__}: {err['msg'].removeprefix('Value error, ')}") from None
        field = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"invalid {field}={err.get('input')!r}: {err['msg']}") from None


class ProtectionConfig(BaseModel):
    """How a link protects itself against faults (both ends share it; :mod:`semcom.link.session`).

    ``cue_bits`` > 0 sends a SimHash cue of the referenced prototype with every hit (the Hopfield
    paper's ``B_cue``, 32 there; ``cue_of="readout"``: of what the receiver will decode, the rule's
    readout); the receiver accepts it with up to ``cue_tolerance`` of its bits wrong (25 % there).
    ``checksum_bits`` is the CRC of short packets (hits); packets carrying codes use CRC-32. Every
    ``sync_every`` frames the transmitter sends a 32-bit digest of its memory, and a receiver that
    disagrees resyncs before it decodes (0: never, the paper's protocol). ``max_attempts`` is how
    many damaged or lost packets a frame may suffer before it is dropped.

    With memory checks on, ``resync`` picks how a receiver that knows its memory is bad finds and
    repairs the slots that differ: ``"tree"`` (the default; :mod:`semcom.link.hashtree`) descends a
    salted hash tree of fan-out ``fanout`` and repairs the slots found in bulk, with state kept across
    frames and a budget of ``resync_packets`` packets per frame of its own; every ``DATA`` and ``REFRESH``
    packet also carries a ``check_bits`` check of the whole memory and a hit one of its slot, so that a
    corruption is known at the first packet after it. ``"flat"`` is the earlier protocol: a flat audit of
    every slot and one ``REPAIR`` per slot, started afresh each frame (no per-packet checks).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    cue_bits: int = Field(0, ge=0, le=64)
    cue_tolerance: float = Field(0.25, ge=0.0, le=1.0)
    cue_of: Literal["prototype", "readout"] = "prototype"
    checksum_bits: Literal[16, 32] = 16
    sync_every: int = Field(16, ge=0, le=65536)
    max_attempts: int = Field(4, ge=1, le=64)
    resync: Literal["flat", "tree"] = "tree"
    check_bits: int = Field(16, ge=8, le=32)
    fanout: int = Field(8, ge=2, le=64)
    resync_packets: int = Field(32, ge=1, le=120)   # a frame of a session file holds at most 255 packets


CorruptionMode = Literal["id_permutation", "vector_noise"]


class FaultConfig(BaseModel):
    """The faults a link suffers (the environment, not the protocol).

    ``ber`` flips every forward bit independently (a binary symmetric channel); ``erasure_rate``
    drops whole packets. ``corrupt_ids`` permutes the receiver's ID map for that fraction of its
    entries, ``corrupt_sigma`` adds ``N(0, sigma^2 I)`` to its stored prototypes (renormalised);
    once, at frame ``corrupt_at`` (None: half-way through a clip, :meth:`for_clip`), and/or at every
    frame with probability ``corrupt_rate``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    ber: float = Field(0.0, ge=0.0, le=0.5)
    erasure_rate: float = Field(0.0, ge=0.0, lt=1.0)
    corrupt_ids: float = Field(0.0, ge=0.0, le=1.0)
    corrupt_sigma: float = Field(0.0, ge=0.0, le=10.0)
    corrupt_at: int | None = Field(None, ge=0)
    corrupt_rate: float = Field(0.0, ge=0.0, le=1.0)
    seed: int = Field(0, ge=0, le=2**32 - 1)  # a session file holds it in 32 bits

    @property
    def corrupts(self) -> bool:
        return self.corrupt_ids > 0 or self.corrupt_sigma > 0

    @property
    def active(self) -> bool:
        return self.corrupts or self.ber > 0 or self.erasure_rate > 0

    def for_clip(self, frames: int) -> FaultConfig:
        """This config for a clip of ``frames`` frames: a one-off corruption with no ``corrupt_at`` falls
        half-way through it."""
        if self.corrupts and self.corrupt_at is None and self.corrupt_rate == 0:
            return self.model_copy(update={"corrupt_at": frames // 2})
        return self
