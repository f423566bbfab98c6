"""Reproduced tables and figures, registered by name (``semcom reproduce NAME``).

Each entry runs its experiment, draws its figures into the run folder and
returns ``Outcome``: the results (written to ``results.json``), the figures,
and the tables to print and to put in ``report.html``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from semcom.report.tables import Column

Progress = Callable[[str], None] | None


@dataclass
class Outcome:
    results: dict
    figures: list[Path] = field(default_factory=list)
    tables: list[tuple[str, list[dict], list[Column]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Reproduction:
    name: str
    description: str
    #: Progress steps (the cells of its sweeps), from the config and the options: ``steps(cfg, **options)``.
    steps: Callable[..., int]
    #: ``run(cfg, model, progress, out, strategy=..., **options)``; ``strategy`` (semcom.sweeps) runs the cells.
    run: Callable[..., Outcome]
    #: ``semcom reproduce`` options this one takes (passed to ``run`` as keywords; others are refused).
    options: tuple[str, ...] = ()


TABLE1_COLUMNS: list[Column] = [
    ("scenario", "scenario", "{}"), ("system", "system", "{}"), ("tau", "tau", "{:.4f}"),
    ("target_db", "target", "{:.2f}"), ("psnr_db", "PSNR", "{:.2f}"), ("ssim", "SSIM", "{:.3f}"),
    ("bits_per_frame_paper", "bits eq.3", "{:.1f}"), ("bits_per_frame_wire", "bits wire", "{:.1f}"),
    ("hit_rate", "hit", "{:.3f}"), ("reasoning_capacity", "C_R", "{:.2f}"), ("matched", "match", "{}"),
    ("paper_bits", "paper bits", "{:.2f}"), ("paper_hit_rate", "paper hit", "{:.3f}"),
    ("paper_c_r", "paper C_R", "{:.2f}")]
SWEEP_COLUMNS: list[Column] = [
    ("scenario", "scenario", "{}"), ("rule", "rule", "{}"), ("tau", "tau", "{:.3f}"),
    ("bits_per_frame_paper", "bits/frame eq.3", "{:.2f}"), ("bits_per_frame_wire", "bits/frame wire", "{:.2f}"),
    ("hit_rate", "hit rate", "{:.3f}"), ("mse", "MSE", "{:.5f}"), ("psnr_db", "PSNR dB", "{:.2f}"),
    ("reasoning_capacity", "C_R", "{:.2f}"), ("memory_size", "M", "{}")]


def _table1(cfg, model, progress: Progress, out: Path, strategy=None) -> Outcome:
    from semcom.experiments.hopfield_table1 import run_table1

    res = run_table1(cfg, model, progress, strategy)
    shown = [r | {"paper_bits": (r["paper"] or {}).get("bits_per_frame"),
                  "paper_hit_rate": (r["paper"] or {}).get("hit_rate"),
                  "paper_c_r": (r["paper"] or {}).get("reasoning_capacity")} for r in res["rows"]]
    sav = [{"scenario": k, "saving_wire": v["bits_per_frame_wire"], "saving_paper": v["bits_per_frame_paper"],
            "paper": res["paper"]["savings"].get(k)} for k, v in res["savings"].items()]
    cols: list[Column] = [("scenario", "scenario", "{}"), ("saving_wire", "saving (wire)", "{:.1%}"),
                          ("saving_paper", "saving (eq.3)", "{:.1%}"), ("paper", "paper", "{:.0%}")]
    return Outcome(res, tables=[("Table I at matched PSNR", shown, TABLE1_COLUMNS),
                                ("Bit saving of hopfield over nearest (VQ)", sav, cols)])


def _sweep_steps(cfg, **_) -> int:
    from semcom.experiments.hopfield_sweep import sweep_cells

    return len(sweep_cells(cfg))


def _sweep(figure: str):
    def run(cfg, model, progress: Progress, out: Path, strategy=None) -> Outcome:
        from semcom.experiments import hopfield_sweep as hs
        from semcom.experiments.hopfield_theory import theorem1_monotonicity

        res = hs.tau_sweep(cfg, model, progress, strategy)
        figs = hs.figure1(res, out) if figure == "fig1" else hs.figure2(res, out)
        tables = [("tau sweep (pooled per scenario)", res["rows"], SWEEP_COLUMNS)]
        notes = []
        if figure == "fig1":
            tables.append(("Fig. 1a: bit reduction of hopfield over nearest", res["reduction"],
                           [("scenario", "scenario", "{}"), ("tau", "tau", "{:.3f}"),
                            ("reduction_wire", "reduction (wire)", "{:.1%}"),
                            ("reduction_paper", "reduction (eq.3)", "{:.1%}")]))
            res["theorem1"] = theorem1_monotonicity(res["rows"], group_key=("scenario", "rule"))
            notes.append("Theorem 1 on the measured sweep: "
                         + ("every claimed sign holds" if res["theorem1"]["all_hold"] else
                            "some claimed signs fail (see results.json, key theorem1)"))
        return Outcome(res, figs, tables, notes)

    return run


THEORY_COLUMNS: list[Column] = [
    ("regime", "tau regime", "{}"), ("normalize", "norm.", "{}"), ("beta", "beta", "{:g}"), ("eps", "eps", "{:g}"),
    ("d", "d", "{}"), ("tau", "tau", "{:.4f}"), ("bound", "bound", "{:.3f}"), ("p_miss_vq", "P_miss VQ", "{:.3f}"),
    ("ratio_paper", "ratio paper", "{:.3f}"), ("verdict_paper", "paper", "{}"),
    ("ratio_hopfield", "ratio hopfield", "{:.3f}"), ("verdict_hopfield", "hopfield", "{}")]


def _theory_steps(cfg, **_) -> int:
    from semcom.experiments.hopfield_theory import DEFAULT_GRID, theorem2_cells

    return len(theorem2_cells(DEFAULT_GRID))


def _theory(cfg, model, progress: Progress, out: Path, strategy=None) -> Outcome:
    from semcom.experiments.hopfield_theory import run_hopfield_theory, theorem2_figure

    res = run_hopfield_theory(None, quick=cfg.quick, seed=cfg.seed, strategy=strategy, progress=progress)
    res.pop("runtime_s", None)  # wall-clock time: results.json keeps it in meta.seconds, outside the numbers
    figs = []
    for nz in (True, False):
        sel = [r for r in res["rows"] if r["normalize"] == nz]
        figs.append(theorem2_figure(sel, out / f"theorem2_{'normalized' if nz else 'unnormalized'}.png"))
    verdicts = {}
    for r in res["rows"]:
        for v in ("paper", "hopfield"):
            verdicts[f"{v}:{r[f'verdict_{v}']}"] = verdicts.get(f"{v}:{r[f'verdict_{v}']}", 0) + 1
    res["verdict_counts"] = verdicts
    note = "Bound (10) verdicts over the grid: " + ", ".join(f"{k} x{n}" for k, n in sorted(verdicts.items()))
    return Outcome(res, figs, [("Theorem 2 by Monte Carlo", res["rows"], THEORY_COLUMNS)], [note])


LINK_COLUMNS: list[Column] = [
    ("channel", "channel", "{}"), ("rule", "rule", "{}"), ("snr_db", "SNR dB", "{:g}"), ("psnr_db", "PSNR", "{:.2f}"),
    ("bits_per_frame_wire", "bits/frame", "{:.1f}"), ("channel_uses_per_frame", "uses/frame", "{:.1f}"),
    ("attempts_per_frame", "attempts", "{:.2f}"), ("lost_frames", "lost", "{}"), ("hit_rate", "hit", "{:.3f}")]


def _link_snr_steps(cfg, **_) -> int:
    from semcom.experiments.link_snr import link_snr_steps

    return link_snr_steps(cfg.quick)


def _link_snr(cfg, model, progress: Progress, out: Path, strategy=None) -> Outcome:
    from semcom.experiments.link_snr import figure, run_link_snr

    res = run_link_snr(model, quick=cfg.quick, seed=cfg.seed, frames=cfg.frames, progress=progress,
                       strategy=strategy)
    return Outcome(res, [figure(res, out)], [("The semantic link over the air", res["rows"], LINK_COLUMNS)])


FIG3_COLUMNS: list[Column] = [
    ("protocol", "protocol", "{}"), ("mode", "mode", "{}"), ("level", "level", "{:g}"), ("rule", "rule", "{}"),
    ("refreshes", "refreshes", "{}"), ("cue_failures", "cue fails", "{}"), ("lookups", "lookups", "{}"),
    ("repaired_slots", "repaired", "{}"), ("bits_per_frame_wire", "bits/frame", "{:.1f}"),
    ("repair_bits_per_frame", "repair/frame", "{:.1f}"), ("psnr_db", "PSNR", "{:.2f}"),
    ("out_of_sync_frames", "desync frames", "{}"), ("frames_to_resync", "to resync", "{}")]
DELTA_COLUMNS: list[Column] = [
    ("protocol", "protocol", "{}"), ("mode", "mode", "{}"), ("level", "level", "{:g}"),
    ("refreshes_nearest", "refreshes VQ", "{}"), ("refreshes_hopfield", "refreshes H", "{}"),
    ("delta_bits_per_clip", "Delta bits/clip", "{:+.0f}"), ("delta_bits_per_frame", "Delta bits/frame", "{:+.2f}"),
    ("psnr_nearest", "PSNR VQ", "{:.2f}"), ("psnr_hopfield", "PSNR H", "{:.2f}")]
ERRORS_COLUMNS: list[Column] = [
    ("channel", "channel", "{}"), ("level", "level", "{:g}"), ("rule", "rule", "{}"), ("psnr_db", "PSNR", "{:.2f}"),
    ("bits_per_frame_wire", "bits/frame", "{:.1f}"), ("forward_bits_per_frame", "forward", "{:.1f}"),
    ("feedback_bits_per_frame", "feedback", "{:.1f}"), ("repair_bits_per_frame", "repair", "{:.1f}"),
    ("refreshes", "refreshes", "{}"), ("frames_lost", "lost", "{}"), ("frames_to_resync", "to resync", "{}")]


def _fig3_steps(cfg, **_) -> int:
    from semcom.experiments.hopfield_faults import fig3_steps

    return fig3_steps(cfg)


def _errors_steps(cfg, **_) -> int:
    from semcom.experiments.hopfield_faults import errors_steps

    return errors_steps(cfg)


def _fig3(cfg, model, progress: Progress, out: Path, strategy=None) -> Outcome:
    from semcom.experiments.hopfield_faults import figure3, run_fig3
    from semcom.threads import torch_threads

    with torch_threads(1):   # per-frame ops are tiny: idle intra-op threads only spin
        res = run_fig3(cfg, model, progress, strategy=strategy)
    return Outcome(res, figure3(res, out), [("Fig. 3: refreshes under receiver memory corruption", res["rows"],
                                             FIG3_COLUMNS),
                                            ("Fig. 3: Delta bits, VQ minus Hopfield", res["delta"], DELTA_COLUMNS)],
                   [f"paper: Delta bits +{res['paper']['delta_bits_p0']} at p = 0, "
                    f"{res['paper']['delta_bits_p05']} at p = 0.5"])


def _errors(cfg, model, progress: Progress, out: Path, strategy=None) -> Outcome:
    from semcom.experiments.hopfield_faults import figure_errors, run_errors
    from semcom.threads import torch_threads

    with torch_threads(1):
        res = run_errors(cfg, model, progress, strategy=strategy)
    return Outcome(res, figure_errors(res, out), [("The link under channel errors", res["rows"], ERRORS_COLUMNS)])


RD_COLUMNS: list[Column] = [
    ("scenario", "scenario", "{}"), ("system", "system", "{}"), ("quality", "q", "{}"), ("tau", "tau", "{}"),
    ("crf", "crf", "{}"), ("bits_per_frame_wire", "bits/frame", "{:.1f}"), ("psnr_db", "PSNR", "{:.2f}"),
    ("ms_ssim", "MS-SSIM", "{:.3f}"), ("hit_rate", "hit", "{:.2f}")]
BD_COLUMNS: list[Column] = [
    ("scenario", "scenario", "{}"), ("system", "system", "{}"), ("anchor", "anchor", "{}"),
    ("bd_rate_pct", "BD-rate %", "{:+.1f}"), ("psnr_lo", "from dB", "{:.2f}"), ("psnr_hi", "to dB", "{:.2f}"),
    ("reason", "why none", "{}")]


def _rd_config(cfg):
    from semcom.experiments.rd_curves import RDConfig

    return RDConfig.quick(cfg.seed) if cfg.quick else RDConfig(seed=cfg.seed)


def _rd_steps(cfg, **_) -> int:
    from semcom.experiments.rd_curves import rd_cells

    return len(rd_cells(_rd_config(cfg)))


def _rd_curves(cfg, model, progress: Progress, out: Path, strategy=None) -> Outcome:
    from semcom.experiments.rd_curves import figure_rd, figure_strip, pareto_front, run_rd_curves
    from semcom.models.zoo import load_model
    from semcom.threads import torch_threads

    rd = _rd_config(cfg)
    with torch_threads(1):  # 64x64 frames one at a time: one thread is the fastest (semcom bench)
        res = run_rd_curves(rd, model, load_model("hyperprior"), progress, strategy=strategy)
    figs = figure_rd(res, out) + figure_strip(res, out)
    strip = res.pop("strip")
    res["strip"] = {"regime": strip["regime"], "target_bits": strip["target_bits"],
                    "systems": {k: v[1] for k, v in strip["systems"].items()}}
    fronts = []
    for sc in dict.fromkeys(r["scenario"] for r in res["scenario_rows"]):
        for system in dict.fromkeys(r["system"] for r in res["scenario_rows"]):
            sel = [r for r in res["scenario_rows"] if r["scenario"] == sc and r["system"] == system]
            front = set(pareto_front([(r["bits_per_frame_wire"], r["psnr_db"]) for r in sel]))
            fronts += [r for r in sel if (r["bits_per_frame_wire"], r["psnr_db"]) in front]
    bd = [r for r in res["bd_rate"] if r["regime"] == "all"]
    return Outcome(res, figs, [("Rate-distortion fronts per scenario (mean over its clips)", fronts, RD_COLUMNS),
                               ("BD-rate of semcom against each codec, per scenario", bd, BD_COLUMNS)])


CODEBOOK_COLUMNS: list[Column] = [
    ("scheme", "scheme", "{}"), ("code", "code", "{}"), ("snr_db", "SNR dB", "{:.0f}"), ("psnr_db", "PSNR", "{:.2f}"),
    ("ms_ssim", "MS-SSIM", "{:.3f}"), ("lpips", "LPIPS", "{:.3f}"), ("bits_per_image", "bits/img", "{:.0f}"),
    ("channel_uses_per_image", "uses/img", "{:.0f}"), ("failed_fraction", "failed", "{:.2f}")]
CODEBOOK_J_COLUMNS: list[Column] = [
    ("J", "J", "{}"), ("p", "p", "{:g}"), ("bits_per_image", "bits/img", "{}"), ("distortion_q", "D_q", "{:.4f}"),
    ("distortion_ch_theory", "D_ch (18)", "{:.4f}"), ("distortion_theory", "D (20)", "{:.4f}"),
    ("distortion_measured", "D measured", "{:.4f}"), ("psnr_db", "PSNR", "{:.2f}"), ("optimal", "J* (21)", "{}"),
    ("optimal_measured", "J* measured", "{}")]


def _codebook_config(cfg, snr=None, code=None, mu=None, lpips_vgg16=None, lpips_lin=None):
    from semcom.experiments.codebook_paper import CodebookReproConfig

    kw = {k: v for k, v in (("snrs", snr), ("code", code), ("mu", mu), ("lpips_vgg16", lpips_vgg16),
                            ("lpips_lin", lpips_lin)) if v is not None}
    if "snrs" in kw:
        kw["snrs"] = tuple(kw["snrs"])
    return CodebookReproConfig.quick(cfg.seed, **kw) if cfg.quick else CodebookReproConfig(seed=cfg.seed, **kw)


def _codebook_fig_steps(cfg, snr=None, **_) -> int:
    from semcom.experiments.codebook_paper import SCHEMES

    return len(SCHEMES) * len(_codebook_config(cfg, snr).snrs)


def _codebook_fig(figure: str):
    def run(cfg, model, progress: Progress, out: Path, snr=None, code=None, lpips_vgg16=None,
            lpips_lin=None, strategy=None) -> Outcome:
        from semcom.experiments import codebook_paper as cp

        res = cp.run_fig4(_codebook_config(cfg, snr, code, lpips_vgg16=lpips_vgg16, lpips_lin=lpips_lin), progress,
                          strategy)
        figs = cp.figure_fig4(res, out) if figure == "fig4" else cp.figure_fig3(res, out)
        cols = [("scheme", "scheme", "{}"), ("J", "J", "{}"), ("psnr_db_error_free", "PSNR no errors", "{:.2f}"),
                ("ms_ssim_error_free", "MS-SSIM no errors", "{:.3f}"), ("index_entropy_bits", "H(i) bits", "{:.2f}"),
                ("used_codewords", "used", "{}"), ("train_seconds", "train s", "{:.0f}")]
        notes = []
        h = res["headline"]
        if h:
            lp = ("LPIPS not computed (no --lpips-vgg16)" if h["lpips_gain_pct"] is None
                  else f"{h['lpips_gain_pct']:+.1f} % LPIPS ({res['lpips_variant']})")
            notes.append(f"At {h['snr_db']:g} dB: proposed over vqvae {h['psnr_gain_pct']:+.1f} % PSNR "
                         f"(paper +{cp.PAPER['psnr_gain_pct_at_10db']} %), {lp} (paper "
                         f"+{cp.PAPER['lpips_gain_pct_at_10db']} %), {h['ms_ssim_gain_pct']:+.1f} % MS-SSIM; "
                         f"vqvae+channel {h['channel_aware_psnr_gain_pct']:+.1f} % PSNR.")
        return Outcome(res, figs, [(f"Fig. {figure[-1]}: every scheme against SNR", res["rows"], CODEBOOK_COLUMNS),
                                   ("The shipped codebooks, error-free, on the test images", res["codebooks"], cols)],
                       notes)
    return run


def _codebook_j(cfg, model, progress: Progress, out: Path, mu=None, strategy=None) -> Outcome:
    from semcom.experiments import codebook_paper as cp

    res = cp.run_j(_codebook_config(cfg, mu=mu), progress, strategy)
    return Outcome(res, cp.figure_j(res, out), [("Distortion and PSNR against J (eqs. 20-21)", res["rows"],
                                                CODEBOOK_J_COLUMNS)])


def _codebook_theory(cfg, model, progress: Progress, out: Path, strategy=None) -> Outcome:
    from semcom.experiments import codebook_paper as cp

    res = cp.run_theory(_codebook_config(cfg), progress, strategy)
    return Outcome(res, cp.figure_theory(res, out), [
        ("Eq. (16): index error probability", res["index_error"],
         [("n", "n", "{}"), ("p", "p", "{:g}"), ("pe_theory", "P_e (16)", "{:.4f}"),
          ("pe_measured", "measured", "{:.4f}"), ("stderr", "stderr", "{:.4f}")]),
        ("Eq. (17): P(k|i), mean total-variation distance to measured frequencies", res["transition"],
         [("J", "J", "{}"), ("p", "p", "{:g}"), ("tv_exact", "exact (17)", "{:.4f}"),
          ("tv_random_labelling", "random labelling", "{:.4f}"), ("samples", "samples", "{}")]),
        ("Eqs. (18)-(20) on the trained codebooks", res["distortion"],
         [("scheme", "scheme", "{}"), ("p", "p", "{:g}"), ("distortion_q", "D_q", "{:.4f}"),
          ("distortion_ch_exact", "D_ch exact", "{:.4f}"),
          ("distortion_ch_random_labelling", "D_ch random lab.", "{:.4f}"),
          ("distortion_ch_measured", "D_ch MC", "{:.4f}"), ("stderr", "stderr", "{:.4f}")])])


CAMPAIGN_COLUMNS: list[Column] = [
    ("protocol", "protocol", "{}"), ("rule", "rule", "{}"), ("frames", "frames", "{}"), ("events", "events", "{}"),
    ("unresolved", "unresolved", "{}"), ("unresolved_with_room", "unres. (room)", "{}"),
    ("resync_median", "resync p50", "{}"), ("resync_p99", "p99", "{:.1f}"), ("resync_max", "max", "{}"),
    ("lost_fraction", "lost", "{:.4f}"), ("lost_fraction_channel", "lost, channel", "{:.4f}"),
    ("silent", "silent", "{}"), ("wrong", "wrong", "{}"), ("decoded_known_bad", "known bad", "{}"),
    ("bits_per_frame", "bits/frame", "{:.0f}"), ("bits_per_frame_channel", "bits/frame, channel", "{:.0f}")]


def _fault_campaign_steps(cfg, **_) -> int:
    from semcom.experiments.fault_campaign import campaign_steps

    return campaign_steps(cfg)


def _fault_campaign(cfg, model, progress: Progress, out: Path, strategy=None) -> Outcome:
    from semcom.experiments.fault_campaign import figure, run_fault_campaign
    from semcom.threads import torch_threads

    with torch_threads(1):   # per-frame ops are tiny: idle intra-op threads only spin
        res = run_fault_campaign(cfg, model, progress, strategy=strategy)
    notes = [f"target {k}: {v['value']} ({'met' if v['met'] else 'NOT met'})" for k, v in res["targets"].items()]
    return Outcome(res, figure(res, out), [("Fault campaign: corruption (20 % IDs + sigma 0.05, 1.6 % of frames), "
                                            "BER 1e-3, 10 % erasures", res["summary"], CAMPAIGN_COLUMNS)], notes)


def _robust(figure: str):
    """The robust masked VQ-VAE paper's ``figure`` (semcom.experiments.robust_paper), on the shipped robust models."""
    def run(cfg, model, progress: Progress, out: Path, snr=None, strategy=None) -> Outcome:
        from semcom.experiments.robust_paper import outcome

        return outcome(figure, cfg.quick, progress, out, snr=snr, seed=cfg.seed)
    return run


