"""Approximate nearest-prototype search over a :class:`~semcom.memory.store.PrototypeMemory` (``--index approx``).

An inverted file of the prototypes (FAISS ``IndexIVFFlat``; Jegou, Douze & Schmid, "Product quantization for
nearest neighbor search", TPAMI 2011, Section III-A, without the compression): k-means splits the sphere into
``nlist`` cells, every stored prototype is filed under its nearest centroid, and a query scans only the
``nprobe`` cells whose centroids are nearest to it, under the inner product (the prototypes are unit vectors,
so the largest inner product is the nearest on the sphere, eq. 1 of the Hopfield paper). It answers
candidate slots; the decision rules re-score every candidate exactly against the stored vectors, so an
approximate search can miss a better prototype but never declares a hit the exact similarity does not support.

Only the transmitter searches. The receiver never needs the index: it receives the index ``j*`` and reads
``mu_j*`` (or its Hopfield readout) from its own memory, which changes only through what the messages say,
so the two memories stay identical whatever the index holds. The index itself is deterministic for a given
sequence of writes (seeded k-means on a seeded sample), so the same seed gives the same bits.

The cells are trained once on the prototypes stored when the index is built; writes then file new vectors
under the existing centroids (``add_with_ids``, ``remove_ids``; slot = id). When the memory has grown to
:data:`RETRAIN_GROWTH` times the size the cells were trained on, the store drops the index and the next
search rebuilds it (amortised: the sizes at which it rebuilds grow geometrically).

FAISS was chosen by measurement against hnswlib and usearch (HNSW graphs) at ``M = 10^6``, ``d = 64``: the
graphs answer as fast, but take many times longer to build on two cores (docs/scale.md).
"""

from __future__ import annotations

import numpy as np

#: Training points per cell (FAISS warns below 39) and the most cells.
TRAIN_PER_LIST = 64
MAX_LIST = 4096
#: Cells scanned per query: at M = 10^6 (2048 cells) measured to agree with the exact scan on >= 99 % of
#: hit/miss decisions at well under 1 ms per query (docs/scale.md).
NPROBE = 32
#: The index is rebuilt (cells retrained) once the memory holds this many times what it was trained on.
RETRAIN_GROWTH = 4
SEED = 0


def lists_for(n: int) -> int:
    """Cells for ``n`` prototypes: the power of two nearest ``2 sqrt(n)`` (2048 at 10^6: a query then scans
    about ``nprobe / 2048`` of the memory), at most ``n / 39`` (FAISS's minimum of training points per cell)
    and :data:`MAX_LIST`; 1 (a flat scan) for a small memory."""
    if n < 2 * 39:
        return 1
    nlist = 1 << int(round(np.log2(2 * np.sqrt(n))))
    while nlist > 1 and nlist * 39 > n:
        nlist //= 2
    return min(nlist, MAX_LIST)


class ApproxIndex:
    """An inverted file of ``d``-dimensional unit vectors at slots ``0 .. n-1`` (slot = FAISS id)."""

    def __init__(self, vectors: np.ndarray, threads: int = 1, nprobe: int = NPROBE):
        import faiss

        n, d = vectors.shape
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.d, self.trained_size, self.nlist = d, n, lists_for(n)
        self.threads = threads
        with _faiss_threads(threads):
            if self.nlist == 1:
                self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(d))
            else:
                quantizer = faiss.IndexFlatIP(d)
                index = faiss.IndexIVFFlat(quantizer, d, self.nlist, faiss.METRIC_INNER_PRODUCT)
                index.cp.seed = SEED
                rng = np.random.default_rng(SEED)
                sample = np.sort(rng.choice(n, size=min(n, TRAIN_PER_LIST * self.nlist), replace=False))
                index.train(vectors[sample])
                index.set_direct_map_type(faiss.DirectMap.Hashtable)  # remove_ids by id, not by a scan
                index.nprobe = min(nprobe, self.nlist)
                self._quantizer, self._index = quantizer, index
            if n:
                self._index.add_with_ids(vectors, np.arange(n, dtype=np.int64))
        self._live = n  # ids 0 .. _live-1 are in the index

    @property
    def nprobe(self) -> int:
        return getattr(self._index, "nprobe", 1)

    def set(self, slots: np.ndarray, vectors: np.ndarray, size: int) -> None:
        """Store ``vectors`` (n, d) at ``slots`` (ids below ``size``), then keep ids ``0 .. size-1``."""
        slots = np.asarray(slots, dtype=np.int64)
        with _faiss_threads(1):
            old = slots[slots < self._live]
            if len(old):
                self._index.remove_ids(old)
            if len(slots):
                self._index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), slots)
            self._live = max(self._live, int(slots.max()) + 1) if len(slots) else self._live
        self.resize(size)

    def resize(self, size: int) -> None:
        """Keep ids ``0 .. size-1`` searchable (ids below ``size`` must have been :meth:`set`)."""
        if size < self._live:
            with _faiss_threads(1):
                self._index.remove_ids(np.arange(size, self._live, dtype=np.int64))
        self._live = min(self._live, size) if size < self._live else self._live

    def search(self, z: np.ndarray, k: int) -> np.ndarray:
        """The (up to) ``k`` slots nearest to ``z`` (d,) in the cells scanned, best first."""
        return self.search_batch(z.reshape(1, -1), k, threads=1)[0]

    def search_batch(self, queries: np.ndarray, k: int = 1, threads: int | None = None) -> np.ndarray:
        """:meth:`search` for a batch (B, d): (B, k') slots, ``k' = min(k, stored)``; a row short of ``k'``
        found slots (too few in the cells scanned) repeats its best one."""
        k = min(k, self._live)
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if k == 0:
            return np.empty((len(q), 0), dtype=np.int64)
        with _faiss_threads(self.threads if threads is None else threads):
            _, labels = self._index.search(q, k)
        missing = labels < 0
        if missing.any():
            labels = np.where(missing, labels[:, :1], labels)
            if (labels[:, 0] < 0).any():  # nothing at all in the cells scanned: fall back to slot 0
                labels = np.where(labels < 0, 0, labels)
        return labels.astype(np.int64)


class _faiss_threads:
    """FAISS's OpenMP thread count inside the block (its own pool, set apart from torch's)."""

    def __init__(self, n: int):
        self.n = n

    def __enter__(self):
        import faiss

        self.before = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(self.n)

    def __exit__(self, *exc):
        import faiss

        faiss.omp_set_num_threads(self.before)


def library() -> str:
    """The library and version behind the index, for reports."""
    import faiss

    return f"faiss {faiss.__version__} IVFFlat"


def build(vectors: np.ndarray, threads: int = 1, nprobe: int = NPROBE) -> ApproxIndex:
    """An index of ``vectors`` (n, d) at slots ``0 .. n-1``, trained and filled with ``threads`` threads, then
    searched on one."""
    index = ApproxIndex(vectors, threads=threads, nprobe=nprobe)
    index.threads = 1
    return index
