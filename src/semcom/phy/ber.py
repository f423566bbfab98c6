"""Monte Carlo bit and block error rates against Eb/N0 or SNR, on Sionna's ``sim_ber``.

:func:`simulate_ber` draws random information bits (Sionna's
:class:`~sionna.phy.mapping.BinarySource`), sends them through a
:class:`~semcom.phy.link.PhyChain` (any modulation, channel and code) in
batches of codewords, and counts errors with
:func:`sionna.phy.utils.sim_ber`: a point stops once ``target_errors`` bit
errors have been seen or ``max_bits`` information bits sent, whichever comes
first. BLER is the codeword error rate (``None`` uncoded, where a "block" is
arbitrary). Each point also carries ``ber_theory``, the closed form of
:func:`semcom.phy.theory.theory_ber` for uncoded links where one exists.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from sionna.phy.mapping import BinarySource
from sionna.phy.utils import sim_ber

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
                 **options) -> list[BerPoint]:
    """BER (and BLER when coded) of ``modulation`` over ``channel`` with ``code`` at each ``ebn0_db``
    (or each ``snr_db`` = ``E_s/N_0``; give one axis). ``options`` are further :class:`PhyConfig` fields
    (``codeword_bits``, ``equalizer``, ``num_streams``, ``coherence_symbols``, ``bsc_p``, ...).
    ``on_point`` is called after each point (progress bars). Seeded: same arguments, same numbers."""
    from semcom.errors import ConfigError

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
    source = BinarySource()
    generator = make_generator(seed)
    use_generator(chain, generator)
    use_generator(source, generator)
    k, n, m = chain.k, chain.n, cfg.bits_per_symbol
    batch = max(1, min(batch_bits // n, max_bits // k))  # never overshoot max_bits by more than a codeword
    max_iter = max(1, max_bits // (batch * k))  # at most max_bits (at least one codeword)
    coded = cfg.rate != 1
    diversity = cfg.num_rx_ant - cfg.streams + 1
    theory_channel = ("mimo-zf" if cfg.equalizer == "zf" else "mimo-lmmse") if channel == "mimo" else channel

    points = []
    for v in axis:
        if ebn0_db is not None:
            eb, es = float(v), ebn0_to_esn0_db(float(v), m, cfg.rate)
        else:
            es, eb = float(v), esn0_to_ebn0_db(float(v), m, cfg.rate)
        counts = {}

        def mc_fun(batch_size, ebno_db, _es=es):
            u = source([batch_size, k])
            return u, chain(u, _es)

        def keep(mc_iter, snr_idx, ebno_dbs, bit_errors, block_errors, nb_bits, nb_blocks):
            counts.update(errors=int(bit_errors[0]), block_errors=int(block_errors[0]),
                          bits=int(nb_bits[0]), blocks=int(nb_blocks[0]))

        sim_ber(mc_fun, torch.tensor([es]), batch_size=batch, max_mc_iter=max_iter,
                num_target_bit_errors=target_errors, early_stop=False, verbose=False, callback=keep)
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
