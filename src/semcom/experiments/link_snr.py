"""The semantic link over the air: PSNR, bits and channel uses per frame against SNR (``link-snr``).

Both rules stream the same clips through :class:`semcom.link.air.OverTheAir`
(16-QAM, rate-1/2 5G LDPC, AWGN or Rayleigh block fading, stop-and-wait ARQ);
a frame lost after every attempt is shown as the receiver's previous frame.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from semcom.config import DEFAULT_BETA, DEFAULT_TAU, LinkConfig  # noqa: E402
from semcom.experiments.semantic_link import encode_clip, stream_over_air  # noqa: E402
from semcom.metrics import mse  # noqa: E402
from semcom.report.figures import save_figure  # noqa: E402
from semcom.threads import torch_threads  # noqa: E402

REGIMES = ("illum_change", "cam_shake", "high_motion")
CHANNELS = ("awgn", "rayleigh")
RULES = ("nearest", "hopfield")


def snr_grid(quick: bool) -> tuple[float, ...]:
    return (0.0, 4.0, 6.0, 8.0, 12.0) if quick else (0.0, 2.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 16.0)


def _totals(frames: np.ndarray, result) -> dict:
    n = len(frames)
    e = result.extra
    return {"frames": n, "mse_sum": mse(frames, result.decoded) * n, "channel_uses": e["channel_uses_per_frame"] * n,
            "forward_bits": 8 * result.stream_bytes, "feedback_bits": e["feedback_bits_per_frame"] * n,
            "lost": e["lost_frames"], "attempts": e["attempts_per_frame"] * n,
            "hits": sum(r.hit for r in result.records)}


def run_link_snr(model, quick: bool = False, seed: int = 0, frames: int | None = None, max_attempts: int = 4,
                 modulation: str = "qam16", code: str = "ldpc-1/2", progress: Callable[[str], None] | None = None,
                 strategy=None) -> dict:
    """Every (channel, rule, SNR) row, each a cell of :func:`semcom.sweeps.map_cells` (``strategy``: serial, or
    Dask workers) on one torch thread. A cell's channel realisations come from its own
    :class:`~semcom.phy.DigitalLink`, seeded by :func:`semcom.sweeps.cell_seed` of (``seed``, cell)."""
    from semcom.sweeps import map_cells

    with torch_threads(1):
        clips = [encode_clip(model, r, seed, frames or (36 if quick else None)) for r in REGIMES]
    cells = [(channel, rule, snr) for channel in CHANNELS for rule in RULES for snr in snr_grid(quick)]
    rows = map_cells(link_snr_cell, cells, (model, clips, max_attempts, modulation, code), seed, progress,
                     strategy)
    return {"rows": rows, "regimes": list(REGIMES), "max_attempts": max_attempts}


def link_snr_steps(quick: bool) -> int:
    """Cells of :func:`run_link_snr` (progress steps)."""
    return len(CHANNELS) * len(RULES) * len(snr_grid(quick))


def link_snr_cell(context: tuple, cell: tuple, seed: int) -> dict:
    """One row: every clip streamed by ``rule`` over ``channel`` at ``snr`` dB, on a link seeded by ``seed``."""
    from semcom.phy import DigitalLink

    model, clips, max_attempts, modulation, code = context
    channel, rule, snr = cell
    hp = model.hparams
    phy = DigitalLink(modulation, channel, code, snr_db=10.0, seed=seed, fit_codeword=True)
    link = LinkConfig(rule=rule, tau=DEFAULT_TAU, beta=DEFAULT_BETA, d=hp["d"], height=hp["height"],
                      width=hp["width"])
    tot: dict = {}
    for f, z in clips:
        result = stream_over_air(z, link, model, phy, snr, max_attempts)
        for k, v in _totals(f, result).items():
            tot[k] = tot.get(k, 0) + v
    n = tot["frames"]
    return {"channel": channel, "modulation": modulation, "code": code, "rule": rule,
            "snr_db": snr, "frames": n, "psnr_db": float(10 * np.log10(n / tot["mse_sum"])),
            "bits_per_frame_wire": tot["forward_bits"] / n,
            "feedback_bits_per_frame": tot["feedback_bits"] / n,
            "channel_uses_per_frame": tot["channel_uses"] / n, "lost_frames": tot["lost"],
            "attempts_per_frame": tot["attempts"] / n, "hit_rate": tot["hits"] / n}


def figure(results: dict, out: Path) -> Path:
    """PSNR and channel uses per frame against SNR, per channel and rule."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    styles = {"nearest": "o-", "hopfield": "^--"}
    for channel, colour in zip(CHANNELS, ("#1f77b4", "#d62728")):
        for rule in RULES:
            rs = [r for r in results["rows"] if r["channel"] == channel and r["rule"] == rule]
            x = [r["snr_db"] for r in rs]
            label = f"{channel}, {rule}"
            axes[0].plot(x, [r["psnr_db"] for r in rs], styles[rule], color=colour, label=label)
            axes[1].plot(x, [r["channel_uses_per_frame"] for r in rs], styles[rule], color=colour, label=label)
            axes[2].plot(x, [r["lost_frames"] / r["frames"] for r in rs], styles[rule], color=colour, label=label)
    for ax, ylabel in zip(axes, ("PSNR (dB)", "channel uses per frame", "fraction of frames lost")):
        ax.set(xlabel="SNR Es/N0 (dB)", ylabel=ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("semantic link over 16-QAM, LDPC 1/2, stop-and-wait ARQ", fontsize=10)
    return save_figure(fig, out / "link_snr.png")