def _robust_steps(figure: str):
    def steps(cfg, snr=None, **_) -> int:
        from semcom.experiments.robust_paper import steps as count

        return count(figure, cfg.quick, snr)
    return steps


_ROBUST = {
    "table1": "the robust paper's Table I: channel symbols per image per task and scheme, ours beside the paper's",
    "fig4": "the robust paper's Fig. 4: accuracy against SNR (8x4 MIMO, 16-QAM, LDPC 1/2) for the seven schemes, "
            "clean and under semantic noise",
    "fig6": "the robust paper's Fig. 6: accuracy against the semantic-noise budget epsilon (--snr: the SNR)",
    "fig7": "the robust paper's Fig. 7: accuracy of masked-vqvae+fim+at against the reserving ratio, per epsilon",
    "fig8": "the robust paper's Fig. 8: accuracy against the signal-to-semantic-noise ratio, universal noise on the "
            "received (equalised) symbols beside random noise of the same power (--snr: the channel SNR)",
    "fig9": "the robust paper's Fig. 9: activation frequency of the features with and without the FIM",
    "fig10": "the robust paper's Fig. 10: codebook similarity with and without the orthogonality loss",
    "fig5": "the robust paper's Fig. 5: accuracy against SNR per codebook size J (small models trained in the run)",
    "fig11": "the robust paper's Fig. 11: recall@1 against SNR and reconstructions under semantic noise "
             "(the shipped masked-vqvae-tasks and masked-vqvae-tasks+at; FGSM and PGD)",
    "patch": "the robust paper's patch sizes: accuracy against SNR and symbols per image for patch 4, 8 and 16 on "
             "digits padded to 32x32 (small masked VQ-VAEs trained in the run)",
}

