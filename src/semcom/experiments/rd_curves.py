"""Rate–distortion curves of every semcom model against x264, x265 and AV1, with Bjøntegaard deltas.

Clips: the eight content regimes (rendered from photos no learned codec of the zoo trains on) and the
held-out clips of :mod:`semcom.sources.heldout` (from the validation photos). Systems:

* ``semcom-hyperprior`` — the codec link (:mod:`semcom.schemes.codec_link`: memory hits, per-tile hits,
  conditional misses, motion frames, B-frames and pixel refinement) at every quality and ``tau``; its curve is the
  lower envelope (Pareto front) of those points;
* ``semcom-hyperprior-lowdelay`` — the same link without B-frames (every frame coded as it comes, as the live
  link does), ``tau`` 0.95; ``semcom-hyperprior`` is also compared against it (the B-frames' own BD-rate);
* ``semcom-hyperprior-norefine`` — the same link without the pixel refinement (the learned codec's own ceiling),
  ``tau`` 0.95; ``semcom-hyperprior`` is also compared against it (the refinement's own BD-rate);
* ``semcom-hyperprior-nomotion`` — the same link without motion frames, B-frames or refinement (the memory
  alone), ``tau`` 0.95;
* ``semcom-hyperprior-intra`` — the same model with the memory and refinement off (every frame intra: the learned
  codec alone);
* ``semcom-sphere64`` — the Hopfield paper's link (d = 64, ``hopfield`` rule) over a ``tau`` sweep;
* ``x264``, ``x265``, ``av1`` — CRF sweeps through PyAV, bits from the elementary stream's packets
  (x264's version SEI left out, :mod:`semcom.anchors.codecs`).

Every semcom bit count is the length of a real stream file (header and CRCs included). PSNR is of the
whole clip; MS-SSIM is the per-frame mean (:func:`semcom.metrics.ms_ssim`). A scenario's curve averages
its regimes' bits and PSNR at each setting.

The Bjøntegaard delta rate (BD-rate; Bjøntegaard, VCEG-M33, 2001) of a test curve against an anchor is
``100 (10^(mean over [p_lo, p_hi] of log10 R_test(p) - log10 R_anchor(p)) - 1)`` %, where ``log10 R(p)``
is interpolated piecewise-cubically (PCHIP, as current JVET tools do) on each curve's Pareto front and
``[p_lo, p_hi]`` is where the two curves' PSNR ranges overlap (at least 0.5 dB, else no BD-rate is given).
Negative means fewer bits at equal PSNR.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from semcom.config import DEFAULT_BFRAMES
from semcom.metrics import ms_ssim, psnr

CODEC_CRFS = {"h264": (51, 45, 39, 33, 27, 21), "hevc": (51, 45, 39, 33, 27, 21), "av1": (63, 56, 49, 42, 35, 28)}
CODEC_NAMES = {"h264": "x264", "hevc": "x265", "av1": "av1"}
ANCHORS = ("x264", "x265", "av1")
#: The least PSNR overlap a BD-rate is computed over; less would extrapolate a mean from a sliver.
MIN_OVERLAP_DB = 0.5


@dataclass(frozen=True)
class RDConfig:
    """What ``rd-curves`` sweeps (``quick``: fewer points and frames, every system and clip kept)."""

    qualities: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)
    taus: tuple[float, ...] = (0.8, 0.95)
    sphere_taus: tuple[float, ...] = (0.95, 0.98, 0.99, 0.995, 0.999)
    crfs: dict = field(default_factory=lambda: dict(CODEC_CRFS))
    frames: int | None = None
    seed: int = 0
    m_max: int = 64

    @classmethod
    def quick(cls, seed: int = 0) -> RDConfig:
        return cls(qualities=(1, 3, 5, 8), taus=(0.8, 0.95), sphere_taus=(0.98, 0.995),
                   crfs={"h264": (51, 39, 27), "hevc": (51, 39, 27), "av1": (63, 49, 35)}, frames=24, seed=seed)


def clips(cfg: RDConfig) -> list[tuple[str, str, np.ndarray]]:
    """(scenario, clip name, frames) for the eight regimes and the held-out clips."""
    from semcom.sources import REGIMES, regime_clip, scenario_of
    from semcom.sources.heldout import DEFAULT_HELDOUT_FRAMES, HELDOUT_CLIPS, HELDOUT_SCENARIO, heldout_clip

    out = [(scenario_of(r), r, regime_clip(r, seed=cfg.seed, frames=cfg.frames)) for r in REGIMES]
    n = cfg.frames or DEFAULT_HELDOUT_FRAMES
    return out + [(HELDOUT_SCENARIO, c, heldout_clip(c, seed=cfg.seed, frames=n)) for c in HELDOUT_CLIPS]


def _row(scenario, regime, system, frames, decoded, bits_total, **extra) -> dict:
    return {"scenario": scenario, "regime": regime, "system": system, "model": extra.pop("model", None),
            "quality": extra.pop("quality", None), "tau": extra.pop("tau", None), "crf": extra.pop("crf", None),
            "bits_per_frame_wire": bits_total / len(frames), "psnr_db": psnr(frames, decoded),
            "ms_ssim": ms_ssim(frames, decoded), "hit_rate": extra.pop("hit_rate", None), **extra}


#: The codec link's systems: what each turns off (semcom.schemes.codec_link.CodecLinkConfig's fields).
SYSTEMS = {"semcom-hyperprior": {"bframes": DEFAULT_BFRAMES},
           "semcom-hyperprior-lowdelay": {"bframes": 0},
           "semcom-hyperprior-norefine": {"bframes": DEFAULT_BFRAMES, "refine": False},
           "semcom-hyperprior-nomotion": {"motion": False, "refine": False},
           "semcom-hyperprior-intra": {"motion": False, "refine": False}}


def hyperprior_points(model, scenario: str, regime: str, frames: np.ndarray, cfg: RDConfig,
                      keep: Callable[[dict, np.ndarray], None] | None = None) -> list[dict]:
    """The codec link at every (quality, tau); without B-frames, without refinement, and without motion frames,
    B-frames or refinement, at tau 0.95; and with the memory and refinement off; at every quality."""
    from semcom.schemes.codec_link import CodecLinkConfig, encode_clip, link_stats

    rows = []
    at_095 = [system for system in SYSTEMS if system not in ("semcom-hyperprior", "semcom-hyperprior-intra")]
    settings = ([("semcom-hyperprior", q, t) for q in cfg.qualities for t in cfg.taus]
                + [(system, q, 0.95) for system in at_095 for q in cfg.qualities]
                + [("semcom-hyperprior-intra", q, None) for q in cfg.qualities])
    for system, q, tau in settings:
        link = CodecLinkConfig(quality=q, tau=tau or 0.9, inter=tau is not None, m_max=cfg.m_max, **SYSTEMS[system])
        data, tx = encode_clip(frames, link, model)
        decoded = np.stack(tx.decoded)
        stats = link_stats(tx.records)
        row = _row(scenario, regime, system, frames, decoded, 8 * len(data), model="hyperprior", quality=q, tau=tau,
                   hit_rate=stats["hit_rate"], tile_hit_rate=stats["tile_hit_rate"],
                   motion_rate=stats["motion_rate"], bi_rate=stats["bi_rate"])
        rows.append(row)
        if keep:
            keep(row, decoded)
    return rows


def sphere_points(model, scenario: str, regime: str, frames: np.ndarray, cfg: RDConfig,
                  keep: Callable[[dict, np.ndarray], None] | None = None) -> list[dict]:
    """The Hopfield paper's link (d = 64, hopfield rule, fixed-length coding) over ``cfg.sphere_taus``: a stream
    file per tau, decoded by a separate receiver from its bytes
    (:func:`semcom.experiments.semantic_link.stream_latents`)."""
    from semcom.config import LinkConfig
    from semcom.experiments.semantic_link import encode_frames, stream_latents

    latents = encode_frames(model, frames)
    rows = []
    for tau in cfg.sphere_taus:
        res = stream_latents(latents, LinkConfig(rule="hopfield", tau=tau, d=model.hparams["d"]), model)
        row = _row(scenario, regime, "semcom-sphere64", frames, res.decoded, 8 * res.stream_bytes, model="sphere64",
                   quality=1, tau=tau, hit_rate=sum(r.hit for r in res.records) / len(frames))
        rows.append(row)
        if keep:
            keep(row, res.decoded)
    return rows


def codec_points(name: str, scenario: str, regime: str, frames: np.ndarray, crfs: Sequence[float],
                 keep: Callable[[dict, np.ndarray], None] | None = None) -> list[dict]:
    """A classical codec over a CRF sweep; bits from its real packets."""
    from semcom.anchors.codecs import get_codec

    codec = get_codec(name)
    rows = []
    for crf in crfs:
        enc = codec.encode(frames, crf)
        row = _row(scenario, regime, CODEC_NAMES[name], frames, enc.decoded, enc.bits_total, crf=crf)
        rows.append(row)
        if keep:
            keep(row, enc.decoded)
    return rows


# -- curves and Bjontegaard deltas --------------------------------------------------------------------------

def pareto_front(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (bits, psnr) points no other point beats on both, sorted by bits (PSNR strictly rising)."""
    front: list[tuple[float, float]] = []
    for b, p in sorted(points, key=lambda t: (t[0], -t[1])):
        if not front or p > front[-1][1]:
            front.append((b, p))
    return front


