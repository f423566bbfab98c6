"""pytest-benchmark: the digital link's PhyChain (5G LDPC 1/2, n = 1536, 16-QAM, AWGN), batched against a loop.

Run with ``python -m pytest benchmarks/test_bench_phy.py``. Both tests push the
same 32 codewords through the same Sionna blocks: ``test_batched`` in one
call, ``test_unbatched_loop`` one codeword at a time (same group, so
pytest-benchmark prints them side by side; the ratio of their means is the
batching speed-up). ``semcom.phy.bench.run_phy_bench`` reports more batch sizes.
"""

from __future__ import annotations

import pytest
import torch

from semcom.config import validated
from semcom.phy import PhyChain, PhyConfig
from semcom.phy._rng import make_generator, use_generator

CODEWORDS = 32
ESN0_DB = 8.0

pytestmark = pytest.mark.benchmark(group=f"phy chain: {CODEWORDS} codewords, qam16 awgn ldpc-1/2 n=1536")


@pytest.fixture(scope="module")
def chain():
    c = PhyChain(validated(PhyConfig, modulation="qam16", channel="awgn", code="ldpc-1/2"))
    use_generator(c, make_generator(0))
    return c


@pytest.fixture(scope="module")
def bits(chain):
    return torch.randint(0, 2, (CODEWORDS, chain.k), generator=torch.Generator().manual_seed(0)).float()


def test_batched(benchmark, chain, bits):
    out = benchmark(chain, bits, ESN0_DB)
    assert out.shape == bits.shape


def test_unbatched_loop(benchmark, chain, bits):
    out = benchmark(lambda: [chain(bits[i:i + 1], ESN0_DB) for i in range(CODEWORDS)])
    assert len(out) == CODEWORDS
