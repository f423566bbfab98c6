"""pytest-benchmark: one retrieval decision against a memory of M = 10**5 prototypes (d = 64).

Run with ``PYTHONPATH=src python -m pytest benchmarks/test_bench_retrieval.py``.
``test_floor_matvec`` and ``test_floor_transposed`` time ``prototypes @ z`` and ``z @ PT`` (the memory's
(d, M) copy), the one product every rule does, for comparison (same group, so pytest-benchmark prints them
side by side); ``semcom bench --m 1000000`` reports the same ops as ratios at M = 10^6 (docs/scale.md).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from semcom.experiments.bench import filled_memory
from semcom.memory import HopfieldRule, NearestRule, PrototypeMemory

M, D = 10**5, 64
J = 12345  # the query sits next to this prototype

pytestmark = pytest.mark.benchmark(group=f"retrieval M={M} d={D}")


@pytest.fixture(scope="module")
def memory():
    return filled_memory(M, D, seed=0)


@pytest.fixture(scope="module")
def query(memory):
    g = torch.Generator().manual_seed(1)
    return F.normalize(memory.prototypes[J] + 0.02 * torch.randn(D, generator=g), dim=0)


def test_floor_matvec(benchmark, memory, query):
    s = benchmark(torch.mv, memory.prototypes, query)
    assert s.shape == (M,)


def test_floor_transposed(benchmark, memory, query):
    pt = torch.from_numpy(memory.transposed)
    s = benchmark(torch.mm, query[None], pt)
    assert s.shape == (1, M)


def test_exact_nearest(benchmark, memory, query):
    assert benchmark(memory.nearest, query)[0] == J


def test_exact_nearest_batch(benchmark, memory, query):
    q = torch.cat([query[None], F.normalize(torch.randn(63, D, generator=torch.Generator().manual_seed(2)), dim=1)])
    assert benchmark(memory.nearest_batch, q)[0][0] == J


def test_approx_nearest_decide(benchmark, memory, query):
    approx = PrototypeMemory.filled(memory.prototypes, index="approx")
    approx.approx_index()  # built outside the timing
    decision = benchmark(NearestRule(tau=0.9).decide, query, approx)
    assert decision.hit and decision.index == J


def test_nearest_decide(benchmark, memory, query):
    decision = benchmark(NearestRule(tau=0.9).decide, query, memory)
    assert decision.hit and decision.index == J


def test_hopfield_decide(benchmark, memory, query):
    decision = benchmark(HopfieldRule(tau=0.9, beta=20.0, top_k=4).decide, query, memory)
    assert decision.hit and decision.index == J
