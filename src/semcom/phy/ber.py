"""Monte Carlo bit and block error rates against Eb/N0 or SNR, counted with Sionna's ``count_errors``.

:func:`simulate_ber` draws random information bits (Sionna's
:class:`~sionna.phy.mapping.BinarySource`), sends them through a
:class:`~semcom.phy.link.PhyChain` (any modulation, channel and code) in
blocks (batches) of codewords, and counts errors with
:func:`sionna.phy.utils.count_errors` and :func:`~sionna.phy.utils.count_block_errors`,
the counters of Sionna's ``sim_ber``, with its stopping rule: a point stops after the
first block at which ``target_errors`` bit errors have been seen, or once ``max_bits``
information bits are sent, whichever comes first. Each block draws from its own generator,
seeded by :func:`semcom.sweeps.cell_seed` of (``seed``, (E_s/N_0 of the point, block index)), so blocks are
independent cells: ``strategy`` (:mod:`semcom.sweeps`, ``semcom ber --workers N``) runs them on Dask workers
a wave at a time, and the stopping rule is applied in block order to the counts that come back, so the
result is the serial one, bit for bit, whatever the order blocks finish in (a wave's blocks past the stopping
block are discarded). BLER is the codeword error rate (``None`` uncoded, where a "block" is
arbitrary). Each point also carries ``ber_theory``, the closed form of
:func:`semcom.phy.theory.theory_ber` for uncoded links where one exists.
"""

from __future__ import annotations

from semcom.phy import _sionna  # noqa: F401  (first: Sionna's import must not reseed torch)

# isort: split

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from sionna.phy.mapping import BinarySource
from sionna.phy.utils import count_block_errors, count_errors

from semcom.config import validated
from semcom.phy._rng import make_generator, use_generator
from semcom.phy.config import PhyConfig, ebn0_to_esn0_db, esn0_to_ebn0_db
from semcom.phy.link import PhyChain
from semcom.phy.theory import theory_ber

__all__ = ["BerPoint", "simulate_ber", "plot_ber", "DEFAULT_BATCH_BITS"]

#: Coded bits per Monte Carlo batch (rounded to whole codewords).
DEFAULT_BATCH_BITS = 1 << 17


