"""Fault injection: a packet channel with bit errors and erasures, and receiver memory corruption.

Both are seeded and act from outside the protocol: the channel on the bytes
between the endpoints, the corruption on the receiver's memory only (the
transmitter never learns of it except through what the receiver reports).
"""

from __future__ import annotations

import numpy as np

from semcom.config import FaultConfig
from semcom.memory import PrototypeMemory
from semcom.memory.corruption import permute_ids, perturb_prototypes


class PacketChannel:
    """A binary symmetric channel with crossover ``ber`` on every bit, after an erasure channel that
    drops a whole packet with probability ``erasure_rate`` (returned as None)."""

    def __init__(self, ber: float = 0.0, erasure_rate: float = 0.0, rng: np.random.Generator | None = None):
        if not 0.0 <= ber <= 0.5:
            raise ValueError(f"ber must be in [0, 0.5], got {ber}")
        if not 0.0 <= erasure_rate < 1.0:
            raise ValueError(f"erasure_rate must be in [0, 1), got {erasure_rate}")
        self.ber, self.erasure_rate = ber, erasure_rate
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.bits = self.flipped = self.erased = 0

    def __call__(self, packet: bytes) -> bytes | None:
        self.bits += 8 * len(packet)
        if self.erasure_rate and self.rng.random() < self.erasure_rate:
            self.erased += 1
            return None
        if not self.ber:
            return packet
        bits = np.unpackbits(np.frombuffer(packet, dtype=np.uint8))
        flips = self.rng.random(bits.size) < self.ber
        self.flipped += int(flips.sum())
        return np.packbits(bits ^ flips).tobytes()


class Corruption:
    """The receiver-memory faults of a :class:`FaultConfig`: an ID-map permutation of a fraction
    ``corrupt_ids`` and/or Gaussian noise ``corrupt_sigma`` on the stored prototypes, at frame
    ``corrupt_at`` and/or at each frame with probability ``corrupt_rate``.

    The ID map (semantic ID -> slot) is modelled by the contents of the slots: permuting the map for
    some IDs is exchanging which stored vector those IDs read, with the recency metadata kept per ID.
    """

    def __init__(self, faults: FaultConfig, rng: np.random.Generator | None = None):
        self.faults = faults
        self.rng = rng if rng is not None else np.random.default_rng(faults.seed)

    def due(self, t: int) -> bool:
        f = self.faults
        if not f.corrupts:
            return False
        return t == f.corrupt_at or (f.corrupt_rate > 0 and self.rng.random() < f.corrupt_rate)

    def apply(self, memory: PrototypeMemory) -> bool:
        """Corrupt ``memory`` in place; True if anything changed."""
        if memory.size == 0:
            return False
        before = memory.prototypes.clone()
        f = self.faults
        if f.corrupt_ids > 0:
            order = permute_ids(np.arange(memory.size), f.corrupt_ids, self.rng)
            memory.corrupt(memory.prototypes[order].clone())
        if f.corrupt_sigma > 0:
            memory.corrupt(perturb_prototypes(memory.prototypes, f.corrupt_sigma, self.rng))
        return not bool((memory.prototypes == before).all())
