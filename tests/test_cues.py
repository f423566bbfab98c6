"""SimHash cues and memory corruption models (building blocks of the fault-tolerant link)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from semcom.memory.corruption import permute_ids, perturb_prototypes
from semcom.memory.cues import SimHash, hamming, lookup, verify


def test_simhash_bit_disagreement_follows_the_angle():
    """Charikar: P[bit differs] = theta / pi; checked over many random planes."""
    d, bits = 32, 64
    g = torch.Generator().manual_seed(0)
    a = F.normalize(torch.randn(d, generator=g), dim=0)
    b = F.normalize(a + 0.6 * F.normalize(torch.randn(d, generator=g), dim=0), dim=0)
    theta = math.acos(float(a @ b))
    rates = [int(hamming(h(a), h(b))) / bits for h in (SimHash(d, bits, seed=s) for s in range(200))]
    assert abs(np.mean(rates) - theta / math.pi) < 0.02


@settings(max_examples=50, deadline=None)
@given(x=st.integers(0, 2**32 - 1), y=st.integers(0, 2**32 - 1))
def test_hamming_matches_popcount(x, y):
    assert int(hamming(x, y)) == bin(x ^ y).count("1")


def test_verify_and_lookup():
    d, h = 16, SimHash(16, 32, seed=1)
    protos = F.normalize(torch.randn(50, d, generator=torch.Generator().manual_seed(2)), dim=1)
    cues = h(protos)
    assert cues.shape == (50,) and cues.dtype == np.uint64
    for j in (0, 17, 49):
        assert verify(int(cues[j]), int(h(protos[j])), 32)
        noisy = F.normalize(protos[j] + 0.05 * torch.randn(d, generator=torch.Generator().manual_seed(j)), dim=0)
        assert lookup(int(h(noisy)), protos, h) == j          # found by content
    far = int(cues[3]) ^ 0xFFFFFFFF                            # every bit wrong
    assert not verify(int(cues[3]), far, 32) and lookup(far, protos[3:4], h) is None
    assert lookup(int(cues[0]), protos[:0], h) is None


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 200), p=st.floats(0, 1), seed=st.integers(0, 1000))
def test_permute_ids_moves_the_chosen_fraction(n, p, seed):
    ids = np.arange(n)
    out = permute_ids(ids, p, np.random.default_rng(seed))
    assert sorted(out) == list(range(n))                       # still a permutation
    moved = int(np.sum(out != ids))
    allowed = {k if k >= 2 else 0 for k in (math.floor(p * n), math.ceil(p * n))}
    assert moved in allowed                                    # p * n rounded stochastically


def test_perturbation_is_unit_norm_and_scales_with_sigma():
    protos = F.normalize(torch.randn(100, 64, generator=torch.Generator().manual_seed(0)), dim=1)
    for sigma, lo, hi in ((0.0, 0.9999, 1.0001), (0.05, 0.85, 0.95), (0.2, 0.45, 0.6)):
        out = perturb_prototypes(protos, sigma, np.random.default_rng(1))
        assert torch.allclose(out.norm(dim=1), torch.ones(100), atol=1e-5)
        cos = float((out * protos).sum(1).mean())
        assert lo <= cos <= hi, (sigma, cos)                  # E cos ~ 1 / sqrt(1 + d sigma^2)