REPRODUCTIONS: dict[str, Reproduction] = {
    r.name: r for r in (
        Reproduction("hopfield-table1", "Table I: bits/frame, hit rate, C_R, PSNR, SSIM per scenario and rule at "
                     "matched PSNR, beside the paper's rows and classical codecs",
                     lambda cfg, **_: 4 * (len(cfg.rules) + 1), _table1),
        Reproduction("hopfield-fig1", "Fig. 1a (bit reduction of Hopfield over VQ against tau) and Fig. 1b "
                     "(new-latent transmissions over time)", _sweep_steps, _sweep("fig1")),
        Reproduction("hopfield-fig2", "Fig. 2: rate-distortion-reuse over a tau sweep, coloured by hit rate",
                     _sweep_steps, _sweep("fig2")),
        Reproduction("hopfield-theory", "Theorem 2's bound (10) by Monte Carlo on synthetic bounded drift "
                     "(grid of beta, eps, d), and Theorem 1's monotonicity (in hopfield-fig1)",
                     _theory_steps, _theory),
        Reproduction("link-snr", "PSNR, bits and channel uses per frame against SNR for the VQ and Hopfield rules "
                     "over AWGN and Rayleigh (16-QAM, LDPC 1/2, ARQ)", _link_snr_steps,
                     _link_snr),
        Reproduction("hopfield-fig3", "Fig. 3a/3b: refreshes and Delta bits of Hopfield against VQ as the receiver's "
                     "ID map is permuted (p) or its prototypes perturbed (sigma), with cues, lookup and refresh",
                     _fig3_steps, _fig3),
        Reproduction("hopfield-errors", "PSNR and bits per frame against bit-error rate and erasure rate for every "
                     "rule, with per-packet checksums, refresh and memory checks", _errors_steps,
                     _errors),
        Reproduction("rd-curves", "bits per frame against PSNR and MS-SSIM for every semcom model, quality and tau "
                     "and for x264, x265 and AV1 CRF sweeps, on the eight regimes and held-out clips; BD-rates",
                     _rd_steps, _rd_curves),
        Reproduction("codebook-fig4", "the codebook paper's Fig. 4: PSNR against SNR (64-QAM, Rayleigh) for the four "
                     "VQ-VAE variants, JPEG+LDPC and BPG(HEVC intra)+LDPC", _codebook_fig_steps, _codebook_fig("fig4"),
                     ("snr", "code", "lpips_vgg16", "lpips_lin")),
        Reproduction("codebook-fig3", "the codebook paper's Fig. 3: the perceptual metric against SNR (MS-SSIM; "
                     "LPIPS with --lpips-vgg16, else MS-SSIM)", _codebook_fig_steps, _codebook_fig("fig3"),
                     ("snr", "code", "lpips_vgg16", "lpips_lin")),
        Reproduction("codebook-j", "the codebook paper's eqs. (20)-(21): distortion and PSNR against the codebook "
                     "size J for several p, theory beside measurement, and the optimal J",
                     lambda cfg, **kw: len(_codebook_config(cfg).Js), _codebook_j, ("mu",)),
        Reproduction("codebook-theory", "the codebook paper's eqs. (16)-(20): index error probability, P(k|i) and "
                     "the channel-induced distortion of the trained codebooks against Monte Carlo",
                     lambda cfg, **_: 5, _codebook_theory),
        Reproduction("fault-campaign", "the link under memory corruption (20 % of IDs, sigma 0.05, at 1.6 % of "
                     "frames), BER 1e-3 and 10 % erasures, every regime and rule, for the paper's, the flat-resync "
                     "and the tree-resync protocols: unresolved corruptions, frames to resync, lost and silent frames",
                     _fault_campaign_steps, _fault_campaign),
    ) + tuple(Reproduction(f"robust-{fig}", text, _robust_steps(fig), _robust(fig), ("snr",))
              for fig, text in _ROBUST.items())
}
