"""The shared memory of prototypes ``M_t = {mu_1, ..., mu_{M_t}}`` (Section II-A).

Both endpoints hold one :class:`PrototypeMemory`. It changes only through
:meth:`touch` (a hit) and :meth:`write` (a miss), whose arguments are
computable from the bitstream, so both copies stay identical frame by frame.

When the memory is full, ``full_policy`` decides what a miss does:
``"none"`` is the paper's behaviour (``M_t = M_{t-1}``, nothing stored);
``"lru"`` replaces the least recently used slot (lowest slot on a tie), a rule
both sides apply identically because both see every hit and every miss.

Retrieval at scale (docs/scale.md). Beside the (size, d) prototypes the
memory keeps a contiguous transposed copy (d, capacity), updated slot by
slot on every write, swap, corrupt, restore and truncate, so the exact scan
of eq. (1), ``<z, mu_j>`` for every ``j``, is one matrix-vector product
(:meth:`scores`; a batch of queries, one matrix product: :meth:`scores_batch`)
followed by an argmax (:meth:`nearest`, :meth:`nearest_batch`) or a top-k
(:meth:`top_k`). ``generation`` counts the changes to the stored vectors, and
:meth:`derived` hands out caches that are emptied at each change (the Hopfield
readouts, which hits do not change, are cached there between misses). A
write through the :attr:`prototypes` view (fault injection in tests) is
noticed from the tensor's version counter and resynchronises everything.
With ``index="approx"`` the memory also keeps an inverted file (FAISS) of
its prototypes (:mod:`semcom.memory.index`) that :meth:`candidates` searches.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from semcom.config import FullPolicy, IndexKind

#: Scores of a batch are computed this many slots at a time, into one reused (B, chunk) buffer, so the (B, M)
#: score matrix is never allocated. Large on purpose: every chunk is one parallel region of torch's thread
#: pool, and on a loaded machine each costs a scheduler wake-up (measured at M = 10^6, B = 64, docs/scale.md:
#: 2^17 as fast as the full product or faster, 2^12 eight times slower).
BATCH_CHUNK = 1 << 17

#: Entries a derived cache may hold before it is emptied (it is emptied at every change anyway).
DERIVED_MAX = 1 << 16


class PrototypeMemory:
    """Unit-norm prototypes (float32) in slots ``0 .. size-1``, growing to ``m_max``."""

    def __init__(self, d: int, m_max: int, full_policy: FullPolicy = "lru", index: IndexKind = "exact"):
        if index not in ("exact", "approx"):
            raise ValueError(f"index must be 'exact' or 'approx', not {index!r}")
        self.d = d
        self.m_max = m_max
        self.full_policy = full_policy
        self.index = index
        self._data = torch.empty(min(m_max, 64), d)
        self._last_used = np.zeros(min(m_max, 64), dtype=np.int64)
        self._codes = np.zeros((min(m_max, 64), d), dtype=np.uint8)
        self._t = np.empty((d, min(m_max, 64)), dtype=np.float32)  # the transposed copy, (d, capacity)
        self._ann = None  # the approximate index (index="approx"), built on first use
        self.size = 0
        self.generation = 0
        self._derived: dict[object, dict] = {}
        self._mark_synced()

    @classmethod
    def filled(cls, prototypes: torch.Tensor, m_max: int | None = None, full_policy: FullPolicy = "lru",
               index: IndexKind = "exact") -> PrototypeMemory:
        """A memory holding ``prototypes`` (n, d) in slots ``0 .. n-1``, recency 0 and codes zero: what ``n``
        calls to :meth:`write` at frame 0 leave, at the cost of one copy."""
        n, d = prototypes.shape
        mem = cls(d, n if m_max is None else m_max, full_policy, index)
        if n > mem.m_max:
            raise ValueError(f"{n} prototypes for a memory of m_max={mem.m_max}")
        if n == 0:
            return mem
        mem._data = prototypes.to(torch.float32).clone().contiguous()
        mem._last_used = np.zeros(n, dtype=np.int64)
        mem._codes = np.zeros((n, d), dtype=np.uint8)
        mem._t = np.ascontiguousarray(mem._data.numpy().T)
        mem.size = n
        mem._ann = None
        mem._mark_synced()
        return mem

    # ------------------------------------------------------------------ keeping the copies in step

    def _mark_synced(self) -> None:
        self._synced = (self._data, self._data._version)

    def _check_synced(self) -> None:
        """Resynchronise the transposed copy, the index and the caches after a write that bypassed the
        memory's methods (``prototypes[j] = ...`` or ``_data[j] = ...``: the tensor's version counter moved)."""
        data, version = self._synced
        if data is not self._data or version != self._data._version:
            self._t = np.empty((self.d, self._data.shape[0]), dtype=np.float32)
            self._t[:, : self.size] = self._data[: self.size].numpy().T
            self._ann = None
            self._changed(None)

    def _changed(self, slots: np.ndarray | list[int] | None) -> None:
        """Slots whose vectors changed (None: all of them, or the size): update the copies, drop the caches."""
        if slots is not None and len(slots):
            idx = np.asarray(slots, dtype=np.int64)
            self._t[:, idx] = self._data[torch.from_numpy(idx)].numpy().T
            if self._ann is not None:
                live = idx[idx < self.size]
                self._ann.set(live, self._data[torch.from_numpy(live)].numpy(), self.size)
        elif slots is None:
            self._ann = None  # rebuilt on the next search
        if self._ann is not None:
            self._ann.resize(self.size)
            from semcom.memory.index import RETRAIN_GROWTH

            if self.size >= RETRAIN_GROWTH * max(self._ann.trained_size, 1):
                self._ann = None  # grown out of its cells: rebuilt (retrained) on the next search
        self.generation += 1
        self._derived.clear()
        self._mark_synced()

    def derived(self, key: object) -> dict:
        """A cache for values computed from the stored vectors (keyed by ``key``), emptied whenever a stored
        vector or the size changes; hits (recency only) keep it."""
        self._check_synced()
        cache = self._derived.setdefault(key, {})
        if len(cache) >= DERIVED_MAX:
            cache.clear()
        return cache

    def forget_derived(self) -> None:
        """Empty the derived caches, as a write does (benchmarks time the first decision after a miss)."""
        self._derived.clear()

    # ------------------------------------------------------------------ exact and approximate search

    @property
    def transposed(self) -> np.ndarray:
        """The stored prototypes as a (d, size) float32 array (a view of the transposed copy)."""
        self._check_synced()
        return self._t[:, : self.size]

    def scores(self, z: torch.Tensor | np.ndarray) -> np.ndarray:
        """``<z, mu_j>`` for every stored ``j`` (size,), float32: one (1, d) x (d, size) product."""
        return (_as_tensor(z)[None] @ torch.from_numpy(self.transposed))[0].numpy()

    def scores_batch(self, queries: torch.Tensor | np.ndarray) -> np.ndarray:
        """``<q_b, mu_j>`` for queries (B, d): (B, size), one (B, d) x (d, size) product."""
        return (_as_tensor(queries) @ torch.from_numpy(self.transposed)).numpy()

    def nearest(self, z: torch.Tensor | np.ndarray) -> tuple[int, float]:
        """Eq. (1) by exact scan: ``j* = argmax_j <z, mu_j>`` (lowest slot on a tie) and its score."""
        s = self.scores(z)
        j = int(s.argmax())  # numpy's argmax: one vectorised pass (torch's is several times slower here)
        return j, float(s[j])

    def nearest_batch(self, queries: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`nearest` for each row of ``queries`` (B, d): slots (B,) and scores (B,).

        The scores are computed :data:`BATCH_CHUNK` slots at a time into one reused buffer and reduced at
        once, so the (B, size) matrix of eq. (1)'s scores is never held; the result equals the row-wise
        argmax of :meth:`scores_batch` (lowest slot on a tie)."""
        q, t = _as_tensor(queries), torch.from_numpy(self.transposed)
        b = q.shape[0]
        best, where = np.full(b, -np.inf, dtype=np.float32), np.zeros(b, dtype=np.int64)
        rows = np.arange(b)
        buf = torch.empty(b, min(BATCH_CHUNK, self.size))
        for start in range(0, self.size, BATCH_CHUNK):
            block = t[:, start : start + BATCH_CHUNK]
            out = buf[:, : block.shape[1]]
            s = torch.mm(q, block, out=out).numpy() if out.is_contiguous() else (q @ block).numpy()
            j = s.argmax(axis=1)
            v = s[rows, j]
            better = v > best  # strictly: an equal score in a later chunk keeps the lower slot
            best[better], where[better] = v[better], j[better] + start
        return where, best

    def top_k(self, z: torch.Tensor | np.ndarray, k: int, scores: np.ndarray | None = None) -> np.ndarray:
        """The ``k`` slots of largest ``<z, mu_j>`` (exact), best first, ties to the lowest slot."""
        s = self.scores(z) if scores is None else scores
        return top_k(s, k)

    def candidates(self, z: torch.Tensor | np.ndarray, k: int) -> np.ndarray:
        """The ``k`` candidate slots of eq. (1) for ``z``: exact (:meth:`top_k`) or, with ``index="approx"``,
        those the inverted file finds (:mod:`semcom.memory.index`; re-scored exactly by the rules)."""
        if self.index == "exact" or self.size == 0:
            return self.top_k(z, k)
        return self.approx_index().search(_as_numpy(z), k)

    def approx_index(self, threads: int = 1):
        """The approximate index of the stored prototypes (:mod:`semcom.memory.index`), built now if needed
        with ``threads`` threads, then kept in step with every change."""
        self._check_synced()
        if self._ann is None:
            from semcom.memory.index import build

            self._ann = build(self._data[: self.size].numpy(), threads=threads)
        return self._ann

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
        t = np.empty((self.d, cap), dtype=np.float32)
        t[:, : self.size] = self._t[:, : self.size]
        self._data, self._last_used, self._codes, self._t = data, used, codes, t
        self._mark_synced()

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
        self._check_synced()
        if slot == self.size:
            if self.size == self._data.shape[0]:
                self._grow()
            self.size += 1
        self._data[slot] = latent
        self._last_used[slot] = t
        self._codes[slot] = 0 if codes is None else codes
        self._changed([slot])
        return slot

    def swap(self, i: int, j: int) -> None:
        """Exchange the contents (vector and codes) of slots ``i`` and ``j``, keeping their recency: the
        repair of an ID map that sent IDs ``i`` and ``j`` to each other's slot."""
        self._check_synced()
        for a in (self._data, self._codes):
            a[[i, j]] = a[[j, i]]
        self._changed([i, j])

    def corrupt(self, prototypes: torch.Tensor) -> None:
        """Replace the stored vectors, codes kept (fault injection: :mod:`semcom.memory.corruption`)."""
        if prototypes.shape != (self.size, self.d):
            raise ValueError(f"{tuple(prototypes.shape)} prototypes for a memory of {self.size}")
        self._check_synced()
        self._data[: self.size] = prototypes
        self._t[:, : self.size] = self._data[: self.size].numpy().T
        self._changed(None)

    def snapshot(self) -> tuple[torch.Tensor, np.ndarray, int, np.ndarray]:
        """A copy of the exact state, for :meth:`restore`."""
        return self.prototypes.clone(), self._last_used[: self.size].copy(), self.size, self.codes.copy()

    def restore(self, state: tuple) -> None:
        """Return to a :meth:`snapshot` (a transmitter undoing a frame its receiver never got)."""
        data, used, size, codes = state
        self._check_synced()
        while self._data.shape[0] < size:
            self._grow()
        common = min(size, self.size)
        moved = np.flatnonzero((self._data[:common] != data[:common]).any(dim=1).numpy())
        changed = np.concatenate([moved, np.arange(common, size)])
        self._data[:size] = data
        self._last_used[:size] = used
        self._codes[:size] = codes
        resized, self.size = size != self.size, size
        if len(changed) or resized:  # only the slots that differ: a no-op restore keeps the caches
            self._changed(changed)
        else:
            self._mark_synced()

    def truncate(self, size: int) -> None:
        """Keep only slots ``0 .. size-1`` (a receiver that holds slots its transmitter does not)."""
        if size < self.size:
            self._check_synced()
            self.size = max(0, size)
            self._changed([])

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


