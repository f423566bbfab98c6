"""SimHash cues: short fingerprints of prototypes (Hopfield paper, Section IV-D).

A cue of ``B`` bits is the sign pattern of ``B`` random projections of a
prototype (Charikar's SimHash): ``c_b = [<w_b, mu> >= 0]`` with ``w_b`` drawn
from a seeded Gaussian, the same at both ends. Two vectors at angle ``theta``
disagree on each bit with probability ``theta / pi``, so a receiver can check
that the prototype it is about to use is the one the transmitter meant
(:func:`verify`, tolerating a fraction of differing bits) and, if not, find it
by content (:func:`lookup`: the nearest cue in Hamming distance over the
whole memory, one product for all prototypes).
"""

from __future__ import annotations

import numpy as np
import torch


class SimHash:
    """``bits``-bit SimHash of ``d``-dimensional vectors, seeded (both ends build the same planes)."""

    def __init__(self, d: int, bits: int = 32, seed: int = 0):
        if bits < 1 or bits > 64:
            raise ValueError(f"cue bits must be in 1..64, got {bits}")
        self.bits = bits
        self.planes = torch.randn(bits, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        self._weights = (1 << np.arange(bits - 1, -1, -1, dtype=np.uint64)).astype(np.uint64)

    def __call__(self, vectors: torch.Tensor) -> np.ndarray:
        """Cues of (..., d) vectors as unsigned integers (..., ) of ``bits`` bits, MSB = first plane."""
        signs = (vectors.to(torch.float64) @ self.planes.T >= 0).numpy().astype(np.uint64)
        return (signs * self._weights).sum(axis=-1).astype(np.uint64)


def hamming(a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    """Bitwise Hamming distance between cues (broadcasting)."""
    return np.bitwise_count(np.bitwise_xor(np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64)))


def verify(cue: int, candidate: int, bits: int, tolerance: float = 0.25) -> bool:
    """True iff the cues differ in at most ``tolerance * bits`` bits."""
    return int(hamming(cue, candidate)) <= int(tolerance * bits)


def lookup(cue: int, prototypes: torch.Tensor, simhash: SimHash, tolerance: float = 0.25) -> int | None:
    """Content-addressable lookup: the slot whose cue is nearest to ``cue``, if within tolerance."""
    if prototypes.shape[0] == 0:
        return None
    dist = hamming(simhash(prototypes), cue)
    best = int(np.argmin(dist))
    return best if dist[best] <= int(tolerance * simhash.bits) else None