def bd_rate(anchor: Sequence[tuple[float, float]], test: Sequence[tuple[float, float]],
            samples: int = 200) -> tuple[float | None, float | None, float | None, str | None]:
    """BD-rate (%) of ``test`` against ``anchor`` (lists of (bits, psnr)); returns (pct, p_lo, p_hi, reason).

    ``pct`` is None, with the reason, when a curve has fewer than two points on its front or the two
    PSNR ranges overlap by less than :data:`MIN_OVERLAP_DB`."""
    from scipy.interpolate import PchipInterpolator

    fa, ft = pareto_front(anchor), pareto_front(test)
    if len(fa) < 2 or len(ft) < 2:
        return None, None, None, "a curve has fewer than two points on its front"
    lo = max(fa[0][1], ft[0][1])
    hi = min(fa[-1][1], ft[-1][1])
    if hi - lo < MIN_OVERLAP_DB:
        return None, None, None, (f"PSNR ranges overlap by less than {MIN_OVERLAP_DB} dB (anchor "
                                  f"{fa[0][1]:.2f}-{fa[-1][1]:.2f} dB, test {ft[0][1]:.2f}-{ft[-1][1]:.2f} dB)")
    grid = np.linspace(lo, hi, samples)

    def log_rate(front):
        p = np.array([q for _, q in front])
        r = np.log10([b for b, _ in front])
        return PchipInterpolator(p, r)(grid)

    delta = float(np.trapezoid(log_rate(ft) - log_rate(fa), grid) / (hi - lo))
    return 100.0 * (10.0**delta - 1.0), float(lo), float(hi), None


