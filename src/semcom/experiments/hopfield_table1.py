"""Table I of the Hopfield paper at matched PSNR, beside the published rows and classical codecs.

Per scenario, the target PSNR is the scenario's ceiling (every frame sent as
``Q(z)``) minus ``below_ceiling_db``; tau is calibrated per rule and scenario
(:mod:`semcom.experiments.calibration`); codecs are matched to the same
target clip by clip (:mod:`semcom.anchors`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from semcom.experiments.calibration import calibrate_tau
from semcom.experiments.hopfield_common import (
    PAPER_SAVINGS,
    PAPER_TABLE1,
    ReproConfig,
    ceiling_psnr,
    evaluate,
    link_for,
    scenario_clips,
)
from semcom.models import SphericalAutoencoder


def rule_rows(model, clips, cfg: ReproConfig, rule: str, scenario: str, target: float) -> list[dict]:
    """One rule as three systems, each at its own calibrated tau:

    * ``<rule>``: the paper's fixed-length stream;
    * ``<rule>+ac``: the same decisions, adaptive arithmetic coding (same tau and PSNR, fewer bits);
    * ``<rule>+res+ac``: residual refinement of the hits, arithmetic coded, calibrated anew.
    """
    cal = _calibrate(model, clips, cfg, rule, scenario, target, residual=False)
    rows = [_row(model, clips, cfg, rule, scenario, cal, "fixed", False),
            _row(model, clips, cfg, rule, scenario, cal, "adaptive", False) | {"paper": None}]
    if rule != "paper":  # the paper rule never refines anything useful: its readout ignores tau
        cal_res = _calibrate(model, clips, cfg, rule, scenario, target, residual=True)
        rows.append(_row(model, clips, cfg, rule, scenario, cal_res, "adaptive", True) | {"paper": None})
    return rows


def _calibrate(model, clips, cfg: ReproConfig, rule: str, scenario: str, target: float, residual: bool):
    def psnr_at(tau: float) -> float:
        return evaluate(model, clips, link_for(cfg, rule, tau, model, "fixed", residual), scenario)[0]["psnr_db"]

    return calibrate_tau(psnr_at, target, cfg.tol_db, cfg.tau_lo, cfg.tau_hi, cfg.iters)


def _row(model, clips, cfg: ReproConfig, rule: str, scenario: str, cal, coding: str, residual: bool) -> dict:
    s, _ = evaluate(model, clips, link_for(cfg, rule, cal.tau, model, coding, residual), scenario, with_ssim=True)
    system = rule + ("+res" if residual else "") + ("+ac" if coding == "adaptive" else "")
    return {"scenario": scenario, "system": system, "coding": coding, "residual": residual,
            "tau": cal.tau, "psnr_db": s["psnr_db"], "ssim": s["ssim"],
            "bits_per_frame_paper": s["bits_per_frame_paper"], "bits_per_frame_wire": s["bits_per_frame_wire"],
            "hit_rate": s["hit_rate"],
            "reasoning_capacity": s["reasoning_capacity"],
            "reasoning_capacity_paper": s["reasoning_capacity_paper"], "target_db": cal.target_db,
            "frames": s["frames"], "hits": s["hits"], "bits_wire": s["bits_wire"], "bits_paper": s["bits_paper"],
            "b_raw_bits_per_frame": s["b_raw_bits_per_frame"], "memory_size": s["memory_size"],
            "matched": cal.matched, "reason": cal.reason, "paper": PAPER_TABLE1.get((scenario, rule))}


def codec_rows(clips, cfg: ReproConfig, scenario: str, target: float) -> list[dict]:
    """Each classical codec matched clip by clip to ``target``, pooled over the scenario."""
    from semcom.anchors import CODECS, match_psnr

    rows = []
    for name in (c for c in cfg.codecs if c in CODECS):
        results = [(frames, match_psnr(CODECS[name], frames, target, cfg.tol_db)) for frames, _ in clips.values()]
        n = sum(len(f) for f, _ in results)
        mse = sum(10 ** (-m.psnr_db / 10) * len(f) for f, m in results) / n
        reasons = [m.reason for _, m in results if not m.matched]
        rows.append({"scenario": scenario, "system": name, "tau": None, "target_db": target,
                     "psnr_db": float(10 * np.log10(1 / mse)),
                     "ssim": sum(m.ssim * len(f) for f, m in results) / n,
                     "bits_per_frame_paper": None,
                     "bits_per_frame_wire": sum(m.bits_per_frame * len(f) for f, m in results) / n,
                     "hit_rate": None, "reasoning_capacity": None, "reasoning_capacity_paper": None,
                     "frames": n, "params": [m.param for _, m in results],
                     "matched": not reasons, "reason": "; ".join(reasons) or None, "paper": None})
    return rows


def savings(rows: list[dict]) -> dict:
    """Bit saving of hopfield over nearest (VQ) per scenario, ``1 - bits_H / bits_V``, both accountings
    (fixed-length streams, as in the paper)."""
    by = {(r["scenario"], r["system"]): r for r in rows}
    out = {}
    for (scenario, system), r in by.items():
        v = by.get((scenario, "nearest"))
        if system != "hopfield" or v is None:
            continue
        out[scenario] = {key: 1 - r[key] / v[key] for key in ("bits_per_frame_wire", "bits_per_frame_paper")}
        out[scenario]["matched"] = bool(r["matched"] and v["matched"])
    wire = [s["bits_per_frame_wire"] for s in out.values()]
    out["average"] = {"bits_per_frame_wire": float(np.mean(wire)) if wire else None,
                      "bits_per_frame_paper": float(np.mean([s["bits_per_frame_paper"] for s in out.values()]))
                      if wire else None}
    return out


def table1_cells(cfg: ReproConfig) -> list[tuple[str, str]]:
    """The cells of Table I: ``(scenario, rule)`` for every rule, then ``(scenario, "codecs")``, per scenario."""
    from semcom.sources import SCENARIOS

    return [(sc, rule) for sc in SCENARIOS for rule in (*cfg.rules, "codecs")]


def table1_cell(context: tuple, cell: tuple[str, str], seed: int) -> list[dict]:
    """The rows of one cell: a rule calibrated to the scenario's target (:func:`rule_rows`), or the codecs
    matched to it (:func:`codec_rows`). Deterministic: the clips are the run's, drawn from ``cfg.seed``."""
    cfg, model, clips, targets = context
    scenario, rule = cell
    target = targets[scenario]["target_db"]
    if rule == "codecs":
        return codec_rows(clips[scenario], cfg, scenario, target)
    return rule_rows(model, clips[scenario], cfg, rule, scenario, target)


def run_table1(cfg: ReproConfig, model: SphericalAutoencoder,
               progress: Callable[[str], None] | None = None, strategy=None) -> dict:
    """Every scenario x (rules + codecs) at matched PSNR; results with ``rows``, ``savings``, ``paper``.
    Each (scenario, rule) is a cell of :func:`semcom.sweeps.map_cells` (``strategy``: serial, or Dask workers)."""
    from semcom.sweeps import map_cells

    clips = scenario_clips(model, cfg)
    targets = {}
    for scenario, sc_clips in clips.items():
        ceiling = ceiling_psnr(model, sc_clips)
        targets[scenario] = {"ceiling_db": ceiling, "target_db": ceiling - cfg.below_ceiling_db}
    cells = table1_cells(cfg)
    rows = [r for got in map_cells(table1_cell, cells, (cfg, model, clips, targets), cfg.seed, progress, strategy)
            for r in got]
    return {"rows": rows, "targets": targets, "savings": savings(rows),
            "paper": {"table1": {f"{k[0]}/{k[1]}": v for k, v in PAPER_TABLE1.items()}, "savings": PAPER_SAVINGS}}