def _as_tensor(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    """A float32 contiguous tensor of a query or a batch of queries."""
    x = torch.as_tensor(x).detach()
    return x.to(torch.float32).contiguous()


def _as_numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """A float32 numpy view (or copy) of a query or a batch of queries."""
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.dtype != torch.float32:
            x = x.to(torch.float32)
        return x.contiguous().numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


#: Block length of :func:`top_k`'s first pass (block maxima).
TOP_K_BLOCK = 1024


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """The indices of the ``k`` largest ``scores`` (1-D), largest first, ties to the lowest index.

    Exact, in about one pass over ``scores``: every one of the ``k`` largest lies in one of the ``k`` blocks of
    :data:`TOP_K_BLOCK` entries with the largest maxima, so only those blocks are sorted (a full argpartition
    of 10^6 scores costs several times the scan that produced them)."""
    n = len(scores)
    k = min(k, n)
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    if k == 1:
        return np.array([int(scores.argmax())], dtype=np.int64)
    if n <= 8 * TOP_K_BLOCK:
        cand = np.arange(n)
    else:
        full = n // TOP_K_BLOCK * TOP_K_BLOCK
        maxima = scores[:full].reshape(-1, TOP_K_BLOCK).max(axis=1)
        if full < n:
            maxima = np.append(maxima, scores[full:].max())
        # blocks tied with the k-th largest maximum all stay in (ties to the lowest index need them)
        kth = np.partition(maxima, len(maxima) - k)[len(maxima) - k]
        blocks = np.flatnonzero(maxima >= kth)
        cand = (blocks[:, None] * TOP_K_BLOCK + np.arange(TOP_K_BLOCK)).ravel()
        cand = cand[cand < n]
    order = np.lexsort((cand, -scores[cand].astype(np.float64)))[:k]
    return cand[order].astype(np.int64)