def scenario_rows(rows: Sequence[dict]) -> list[dict]:
    """Per scenario, each system's settings averaged over the scenario's regimes (bits and PSNR)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["scenario"], r["system"], r["quality"], r["tau"], r["crf"]), []).append(r)
    out = []
    for (scenario, system, quality, tau, crf), rs in groups.items():
        hits = [r["hit_rate"] for r in rs if r["hit_rate"] is not None]
        out.append({"scenario": scenario, "regime": "all", "system": system, "model": rs[0]["model"],
                    "quality": quality, "tau": tau, "crf": crf,
                    "bits_per_frame_wire": float(np.mean([r["bits_per_frame_wire"] for r in rs])),
                    "psnr_db": float(np.mean([r["psnr_db"] for r in rs])),
                    "ms_ssim": float(np.mean([r["ms_ssim"] for r in rs])),
                    "hit_rate": float(np.mean(hits)) if hits else None})
    return out


def bd_rows(rows: Sequence[dict], systems: Sequence[str], anchors: Sequence[str] = ANCHORS) -> list[dict]:
    """BD-rate of each semcom system against each anchor, per (scenario, regime) found in ``rows``."""
    curves: dict[tuple, list[tuple[float, float]]] = {}
    for r in rows:
        curves.setdefault((r["scenario"], r["regime"], r["system"]), []).append(
            (r["bits_per_frame_wire"], r["psnr_db"]))
    out = []
    for (scenario, regime, system), pts in curves.items():
        if system not in systems:
            continue
        for anchor in anchors:
            ref = curves.get((scenario, regime, anchor))
            if ref is None:
                continue
            pct, lo, hi, reason = bd_rate(ref, pts)
            out.append({"scenario": scenario, "regime": regime, "system": system, "anchor": anchor,
                        "bd_rate_pct": pct, "psnr_lo": lo, "psnr_hi": hi, "reason": reason})
    return out


def run_rd_curves(cfg: RDConfig, sphere, hyperprior, progress=None, strip_regime: str = "cam_shake",
                  strip_bits: float = 600.0, strategy=None) -> dict:
    """Every system on every clip; per-clip rows, per-scenario rows, BD-rates and the frames for the strip.
    Each (clip, system) is a cell of :func:`semcom.sweeps.map_cells` (``strategy``: serial, or Dask workers)."""
    from semcom.sweeps import map_cells

    clip_list = clips(cfg)
    cells = rd_cells(cfg, clip_list)
    context = (cfg, sphere, hyperprior, {regime: frames for _, regime, frames in clip_list}, strip_regime,
               strip_bits)
    rows: list[dict] = []
    strip: dict[str, tuple[float, np.ndarray, dict]] = {}
    for got_rows, got_strip in map_cells(rd_cell, cells, context, cfg.seed, progress, strategy):
        rows += got_rows
        strip |= got_strip  # each system is one cell of the strip clip
    originals = {regime: frames[len(frames) // 2] for _, regime, frames in clip_list if regime == strip_regime}
    scen = scenario_rows(rows)
    semcom_systems = (*SYSTEMS, "semcom-sphere64")
    full, own = ("semcom-hyperprior",), ("semcom-hyperprior-lowdelay", "semcom-hyperprior-norefine")  # B, refinement
    bd = (bd_rows(scen, semcom_systems) + bd_rows(rows, semcom_systems)
          + bd_rows(scen, full, own) + bd_rows(rows, full, own))
    return {"rows": rows, "scenario_rows": scen, "bd_rate": bd,
            "strip": {"regime": strip_regime, "target_bits": strip_bits, "original": originals.get(strip_regime),
                      "systems": {k: (v[1], v[2]) for k, v in strip.items()}}}


def rd_cells(cfg: RDConfig, clip_list=None) -> list[tuple[str, str, str]]:
    """``(scenario, clip, system group)`` for every clip: ``hyperprior``, ``sphere`` and each codec of
    ``cfg.crfs`` that PyAV has."""
    from semcom.anchors.codecs import CODECS

    clip_list = clips(cfg) if clip_list is None else clip_list
    groups = ["hyperprior", "sphere"] + [name for name in cfg.crfs if name in CODECS]
    return [(scenario, regime, g) for scenario, regime, _ in clip_list for g in groups]


def rd_cell(context: tuple, cell: tuple[str, str, str], seed: int) -> tuple[list[dict], dict]:
    """One system group on one clip: its rows, and (on the strip clip) each system's setting nearest the strip's
    target bits with its decoded middle frame. Deterministic (no draw depends on ``seed``)."""
    cfg, sphere, hyperprior, frames_of, strip_regime, strip_bits = context
    scenario, regime, group = cell
    frames = frames_of[regime]
    mid = len(frames) // 2
    strip: dict = {}

    def keep(row, decoded):
        if regime != strip_regime:
            return
        gap = abs(np.log(row["bits_per_frame_wire"] / strip_bits))
        if row["system"] not in strip or gap < strip[row["system"]][0]:
            strip[row["system"]] = (gap, decoded[mid], row)

    if group == "hyperprior":
        rows = hyperprior_points(hyperprior, scenario, regime, frames, cfg, keep)
    elif group == "sphere":
        rows = sphere_points(sphere, scenario, regime, frames, cfg, keep)
    else:
        rows = codec_points(group, scenario, regime, frames, cfg.crfs[group], keep)
    return rows, strip


# -- figures --------------------------------------------------------------------------------------------------

STYLE = {"semcom-hyperprior": ("tab:red", "o", "-"), "semcom-hyperprior-lowdelay": ("tab:olive", "*", "-"),
         "semcom-hyperprior-norefine": ("tab:pink", "P", "-"),
         "semcom-hyperprior-nomotion": ("tab:brown", "x", "-."),
         "semcom-hyperprior-intra": ("tab:orange", "s", "--"),
         "semcom-sphere64": ("tab:purple", "^", ":"), "x264": ("tab:blue", "v", "-"),
         "x265": ("tab:cyan", "<", "-"), "av1": ("tab:green", "D", "-")}


def figure_rd(res: dict, out) -> list:
    """PSNR against bits per frame, one panel per scenario (each system's Pareto front, all points faint)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from semcom.report.figures import save_figure

    scen = res["scenario_rows"]
    names = list(dict.fromkeys(r["scenario"] for r in scen))
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.8), squeeze=False)
    for ax, sc in zip(axes[0], names):
        for system, (colour, marker, ls) in STYLE.items():
            pts = [(r["bits_per_frame_wire"], r["psnr_db"]) for r in scen if r["scenario"] == sc
                   and r["system"] == system]
            if not pts:
                continue
            ax.scatter(*zip(*pts), s=8, color=colour, alpha=0.25)
            front = pareto_front(pts)
            ax.plot(*zip(*front), color=colour, marker=marker, ls=ls, ms=4, label=system)
        ax.set_xscale("log")
        ax.set_xlabel("bits per frame (wire)")
        ax.set_title(sc)
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("PSNR (dB)")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.suptitle("Rate-distortion per scenario (64x64; Pareto fronts, faint: every setting)")
    return [save_figure(fig, out / "rd_curves.png")]


def figure_strip(res: dict, out) -> list:
    """The middle frame of the strip clip as each system decodes it, at the setting nearest the target bits."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from semcom.report.figures import save_figure

    strip = res["strip"]
    systems = [s for s in STYLE if s in strip["systems"]]
    fig, axes = plt.subplots(1, len(systems) + 1, figsize=(2.0 * (len(systems) + 1), 2.5))
    axes[0].imshow(strip["original"])
    axes[0].set_title("original", fontsize=8)
    for ax, s in zip(axes[1:], systems):
        frame, row = strip["systems"][s]
        ax.imshow(frame)
        ax.set_title(f"{s}\n{row['bits_per_frame_wire']:.0f} b, {row['psnr_db']:.1f} dB", fontsize=7)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(f"{strip['regime']}, middle frame, each system near {strip['target_bits']:.0f} bits/frame",
                 fontsize=9)
    return [save_figure(fig, out / "rd_strip.png")]
