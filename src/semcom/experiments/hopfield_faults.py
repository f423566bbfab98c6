"""Figure 3 of the Hopfield paper and the link under channel errors (Section IV-D).

* ``hopfield-fig3``: the receiver's memory is corrupted once, half-way through
  each clip, by an ID-map permutation of a fraction ``p`` of its entries
  (Fig. 3a) or by Gaussian noise of standard deviation ``sigma`` on its
  prototypes (Fig. 3b). Rows per rule (VQ = ``nearest``, ``hopfield``), level
  and protocol: ``paper`` (32-bit cues of the referenced prototype with 25 %
  tolerance, lookup, refresh; nothing else), ``readout-cue`` (the cue of the
  rule's readout instead), ``exact-cue`` (no tolerance) and ``semcom``
  (the paper's, plus a 16-bit check of the memory on every packet and of the
  referenced slot on hits, a 32-bit digest every 16 frames, and the hash-tree
  resync of :mod:`semcom.link.session` with bulk repair when a check fails).
* ``hopfield-errors``: every forward packet crosses a binary symmetric channel
  of bit-error rate ``p_b`` (or an erasure channel), for every rule.

Every run streams the eight regimes through :class:`semcom.link.session.ProtectedLink`
over several seeds of the fault; rows pool clips and seeds.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from semcom.config import FaultConfig, ProtectionConfig, validated  # noqa: E402
from semcom.experiments.hopfield_common import ReproConfig, link_for  # noqa: E402
from semcom.experiments.semantic_link import clip_metrics, encode_clip, stream_protected  # noqa: E402
from semcom.metrics import raw_bits_per_frame  # noqa: E402
from semcom.models import SphericalAutoencoder  # noqa: E402
from semcom.report.figures import save_figure  # noqa: E402
from semcom.sources import REGIMES  # noqa: E402

FIG3_RULES = ("nearest", "hopfield")
LEVELS = {"id_permutation": (0.0, 0.05, 0.1, 0.2, 0.3, 0.5),
          "vector_noise": (0.0, 0.02, 0.05, 0.1, 0.15, 0.2)}
PROTOCOLS = {"paper": ProtectionConfig(cue_bits=32, cue_tolerance=0.25, sync_every=0),
             "readout-cue": ProtectionConfig(cue_bits=32, cue_tolerance=0.25, sync_every=0, cue_of="readout"),
             "exact-cue": ProtectionConfig(cue_bits=32, cue_tolerance=0.0, sync_every=0),
             "semcom": ProtectionConfig(cue_bits=32, cue_tolerance=0.25, sync_every=16)}
BERS = (0.0, 1e-5, 1e-4, 1e-3, 3e-3, 1e-2)
ERASURES = (0.01, 0.05, 0.1, 0.2)
FAULT_TAU = 0.98
#: The paper's reading of Fig. 3: Delta bits (VQ minus Hopfield) of +381 at p = 0 and -381 at p = 0.5.
PAPER_FIG3 = {"delta_bits_p0": 381, "delta_bits_p05": -381}

SUMS = ("frames", "hits", "bits_wire", "bits_paper", "refreshes", "cue_failures", "lookups", "resyncs",
        "repaired_slots", "damaged_packets", "frames_lost", "faults", "unresolved_faults", "out_of_sync_frames",
        "decoded_known_bad")


def _seeds(cfg: ReproConfig) -> range:
    return range(cfg.seed, cfg.seed + (1 if cfg.quick else 3))


def run_clips(model: SphericalAutoencoder, clips: dict, link, protection: ProtectionConfig,
              faults_of: Callable[[int, int], FaultConfig], seeds) -> dict:
    """Every clip under the faults ``faults_of(frames, seed)`` for every seed; one pooled row."""
    hp = model.hparams
    b_raw = raw_bits_per_frame(hp["height"], hp["width"])
    rows = []
    for frames, latents in clips.values():
        for seed in seeds:
            result = stream_protected(latents, link, model, protection, faults_of(len(latents), seed))
            rows.append(clip_metrics(frames, result, b_raw, with_ssim=False) | result.extra)
    return pool(rows)


def pool(rows: list[dict]) -> dict:
    """Totals over clips and seeds; per-frame figures recomputed from them; the worst resync delay."""
    s = {k: sum(r[k] for r in rows) for k in SUMS}
    n = s["frames"]
    mse = sum(r["mse"] * r["frames"] for r in rows) / n
    delays = [r["frames_to_resync"] for r in rows if r["frames_to_resync"] is not None]
    return s | {"bits_per_frame_wire": s["bits_wire"] / n, "bits_per_frame_paper": s["bits_paper"] / n,
                "forward_bits_per_frame": sum(r["forward_bits_per_frame"] * r["frames"] for r in rows) / n,
                "feedback_bits_per_frame": sum(r["feedback_bits_per_frame"] * r["frames"] for r in rows) / n,
                "repair_bits_per_frame": sum(r["repair_bits_per_frame"] * r["frames"] for r in rows) / n,
                "hit_rate": s["hits"] / n, "mse": mse, "psnr_db": float(10 * np.log10(1 / max(mse, 1e-12))),
                "frames_to_resync": None if s["unresolved_faults"] else max(delays, default=0),
                "clips": len(rows)}


def _clips(model: SphericalAutoencoder, cfg: ReproConfig, regimes) -> dict:
    return {r: encode_clip(model, r, cfg.seed, cfg.frames) for r in regimes}


def fig3_cell(context: tuple, cell: tuple, seed: int) -> dict:
    """One row of Fig. 3: ``cell = (mode, protocol, rule, level)``. The fault seeds are the run's
    (:func:`_seeds`), the same in every cell, so that VQ and Hopfield meet the same corruptions (a paired
    comparison); nothing else is random, so the cell's own ``seed`` is not needed."""
    cfg, model, clips, seeds, protocols = context
    mode, protocol, rule, level = cell
    link = link_for(cfg, rule, FAULT_TAU, model)
    key = "corrupt_ids" if mode == "id_permutation" else "corrupt_sigma"
    row = run_clips(model, clips, link, protocols[protocol],
                    lambda t, s: validated(FaultConfig, **{key: level}, corrupt_at=t // 2, seed=s), seeds)
    return {"rule": rule, "mode": mode, "level": level, "protocol": protocol, "tau": link.tau} | row


def run_fig3(cfg: ReproConfig, model: SphericalAutoencoder, progress: Callable[[str], None] | None = None,
             regimes=REGIMES, levels_of: dict = LEVELS, protocols: dict = PROTOCOLS, strategy=None) -> dict:
    """Rows (rule, mode, level, protocol) under a one-off corruption half-way through every clip; each row is a
    cell of :func:`semcom.sweeps.map_cells` (``strategy``: serial, or Dask workers)."""
    from semcom.sweeps import map_cells

    clips, seeds = _clips(model, cfg, regimes), _seeds(cfg)
    cells = [(mode, protocol, rule, level) for mode, levels in levels_of.items() for protocol in protocols
             for rule in FIG3_RULES for level in levels]
    rows = map_cells(fig3_cell, cells, (cfg, model, clips, seeds, dict(protocols)), cfg.seed, progress, strategy)
    return {"rows": rows, "delta": delta_bits(rows), "paper": PAPER_FIG3, "seeds": list(seeds),
            "protocols": {k: v.model_dump() for k, v in protocols.items()}}


def fig3_steps(cfg: ReproConfig, levels_of: dict = LEVELS, protocols: dict = PROTOCOLS) -> int:
    """Cells of :func:`run_fig3` (progress steps)."""
    return sum(len(v) for v in levels_of.values()) * len(protocols) * len(FIG3_RULES)


def delta_bits(rows: list[dict]) -> list[dict]:
    """Delta bits = VQ's bits minus Hopfield's, per clip and per frame, and the refreshes of each."""
    by = {(r["mode"], r["protocol"], r["level"], r["rule"]): r for r in rows}
    out = []
    for (mode, protocol, level, rule), h in by.items():
        v = by.get((mode, protocol, level, "nearest"))
        if rule == "hopfield" and v is not None:
            out.append({"mode": mode, "protocol": protocol, "level": level,
                        "delta_bits_per_clip": (v["bits_wire"] - h["bits_wire"]) / h["clips"],
                        "delta_bits_per_frame": v["bits_per_frame_wire"] - h["bits_per_frame_wire"],
                        "refreshes_nearest": v["refreshes"], "refreshes_hopfield": h["refreshes"],
                        "psnr_nearest": v["psnr_db"], "psnr_hopfield": h["psnr_db"]})
    return out


def errors_cell(context: tuple, cell: tuple, seed: int) -> dict:
    """One row of ``hopfield-errors``: ``cell = (rule, channel, level)``; the fault seeds are the run's
    (:func:`_seeds`), shared by every rule as in :func:`fig3_cell`."""
    cfg, model, clips, seeds, protection = context
    rule, channel, level = cell
    link = link_for(cfg, rule, FAULT_TAU, model)
    key = "ber" if channel == "bsc" else "erasure_rate"
    row = run_clips(model, clips, link, protection, lambda t, s: validated(FaultConfig, **{key: level}, seed=s),
                    seeds)
    return {"rule": rule, "channel": channel, "level": level, "tau": link.tau} | row


def run_errors(cfg: ReproConfig, model: SphericalAutoencoder, progress: Callable[[str], None] | None = None,
               regimes=REGIMES, bers=BERS, erasures=ERASURES, strategy=None) -> dict:
    """Rows (rule, channel, level): every rule under bit errors and under erasures (semcom's protocol); each row
    is a cell of :func:`semcom.sweeps.map_cells` (``strategy``: serial, or Dask workers)."""
    from semcom.sweeps import map_cells

    clips, seeds, protection = _clips(model, cfg, regimes), _seeds(cfg), PROTOCOLS["semcom"]
    cells = [(rule, channel, level) for rule in cfg.rules
             for channel, levels in (("bsc", bers), ("erasure", erasures)) for level in levels]
    rows = map_cells(errors_cell, cells, (cfg, model, clips, seeds, protection), cfg.seed, progress, strategy)
    return {"rows": rows, "seeds": list(seeds), "protection": protection.model_dump()}


def errors_steps(cfg: ReproConfig, bers=BERS, erasures=ERASURES) -> int:
    """Cells of :func:`run_errors` (progress steps)."""
    return len(cfg.rules) * (len(bers) + len(erasures))


# -- figures -------------------------------------------------------------------------------------------

COLOURS = {"nearest": "#1f77b4", "hopfield": "#d62728", "paper": "#2ca02c"}
STYLES = {"paper": "--", "readout-cue": "-.", "exact-cue": ":", "semcom": "-"}


def figure3(results: dict, out: Path) -> list[Path]:
    """Fig. 3a (ID-map permutation) and 3b (vector noise): refreshes and Delta bits against the level."""
    paths = []
    for mode, name, xlabel in (("id_permutation", "fig3a_id_permutation.png", "fraction p of permuted IDs"),
                               ("vector_noise", "fig3b_vector_noise.png", "noise sigma on stored prototypes")):
        fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
        protocols = list(results["protocols"])
        for r_key in FIG3_RULES:
            for protocol in protocols:
                pts = sorted((r["level"], r["refreshes"] + r["repaired_slots"]) for r in results["rows"]
                             if r["mode"] == mode and r["rule"] == r_key and r["protocol"] == protocol)
                a.plot(*zip(*pts), STYLES[protocol], marker="o", color=COLOURS[r_key], label=f"{r_key}, {protocol}")
        a.set(xlabel=xlabel, ylabel="refreshes + repaired slots (all clips, seeds)", title=f"Fig. 3: {mode}")
        a.set_yscale("symlog", linthresh=1)
        a.legend(fontsize=7)
        a.grid(alpha=0.3)
        for protocol in protocols:
            pts = sorted((d["level"], d["delta_bits_per_clip"]) for d in results["delta"]
                         if d["mode"] == mode and d["protocol"] == protocol)
            b.plot(*zip(*pts), STYLES[protocol], marker="s", color="black", label=protocol)
        b.axhline(0, color="grey", lw=0.8)
        b.set(xlabel=xlabel, ylabel="Delta bits per clip (VQ - Hopfield)", title="Delta bits")
        b.legend(fontsize=7)
        b.grid(alpha=0.3)
        paths.append(save_figure(fig, out / name))
    return paths


def figure_errors(results: dict, out: Path) -> list[Path]:
    """PSNR and bits per frame against bit-error rate (and erasure rate) for each rule."""
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    rules = list(dict.fromkeys(r["rule"] for r in results["rows"]))
    for col, channel in enumerate(("bsc", "erasure")):
        for rule in rules:
            pts = sorted((r["level"], r["psnr_db"], r["bits_per_frame_wire"]) for r in results["rows"]
                         if r["rule"] == rule and r["channel"] == channel and r["level"] > 0)
            x = [p[0] for p in pts]
            axes[0, col].plot(x, [p[1] for p in pts], marker="o", color=COLOURS.get(rule), label=rule)
            axes[1, col].plot(x, [p[2] for p in pts], marker="o", color=COLOURS.get(rule), label=rule)
        xl = "bit-error rate p_b" if channel == "bsc" else "erasure rate"
        axes[0, col].set(xscale="log", xlabel=xl, ylabel="PSNR (dB)", title=f"{channel}: fidelity")
        axes[1, col].set(xscale="log", yscale="log", xlabel=xl, ylabel="bits per frame (both links)",
                         title=f"{channel}: rate")
        for ax in axes[:, col]:
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    return [save_figure(fig, out / "errors_psnr_bits.png")]