@dataclass
class BerPoint:
    """One point of a BER curve. ``ebn0_db`` is per information bit, ``snr_db`` is ``E_s/N_0``."""

    ebn0_db: float
    snr_db: float
    ber: float
    bler: float | None
    bits: int
    errors: int
    blocks: int
    block_errors: int
    ber_theory: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def simulate_ber(modulation: str = "qpsk", channel: str = "awgn", code: str = "none",
                 ebn0_db: Sequence[float] | None = None, *, snr_db: Sequence[float] | None = None,
                 target_errors: int = 1000, max_bits: int = 10**6, batch_bits: int = DEFAULT_BATCH_BITS,
                 seed: int = 0, on_point: Callable[[BerPoint], None] | None = None,
                 strategy=None, **options) -> list[BerPoint]:
    """BER (and BLER when coded) of ``modulation`` over ``channel`` with ``code`` at each ``ebn0_db``
    (or each ``snr_db`` = ``E_s/N_0``; give one axis). ``options`` are further :class:`PhyConfig` fields
    (``codeword_bits``, ``equalizer``, ``num_streams``, ``coherence_symbols``, ``bsc_p``, ...).
    ``on_point`` is called after each point (progress bars). Seeded: same arguments, same numbers, serial or on
    any ``strategy`` (:mod:`semcom.sweeps`: Dask workers)."""
    from semcom.errors import ConfigError
    from semcom.sweeps import map_cells

    if (ebn0_db is None) == (snr_db is None):
        raise ConfigError("give the x axis as ebn0_db or snr_db (one of the two)")
    axis = list(ebn0_db if ebn0_db is not None else snr_db)
    if not axis:
        raise ConfigError("invalid ebn0_db=[]: no points to simulate")
    if target_errors < 1:
        raise ConfigError(f"invalid target_errors={target_errors!r}: must be >= 1")
    if max_bits < 1:
        raise ConfigError(f"invalid max_bits={max_bits!r}: must be >= 1")
    cfg: PhyConfig = validated(PhyConfig, modulation=modulation, channel=channel, code=code, seed=seed,
                               **options)
    for v in axis:  # same range check as the config's snr_db
        validated(PhyConfig, **{**cfg.model_dump(), "snr_db": float(v)})
    chain = PhyChain(cfg)
    k, n, m = chain.k, chain.n, cfg.bits_per_symbol
    batch = max(1, min(batch_bits // n, max_bits // k))  # never overshoot max_bits by more than a codeword
    max_iter = max(1, max_bits // (batch * k))  # at most max_bits (at least one codeword)
    coded = cfg.rate != 1
    diversity = cfg.num_rx_ant - cfg.streams + 1
    theory_channel = ("mimo-zf" if cfg.equalizer == "zf" else "mimo-lmmse") if channel == "mimo" else channel
    _CHAINS[cfg.model_dump_json()] = chain  # built once here; a Dask worker builds its own on first use
    context = (cfg.model_dump_json(), batch, k)
    # blocks in flight: two per worker thread on Dask; one at a time in this process (none wasted)
    wave = 2 * strategy.workers if getattr(strategy, "parallel", False) else 1

    points = []
    for v in axis:
        if ebn0_db is not None:
            eb, es = float(v), ebn0_to_esn0_db(float(v), m, cfg.rate)
        else:
            es, eb = float(v), esn0_to_ebn0_db(float(v), m, cfg.rate)
        counts = dict(errors=0, block_errors=0, bits=0, blocks=0)
        block, done = 0, False
        while not done and block < max_iter:
            cells = [(es, b) for b in range(block, min(block + wave, max_iter))]
            for errors, block_errors in map_cells(ber_block, cells, context, seed, strategy=strategy):
                counts["errors"] += errors
                counts["block_errors"] += block_errors
                counts["bits"] += batch * k
                counts["blocks"] += batch
                block += 1
                if counts["errors"] >= target_errors:  # sim_ber's rule, in block order
                    done = True
                    break
        ber = counts["errors"] / counts["bits"]
        if coded:
            theory = None
        elif channel == "bsc" and cfg.bsc_p is not None:
            theory = cfg.bsc_p  # a given crossover probability is the BER
        else:
            theory = theory_ber(cfg.modulation, theory_channel, eb, diversity=diversity)
        point = BerPoint(ebn0_db=eb, snr_db=es, ber=ber,
                         bler=counts["block_errors"] / counts["blocks"] if coded else None,
                         bits=counts["bits"], errors=counts["errors"], blocks=counts["blocks"],
                         block_errors=counts["block_errors"],
                         ber_theory=None if theory is None else float(theory))
        points.append(point)
        if on_point is not None:
            on_point(point)
    return points


_CHAINS: dict[str, PhyChain] = {}


def ber_block(context: tuple, cell: tuple[float, int], seed: int) -> tuple[int, int]:
    """One Monte Carlo block: ``batch`` codewords of random bits at ``E_s/N_0`` = ``cell[0]`` dB, every draw
    (bits, noise, fading) from a generator seeded by ``seed``; returns (bit errors, block errors)."""
    cfg_json, batch, k = context
    chain = _CHAINS.get(cfg_json)
    if chain is None:
        chain = _CHAINS[cfg_json] = PhyChain(PhyConfig.model_validate_json(cfg_json))
    generator = make_generator(seed)
    use_generator(chain, generator)
    source = use_generator(BinarySource(), generator)
    u = source([batch, k])
    with torch.no_grad():
        u_hat = chain(u, cell[0])
    return int(count_errors(u, u_hat)), int(count_block_errors(u, u_hat))


def plot_ber(points: Sequence[BerPoint | dict], path: str | Path, title: str = "", x: str = "ebn0_db") -> Path:
    """A semilog BER (and BLER) plot of ``points`` against ``x`` (``ebn0_db`` or ``snr_db``); closed form dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [p.to_dict() if isinstance(p, BerPoint) else dict(p) for p in points]
    xs = [r[x] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4.2))

    def positive(key):
        pts = [(xv, r[key]) for xv, r in zip(xs, rows) if r.get(key) is not None and r[key] > 0]
        return [a for a, _ in pts], [b for _, b in pts]

    ax.semilogy(*positive("ber"), "o-", label="BER (Monte Carlo)")
    if any(r.get("bler") is not None for r in rows):
        ax.semilogy(*positive("bler"), "s-", label="BLER (Monte Carlo)")
    if any(r.get("ber_theory") is not None for r in rows):
        ax.semilogy(*positive("ber_theory"), "k--", label="BER (closed form)")
    ax.set_xlabel("$E_b/N_0$ (dB)" if x == "ebn0_db" else "$E_s/N_0$ (dB)")
    ax.set_ylabel("error rate")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
