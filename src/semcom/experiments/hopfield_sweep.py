"""Figures 1 and 2 of the Hopfield paper from one tau sweep of the VQ (``nearest``) and Hopfield rules.

* Fig. 1a: bit reduction of Hopfield over VQ, ``1 - bits_H / bits_V``, against tau, per scenario.
* Fig. 1b: new-latent transmissions over time for both rules on the gradual-drift regimes.
* Fig. 2: rate-distortion-reuse: bits per frame against distortion (MSE) over the tau sweep, coloured by
  hit rate, both rules.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from semcom.experiments.hopfield_common import ReproConfig, evaluate, link_for, scenario_clips  # noqa: E402
from semcom.experiments.semantic_link import stream_latents  # noqa: E402
from semcom.models import SphericalAutoencoder  # noqa: E402
from semcom.report.figures import save_figure  # noqa: E402

SWEEP_RULES = ("nearest", "hopfield")
MARKERS = {"nearest": "o", "hopfield": "^"}


def sweep_cells(cfg: ReproConfig) -> list[tuple]:
    """The cells of the sweep: ``(scenario, rule, tau)`` for every point, then ``("new_latents", regime, rule)``
    for the Fig. 1b series of the gradual-drift regimes."""
    from semcom.sources import SCENARIOS

    return ([(sc, rule, tau) for sc in SCENARIOS for rule in SWEEP_RULES for tau in cfg.taus]
            + [("new_latents", regime, rule) for regime in SCENARIOS["GRADUAL_DRIFT"] for rule in SWEEP_RULES])


def sweep_cell(context: tuple, cell: tuple, seed: int):
    """One cell of :func:`sweep_cells` (deterministic: the clips are the run's, drawn from ``cfg.seed``)."""
    cfg, model, clips = context
    if cell[0] == "new_latents":
        _, regime, rule = cell
        latents = clips["GRADUAL_DRIFT"][regime][1]
        result = stream_latents(latents, link_for(cfg, rule, new_latent_tau(cfg), model), model)
        return [int(not r.hit) for r in result.records]
    scenario, rule, tau = cell
    s, _ = evaluate(model, clips[scenario], link_for(cfg, rule, tau, model), scenario)
    return {k: v for k, v in s.items() if k != "ssim"} | {"rule": rule, "tau": tau}


def tau_sweep(cfg: ReproConfig, model: SphericalAutoencoder, progress: Callable[[str], None] | None = None,
              strategy=None) -> dict:
    """Pooled scenario summaries for every (scenario, rule, tau); plus per-frame miss series for Fig. 1b.
    Each point is a cell of :func:`semcom.sweeps.map_cells` (``strategy``: serial, or Dask workers)."""
    from semcom.sweeps import map_cells

    clips = scenario_clips(model, cfg)
    cells = sweep_cells(cfg)
    got = map_cells(sweep_cell, cells, (cfg, model, clips), cfg.seed, progress, strategy)
    rows = [g for c, g in zip(cells, got) if c[0] != "new_latents"]
    series = {"tau": new_latent_tau(cfg)} | {f"{c[1]}/{c[2]}": g for c, g in zip(cells, got)
                                             if c[0] == "new_latents"}
    return {"rows": rows, "reduction": bit_reduction(rows), "new_latents": series}


def new_latent_tau(cfg: ReproConfig) -> float:
    """The tau of Fig. 1b: the median of the sweep's taus."""
    return float(np.median(cfg.taus))


def bit_reduction(rows: list[dict]) -> list[dict]:
    """``1 - bits_H / bits_V`` at each (scenario, tau), both accountings (Fig. 1a)."""
    by = {(r["scenario"], r["rule"], r["tau"]): r for r in rows}
    out = []
    for (scenario, rule, tau), h in by.items():
        v = by.get((scenario, "nearest", tau))
        if rule == "hopfield" and v is not None:
            out.append({"scenario": scenario, "tau": tau,
                        "reduction_wire": 1 - h["bits_per_frame_wire"] / v["bits_per_frame_wire"],
                        "reduction_paper": 1 - h["bits_per_frame_paper"] / v["bits_per_frame_paper"]})
    return out


def new_latent_series(clips: dict, cfg: ReproConfig, model: SphericalAutoencoder, tau: float | None = None) -> dict:
    """Per-frame miss indicators of both rules on the GRADUAL_DRIFT regimes (Fig. 1b), at the median sweep tau."""
    tau = tau if tau is not None else float(np.median(cfg.taus))
    out = {"tau": tau}
    for regime, (_, latents) in clips["GRADUAL_DRIFT"].items():
        for rule in SWEEP_RULES:
            result = stream_latents(latents, link_for(cfg, rule, tau, model), model)
            out[f"{regime}/{rule}"] = [int(not r.hit) for r in result.records]
    return out


def figure1(results: dict, out: Path) -> list[Path]:
    """Fig. 1a and Fig. 1b as PNG files in ``out``."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    red = results["reduction"]
    for scenario in dict.fromkeys(r["scenario"] for r in red):
        pts = sorted((r["tau"], 100 * r["reduction_wire"]) for r in red if r["scenario"] == scenario)
        ax.plot(*zip(*pts), marker="o", label=scenario)
    ax.axhline(0, color="black", lw=0.8)
    ax.set(xlabel="tau", ylabel="bit reduction of Hopfield over VQ (%)", title="Fig. 1a (wire bits)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    a = save_figure(fig, out / "fig1a_bit_reduction.png")

    series = {k: v for k, v in results["new_latents"].items() if k != "tau"}
    regimes = list(dict.fromkeys(k.split("/")[0] for k in series))
    fig, axes = plt.subplots(len(regimes), 1, figsize=(8, 2.2 * len(regimes)), squeeze=False)
    for ax, regime in zip(axes[:, 0], regimes):
        for i, rule in enumerate(SWEEP_RULES):
            miss = np.flatnonzero(series[f"{regime}/{rule}"])
            ax.vlines(miss, i, i + 0.8, color=("#1f77b4", "#d62728")[i], label=f"{rule} NEW ({len(miss)})")
        tau = results["new_latents"]["tau"]
        ax.set(yticks=[], xlabel="frame", title=f"{regime}: new-latent transmissions, tau={tau}")
        ax.legend(fontsize=7, loc="upper right")
    b = save_figure(fig, out / "fig1b_new_latents.png")
    return [a, b]


def figure2(results: dict, out: Path) -> list[Path]:
    """Fig. 2: bits per frame against MSE over the tau sweep, coloured by hit rate, per rule."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    rows = results["rows"]
    sc = None
    for rule in SWEEP_RULES:
        pts = [r for r in rows if r["rule"] == rule]
        sc = ax.scatter([r["mse"] for r in pts], [r["bits_per_frame_wire"] for r in pts],
                        c=[r["hit_rate"] for r in pts], cmap="viridis", vmin=0, vmax=1, marker=MARKERS[rule],
                        label=rule, edgecolor="black", lw=0.4)
    ax.set(xlabel="distortion (MSE)", ylabel="bits per frame (wire)", yscale="log",
           title="Fig. 2: rate-distortion-reuse (tau sweep, all scenarios)")
    fig.colorbar(sc, ax=ax, label="hit rate")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return [save_figure(fig, out / "fig2_rate_distortion_reuse.png")]
