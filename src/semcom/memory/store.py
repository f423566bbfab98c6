"""The shared memory of prototypes ``M_t = {mu_1, ..., mu_{M_t}}`` (Section II-A).

Both endpoints hold one :class:`PrototypeMemory`. It changes only through
:meth:`touch` (a hit) and :meth:`write` (a miss), whose arguments are
computable from the bitstream, so both copies stay identical frame by frame.

When the memory is full, ``full_policy`` decides what a miss does:
``"none"`` is the paper's behaviour (``M_t = M_{t-1}``, nothing stored);
``"lru"`` replaces the least recently used slot (lowest slot on a tie), a rule
both sides apply identically because both see every hit and every miss.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from semcom.config import FullPolicy


class PrototypeMemory:
    """Unit-norm prototypes (float32) in slots ``0 .. size-1``, growing to ``m_max``."""

    def __init__(self, d: int, m_max: int, full_policy: FullPolicy = "lru"):
        self.d = d
        self.m_max = m_max
        self.full_policy = full_policy
        self._data = torch.empty(min(m_max, 64), d)
        self._last_used = np.zeros(min(m_max, 64), dtype=np.int64)
        self._codes = np.zeros((min(m_max, 64), d), dtype=np.uint8)
        self.size = 0

    @property
    def prototypes(self) -> torch.Tensor:
        """The stored prototypes, (size, d)."""
        return self._data[: self.size]

    @property
    def last_used(self) -> np.ndarray:
        """Frame of last use of each stored prototype (read-only view), (size,)."""
        view = self._last_used[: self.size]
        view.flags.writeable = False
        return view

    @property
    def codes(self) -> np.ndarray:
        """The 8-bit codes each prototype was written from (zeros where written without), (size, d)."""
        view = self._codes[: self.size]
        view.flags.writeable = False
        return view

    def __len__(self) -> int:
        return self.size

    def _grow(self) -> None:
        cap = min(self.m_max, 2 * self._data.shape[0])
        data = torch.empty(cap, self.d)
        data[: self.size] = self._data[: self.size]
        used = np.zeros(cap, dtype=np.int64)
        used[: self.size] = self._last_used[: self.size]
        codes = np.zeros((cap, self.d), dtype=np.uint8)
        codes[: self.size] = self._codes[: self.size]
        self._data, self._last_used, self._codes = data, used, codes

    def touch(self, slot: int, t: int) -> None:
        """Record that ``slot`` was used at frame ``t`` (a hit)."""
        self._last_used[slot] = t

    def slot_for_write(self) -> int | None:
        """The slot the next :meth:`write` fills, or None when the memory keeps it out."""
        if self.size < self.m_max:
            return self.size
        if self.full_policy == "lru":
            return int(np.argmin(self._last_used[: self.size]))
        return None

    def write(self, latent: torch.Tensor, t: int, codes: np.ndarray | None = None,
              slot: int | None = None) -> int | None:
        """Store ``latent`` (d,) for frame ``t``, with the ``codes`` it was dequantised from (kept for a
        bit-exact refresh); returns the slot, or None (full, policy ``none``).

        ``slot`` overwrites that stored slot instead of applying the write policy (a refresh).
        """
        if latent.shape != (self.d,):
            raise ValueError(f"latent of shape {tuple(latent.shape)} does not fit a memory of dimension {self.d}")
        if slot is None:
            slot = self.slot_for_write()
            if slot is None:
                return None
        elif not 0 <= slot < self.size:
            raise ValueError(f"slot {slot} is not stored (memory holds {self.size})")
        if slot == self.size:
            if self.size == self._data.shape[0]:
                self._grow()
            self.size += 1
        self._data[slot] = latent
        self._last_used[slot] = t
        self._codes[slot] = 0 if codes is None else codes
        return slot

    def swap(self, i: int, j: int) -> None:
        """Exchange the contents (vector and codes) of slots ``i`` and ``j``, keeping their recency: the
        repair of an ID map that sent IDs ``i`` and ``j`` to each other's slot."""
        for a in (self._data, self._codes):
            a[[i, j]] = a[[j, i]]

    def corrupt(self, prototypes: torch.Tensor) -> None:
        """Replace the stored vectors, codes kept (fault injection: :mod:`semcom.memory.corruption`)."""
        if prototypes.shape != (self.size, self.d):
            raise ValueError(f"{tuple(prototypes.shape)} prototypes for a memory of {self.size}")
        self._data[: self.size] = prototypes

    def snapshot(self) -> tuple[torch.Tensor, np.ndarray, int, np.ndarray]:
        """A copy of the exact state, for :meth:`restore`."""
        return self.prototypes.clone(), self._last_used[: self.size].copy(), self.size, self.codes.copy()

    def restore(self, state: tuple) -> None:
        """Return to a :meth:`snapshot` (a transmitter undoing a frame its receiver never got)."""
        data, used, size, codes = state
        while self._data.shape[0] < size:
            self._grow()
        self._data[:size] = data
        self._last_used[:size] = used
        self._codes[:size] = codes
        self.size = size

    def truncate(self, size: int) -> None:
        """Keep only slots ``0 .. size-1`` (a receiver that holds slots its transmitter does not)."""
        self.size = min(self.size, size)

    def slot_hash(self, slot: int, salt: int = 0, bits: int = 16) -> int:
        """A ``bits``-bit salted hash of one slot's vector and recency (an audit of the memory, slot by
        slot; a new salt gives an independent hash for a second round)."""
        h = hashlib.sha256(salt.to_bytes(8, "big"))
        h.update(self._data[slot].contiguous().numpy().tobytes())
        h.update(self._last_used[slot : slot + 1].tobytes())
        return int.from_bytes(h.digest()[:8], "big") >> (64 - bits)

    def digest(self) -> str:
        """SHA-256 of the exact state (prototypes and recency), to compare Tx and Rx."""
        h = hashlib.sha256()
        h.update(self.prototypes.contiguous().numpy().tobytes())
        h.update(self._last_used[: self.size].tobytes())
        return h.hexdigest()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PrototypeMemory) and self.digest() == other.digest()

    __hash__ = None  # mutable
