"""Corruption models of a receiver's memory (Hopfield paper, Section IV-D).

(a) ID-map desynchronisation: the map from semantic IDs (what the messages
name) to memory slots is permuted for a fraction ``p`` of entries; (b) vector
perturbation: stored prototypes get additive Gaussian noise ``N(0, sigma^2 I)``
and are renormalised. Both are seeded, and both act on the receiver only.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def permute_ids(id_map: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    """A copy of ``id_map`` with a fraction ``p`` of its entries permuted among themselves (a derangement
    of the chosen entries when there are at least two, so every chosen entry really moves).

    ``p * len`` is rounded stochastically (up with probability its fractional part), so the expected
    fraction is ``p`` even for a small map."""
    out = id_map.copy()
    n = int(np.floor(p * len(id_map) + rng.random()))
    if n < 2:
        return out
    chosen = rng.choice(len(id_map), size=n, replace=False)
    shift = rng.integers(1, n)  # a cyclic shift by 1..n-1 moves every chosen entry
    out[chosen] = id_map[np.roll(chosen, shift)]
    return out


def perturb_prototypes(prototypes: torch.Tensor, sigma: float, rng: np.random.Generator) -> torch.Tensor:
    """``normalize(mu + N(0, sigma^2 I))`` for every stored prototype."""
    noise = torch.from_numpy(rng.normal(0.0, sigma, size=tuple(prototypes.shape))).to(prototypes.dtype)
    return F.normalize(prototypes + noise, dim=-1)
