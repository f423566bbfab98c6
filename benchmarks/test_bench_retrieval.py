"""pytest-benchmark: one retrieval decision against a memory of M = 10**5 prototypes (d = 64).

Run with ``PYTHONPATH=src python -m pytest benchmarks/test_bench_retrieval.py``.
``test_floor_matvec`` times ``prototypes @ z``, the one product every rule does,
for comparison (same group, so pytest-benchmark prints them side by side).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from semcom.experiments.bench import filled_memory
from semcom.memory import HopfieldRule, NearestRule

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


def test_nearest_decide(benchmark, memory, query):
    decision = benchmark(NearestRule(tau=0.9).decide, query, memory)
    assert decision.hit and decision.index == J


def test_hopfield_decide(benchmark, memory, query):
    decision = benchmark(HopfieldRule(tau=0.9, beta=20.0, top_k=4).decide, query, memory)
    assert decision.hit and decision.index == J
