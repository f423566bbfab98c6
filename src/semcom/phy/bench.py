"""CPU throughput of the digital link: batched Sionna blocks against a loop of one codeword at a time.

:func:`run_phy_bench` measures, for a few link configurations, the coded-bit
throughput of :class:`~semcom.phy.link.PhyChain` (LDPC encode, map, channel,
equalise, demap, BP decode: the same Sionna blocks in both cases)

* batched: ``B`` codewords per call, for each batch size ``B``;
* unbatched: a Python loop calling the chain on one codeword at a time
  (``loop_codewords`` codewords per timed sample),

in one process, in interleaved rounds (the order shuffled every round, seeded)
so that background load hits both alike; each figure is the median over the
rounds. ``speedup`` is ``throughput(batched) / throughput(unbatched)``. It also
times each stage at the largest batch (where the time goes), the BP
iteration count, and :meth:`DigitalLink.transmit` end to end (bytes in, bytes
out). ``torch``'s thread count is reported, and changed only when ``threads`` is given.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable

import torch

from semcom.config import validated
from semcom.phy._rng import make_generator, use_generator
from semcom.phy.config import PhyConfig
from semcom.phy.link import DigitalLink, PhyChain

__all__ = ["run_phy_bench", "format_phy_bench", "BENCH_CONFIGS"]

#: (label, PhyConfig fields, Es/N0 in dB): the codebook paper's 64-QAM over Rayleigh, the robust-codebook
#: paper's 16-QAM over 8x4 MIMO, and 16-QAM over AWGN; all rate-1/2 LDPC, n = 1536, at an SNR where
#: most codewords decode (BP runs all its iterations either way: Sionna's decoder has no early stop).
BENCH_CONFIGS = (
    ("qam16-awgn-ldpc1/2", dict(modulation="qam16", channel="awgn", code="ldpc-1/2"), 8.0),
    ("qam64-rayleigh-ldpc1/2", dict(modulation="qam64", channel="rayleigh", code="ldpc-1/2"), 20.0),
    ("qam16-mimo8x4-ldpc1/2", dict(modulation="qam16", channel="mimo", code="ldpc-1/2"), 12.0),
)


def _interleaved(fns: dict[str, Callable[[], object]], rounds: int, seed: int = 0) -> dict[str, float]:
    """Median seconds per call of each function, timed in ``rounds`` shuffled interleaved rounds."""
    for f in fns.values():  # warm-up (lazy builds, allocator)
        f()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    order = list(fns)
    rng = random.Random(seed)
    for _ in range(rounds):
        rng.shuffle(order)
        for k in order:
            t0 = time.perf_counter()
            fns[k]()
            samples[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in samples.items()}


def _chain(fields: dict, seed: int = 0, **extra) -> PhyChain:
    cfg = validated(PhyConfig, seed=seed, **fields, **extra)
    chain = PhyChain(cfg)
    use_generator(chain, make_generator(seed))
    return chain


def _bits(rows: int, k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, (rows, k), generator=g).float()


def run_phy_bench(quick: bool = False, configs=BENCH_CONFIGS, threads: int | None = None) -> dict:
    """Throughput of the link per configuration and batch size, with the ratio to the unbatched loop.

    ``threads``: run with ``torch.set_num_threads(threads)`` and restore the previous count afterwards
    (``None``: leave torch's count alone)."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run(quick, configs)
    finally:
        torch.set_num_threads(previous)


def _run(quick: bool, configs) -> dict:
    batches = (1, 16, 64) if quick else (1, 8, 32, 128, 512)
    loop_codewords = 8 if quick else 32
    rounds = 3 if quick else 5
    rows, stages, iterations = [], [], []
    for label, fields, esn0 in (configs[:1] if quick else configs):
        chain = _chain(fields)
        n, k = chain.n, chain.k
        u = _bits(max(batches + (loop_codewords,)), k, seed=1)
        fns = {f"batch{b}": (lambda b=b: chain(u[:b], esn0)) for b in batches}
        fns["loop"] = lambda: [chain(u[i:i + 1], esn0) for i in range(loop_codewords)]
        t = _interleaved(fns, rounds)
        loop_bps = loop_codewords * n / t["loop"]
        for b in batches:
            bps = b * n / t[f"batch{b}"]
            rows.append({"config": label, "batch": b, "codeword_bits": n, "seconds_per_call": t[f"batch{b}"],
                         "coded_mbit_s": bps / 1e6, "unbatched_coded_mbit_s": loop_bps / 1e6,
                         "speedup": bps / loop_bps, "ldpc_iterations": chain.cfg.ldpc_iterations})

        # where the time goes, at the largest batch
        b = batches[-1]
        ub = u[:b]
        with torch.no_grad():
            c = chain.code.encode(ub)
            x = chain.modulation.map(c)
            no = 10.0 ** (-esn0 / 10.0)
            x_hat, no_eff = chain.channel(x, no)
            llr = chain.modulation.demap(x_hat, no_eff)
            st = _interleaved({
                "encode": lambda: chain.code.encode(ub),
                "map": lambda: chain.modulation.map(c),
                "channel+equalise": lambda: chain.channel(x, no),
                "demap": lambda: chain.modulation.demap(x_hat, no_eff),
                "decode": lambda: chain.code.decode(llr),
            }, rounds)
        total = sum(st.values())
        stages += [{"config": label, "batch": b, "stage": s, "seconds": v, "share": v / total} for s, v in st.items()]

    # BP iterations (first configuration, largest batch)
    label, fields, esn0 = configs[0]
    b = batches[-1]
    its = (5, 20) if quick else (5, 10, 20, 40)
    chains = {i: _chain(fields, ldpc_iterations=i) for i in its}
    u = _bits(b, chains[its[0]].k, seed=2)
    t = _interleaved({f"it{i}": (lambda i=i: chains[i](u, esn0)) for i in its}, rounds)
    n = chains[its[0]].n
    iterations = [{"config": label, "batch": b, "ldpc_iterations": i, "seconds_per_call": t[f"it{i}"],
                   "coded_mbit_s": b * n / t[f"it{i}"] / 1e6} for i in its]

    # bytes in, bytes out
    link = DigitalLink(**fields, snr_db=esn0, seed=0)
    packets = [bytes(random.Random(i).randbytes(100)) for i in range(64 if not quick else 16)]
    t = _interleaved({"transmit": lambda: link.transmit(packets)}, rounds)
    res = link.transmit(packets)
    transmit = {"config": label, "packets": len(packets), "packet_bytes": 100, "codewords": res.codewords,
                "seconds": t["transmit"], "coded_mbit_s": res.coded_bits / t["transmit"] / 1e6,
                "payload_mbit_s": res.info_bits / t["transmit"] / 1e6, "erasures": res.erasures}
    return {"quick": quick, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "sionna": _sionna_version(), "loop_codewords": loop_codewords, "rounds": rounds,
            "rows": rows, "stages": stages, "iterations": iterations, "transmit": transmit}


def _sionna_version() -> str:
    from importlib.metadata import version

    return version("sionna-no-rt")


def format_phy_bench(result: dict):
    """Rich tables of :func:`run_phy_bench`'s result."""
    from rich.table import Table

    t = Table(title=f"digital link throughput, CPU, {result['threads']} threads "
                    f"(unbatched: {result['loop_codewords']} codewords one at a time)")
    for col in ("config", "batch", "coded Mbit/s", "unbatched Mbit/s", "speedup"):
        t.add_column(col, justify="right")
    for r in result["rows"]:
        t.add_row(r["config"], str(r["batch"]), f"{r['coded_mbit_s']:.3f}", f"{r['unbatched_coded_mbit_s']:.3f}",
                  f"{r['speedup']:.1f}x")
    s = Table(title="time per stage at the largest batch")
    for col in ("config", "stage", "ms", "share"):
        s.add_column(col, justify="right")
    for r in result["stages"]:
        s.add_row(r["config"], r["stage"], f"{r['seconds'] * 1e3:.1f}", f"{r['share']:.0%}")
    i = Table(title="BP iterations")
    for col in ("config", "batch", "iterations", "coded Mbit/s"):
        i.add_column(col, justify="right")
    for r in result["iterations"]:
        i.add_row(r["config"], str(r["batch"]), str(r["ldpc_iterations"]), f"{r['coded_mbit_s']:.3f}")
    return [t, s, i]
