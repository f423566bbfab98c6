"""Theorems 1 and 2 of the Hopfield paper (Section III-E, Appendix A), checked by measurement.

Theorem 2 (bound (10)), by Monte Carlo: :func:`theorem2_monte_carlo`
    The theorem's setting, built literally: a *fixed* memory of ``m`` unit
    prototypes with minimum separation ``Delta`` (condition 1), latents that
    drift around one of them, ``z_t = mu* + delta_t`` with ``||delta_t|| <= eps``,
    ``delta_t`` i.i.d. and zero-mean (condition 2), and a threshold ``tau``.
    It counts refreshes (misses) over ``T`` frames for

    * VQ, the ``nearest`` rule: miss iff ``<z, mu_j*> < tau``;
    * ``paper``: Theorem 2's proof literally, miss iff ``<z~, mu_j*> < tau``
      with ``z~`` the Hopfield readout (eq. 4) of ``z``;
    * ``hopfield``: semcom's receiver-reproducible rule (eqs. H1-H2 of
      :mod:`semcom.memory.rules`).

    and compares the measured ratio ``N^H / N^V`` with ``1 - beta eps^2 / (2d)``.

    Choices (all reported in every row):

    * **Prototypes.** Greedy rejection sampling of uniform directions on
      ``S^{d-1}``: a candidate is kept when its cosine with every kept
      prototype is ``<= 1 - Delta^2 / 2`` (i.e. ``||mu_j - mu_k|| >= Delta``).
      A new memory (and a new ``mu*``, uniform among the ``m``) is drawn for
      every trial; within a trial the memory is fixed: it is a
      :class:`PrototypeMemory` filled once and never written again (misses
      store nothing), as the theorem assumes.
    * **Drift.** ``delta = r u`` with ``u`` uniform on the sphere and
      ``r = eps`` (``drift="shell"``, the default: ``||delta|| = eps`` exactly,
      so ``E||delta||^2 = eps^2`` and the step from (17) to (18) is an equality)
      or ``r = eps U^(1/d)`` (``drift="ball"``, uniform in the ball).
    * **Normalisation.** The theorem writes ``z_t = mu* + delta_t`` *and*
      assumes it is on the sphere, which holds only to ``O(eps^2)``. With
      ``normalize=True`` (the default) ``z_t = (mu* + delta_t) / ||mu* + delta_t||``,
      the unit latent the paper's encoder produces (eq. 6c) and that the rules
      expect; ``normalize=False`` keeps ``mu* + delta_t`` as it stands.
    * **Threshold.** Condition 3 (``tau < 1 - eps - eps^2/2``) makes VQ
      misses *impossible*: ``<z, mu*> >= 1 - eps`` unnormalised and
      ``>= sqrt(1 - eps^2)`` normalised, both above ``1 - eps - eps^2/2``. So
      two regimes are run: ``"quantile"`` (``tau`` at the ``tau_quantile``
      quantile of the VQ score ``max_j <z, mu_j>`` on a separate pilot sample,
      so that ``P_miss^V ~ tau_quantile`` is measurable), and, with
      ``boundary=True``, ``"boundary"`` (``tau = 1 - eps - eps^2/2 - 1e-3``,
      inside condition 3), where ``P_miss^V = 0`` and bound (10) reads
      ``E[N^H] <= 0 + O(eps^3)``. A float ``tau`` runs regime ``"given"``.
    * **Statistics.** ``P_miss`` with a Wilson interval
      (:func:`scipy.stats.binomtest`, frames treated as independent); the
      ratio ``N^H / N^V`` and the excess ``P^H - P^V (1 - beta eps^2/(2d))``
      with percentile bootstrap intervals that resample *trials* (each trial
      has its own memory, so frames within a trial are not independent
      draws of the whole experiment).
    * **Exactness.** With ``engine="rules"`` (the default) every frame goes
      through ``NearestRule/PaperRule/HopfieldRule.decide`` against the
      memory; the rules are built with the first regime's ``tau`` and the
      other regime re-thresholds the returned ``Decision.score`` (``decide``
      is ``hit = score >= tau`` and its index and score do not depend on
      ``tau``). ``engine="vectorised"`` computes the same tests with one
      batched product per trial (for large ``n``); a test checks both agree.

    Diagnostics: ``score_shift_<v>`` is the mean of (the variant's tested score
    minus VQ's ``<z, mu_j*>``), the measured "associative boost"; eq. (16)
    claims ``boost_claimed = beta E||delta||^2 / (2d)`` for ``paper``.
    ``readout_self_score`` is ``<T(mu*), mu*>`` at zero drift, ``T`` the
    Hopfield update (eq. 4): both variants' scores sit near it, so it says
    where they switch from "always miss" to "never miss". ``c_implied_<v>`` is
    the constant ``C`` of the proof's eq. (20) that the measured ratio implies,
    ``(1 - ratio) / (beta eps^2 / (2d))``; going from (20) to (21) needs
    ``C >= 1``. ``p_nearest_not_mu_star`` is how often ``mu*`` is not the
    nearest prototype (the proof assumes it always is), and
    ``separation_condition`` is the proof's ``1 - rho > 2 eps``.
    ``flips_<v>`` counts frames where the variant and VQ disagree (hit vs
    miss), ``rounding_flips_<v>`` those of them whose two scores differ by
    less than :data:`ROUNDING_TOL`; ``float32_artefact_<v>`` is set when
    every disagreement is such a rounding flip, so a ratio away from 1 there
    measures float32 arithmetic, not retrieval. This matters with
    ``normalize=True``: the unit latent's similarity to ``mu*`` is
    ``1 - (||delta||^2 - xi^2)/2 + O(eps^3)`` (``xi = <delta, mu*>``), its
    first-order term cancels, and at ``eps = 0.05, d = 64`` its spread is
    ~3e-5, a few hundred float32 steps; unnormalised, it is ``1 + xi``
    (the proof's ``s*``) with spread ``eps / sqrt(d)``.

    Verdict per Hopfield variant (``verdict_<v>``), from the ratio's interval
    ``[lo, hi]`` against the bound ``b``: ``"loose"`` (``hi < b``: holds with
    room), ``"tight"`` (``lo <= b <= hi``: consistent with equality),
    ``"violated"`` (``lo > b``); when VQ never misses the ratio is undefined:
    ``"vacuous"`` (neither misses) or, on the excess ``P^H - 0``,
    ``"violated"`` when its lower end exceeds ``eps^3`` (the ``O(eps^3)``
    remainder taken with constant 1, in probability units) and
    ``"within_eps3"`` otherwise. ``violated_beyond_eps3_<v>`` applies that
    slack everywhere.

Theorem 1, on measured tau sweeps: :func:`theorem1_monotonicity`
    Claim 1's signs, claim 2's ``tau*(D0)`` (eq. 9) and claim 3's Pareto
    property, for each rule of a sweep.

:func:`theorem2_figure` plots the measured ratios against
``beta eps^2 / (2d)`` with the bound; :func:`run_hopfield_theory` writes a
run folder (``config.json``, ``results.json``, one figure per ``normalize``).
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from semcom.memory.hopfield import hopfield_retrieve
from semcom.memory.rules import HopfieldRule, NearestRule, PaperRule
from semcom.memory.store import PrototypeMemory

VARIANTS = ("paper", "hopfield")
#: Run sizes: ``trials`` independent memories, ``frames`` drift frames each.
QUICK = {"trials": 20, "frames": 100}
FULL = {"trials": 100, "frames": 100}
DEFAULT_GRID = {"betas": (1.0, 5.0, 20.0, 100.0), "epsilons": (0.05, 0.1, 0.2, 0.3), "dims": (16, 64)}
BOUNDARY_MARGIN = 1e-3
#: Score differences below this (about 16 float32 ulps at 1.0) are rounding, not retrieval.
ROUNDING_TOL = 1e-6


# =========================================================================== Theorem 2


def theorem2_bound(beta: float, eps: float, d: int) -> float:
    """The factor of bound (10): ``1 - beta eps^2 / (2d)``."""
    return 1.0 - beta * eps**2 / (2.0 * d)


def boundary_tau(eps: float) -> float:
    """Condition 3's supremum ``1 - eps - eps^2/2``; the boundary regime uses it minus ``BOUNDARY_MARGIN``."""
    return 1.0 - eps - eps**2 / 2.0


def separated_prototypes(m: int, d: int, separation: float, rng: np.random.Generator,
                         max_candidates: int = 200_000) -> np.ndarray:
    """``m`` unit vectors (m, d) with ``min_{j != k} ||mu_j - mu_k|| >= separation`` (condition 1).

    Greedy rejection: uniform directions, each kept when its cosine with every kept one is at most
    ``1 - separation^2 / 2``. Returned in float32 (the memory's precision); raises ``ValueError``
    when ``max_candidates`` draws do not suffice.
    """
    if not 0.0 < separation <= 2.0:
        raise ValueError(f"separation: must be in (0, 2], got {separation}")
    rho = 1.0 - separation**2 / 2.0
    kept = np.empty((m, d))
    n, drawn = 0, 0
    while n < m:
        if drawn >= max_candidates:
            raise ValueError(f"separation: cannot place m={m} unit vectors in d={d} at distance >= {separation}"
                             f" ({n} placed after {drawn} candidates)")
        cand = rng.standard_normal((256, d))
        cand /= np.linalg.norm(cand, axis=1, keepdims=True)
        drawn += 256
        for v in cand:
            if n == 0 or float(np.max(kept[:n] @ v)) <= rho - 1e-6:  # margin for the float32 cast
                kept[n] = v
                n += 1
                if n == m:
                    break
    return kept.astype(np.float32)


def bounded_drift(n: int, d: int, eps: float, rng: np.random.Generator, drift: str = "shell") -> np.ndarray:
    """``n`` i.i.d. zero-mean drifts (n, d) with ``||delta|| <= eps`` (condition 2).

    ``"shell"``: ``||delta|| = eps``, uniform direction; ``"ball"``: uniform in the ball of radius ``eps``.
    """
    u = rng.standard_normal((n, d))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    if drift == "shell":
        r = np.full(n, eps)
    elif drift == "ball":
        r = eps * rng.random(n) ** (1.0 / d)
    else:
        raise ValueError(f"drift: must be 'shell' or 'ball', got {drift!r}")
    return u * r[:, None]


def drifting_latents(mu_star: np.ndarray, delta: np.ndarray, normalize: bool = True) -> torch.Tensor:
    """``z_t = mu* + delta_t`` (float32), divided by its norm when ``normalize``."""
    z = mu_star.astype(np.float64)[None, :] + delta
    if normalize:
        z /= np.linalg.norm(z, axis=1, keepdims=True)
    return torch.from_numpy(z.astype(np.float32))


def fixed_memory(prototypes: np.ndarray) -> PrototypeMemory:
    """A :class:`PrototypeMemory` holding exactly ``prototypes``; policy ``none`` and full, so it cannot change."""
    m, d = prototypes.shape
    mem = PrototypeMemory(d, m, full_policy="none")
    for t, p in enumerate(prototypes):
        mem.write(torch.from_numpy(p), t)
    return mem


def _scores_rules(z: torch.Tensor, mem: PrototypeMemory, tau: float, betas: Sequence[float], top_k: int):
    """Scores and indices of every rule through ``decide()``, frame by frame."""
    rules = {("nearest", None): NearestRule(tau)}
    for beta in betas:
        rules[("paper", beta)] = PaperRule(tau, beta, top_k)
        rules[("hopfield", beta)] = HopfieldRule(tau, beta, top_k)
    out = {}
    for key, rule in rules.items():
        dec = [rule.decide(zt, mem) for zt in z]
        out[key] = (np.array([x.score for x in dec]), np.array([x.index for x in dec]))
    return out


def _scores_vectorised(z: torch.Tensor, mem: PrototypeMemory, betas: Sequence[float], top_k: int):
    """The same tests as the rules, batched: one (T, d) x (d, M) product per readout."""
    p = mem.prototypes
    s = z @ p.T
    j = torch.argmax(s, dim=1)
    out = {("nearest", None): (s.gather(1, j[:, None])[:, 0].numpy().astype(np.float64), j.numpy())}
    k = min(top_k, p.shape[0])
    cands = torch.topk(s, k, dim=1).indices
    for beta in betas:
        zt = hopfield_retrieve(z, p, beta)
        out[("paper", beta)] = ((zt * p[j]).sum(1).numpy().astype(np.float64), j.numpy())
        r = hopfield_retrieve(p, p, beta)
        sc = (z @ r.T).gather(1, cands)
        c = torch.argmax(sc, dim=1)
        out[("hopfield", beta)] = (sc.gather(1, c[:, None])[:, 0].numpy().astype(np.float64),
                                   cands.gather(1, c[:, None])[:, 0].numpy())
    return out


def _wilson(k: int, n: int, confidence: float) -> list[float]:
    ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return [float(ci.low), float(ci.high)]


def _bootstrap_trials(nh: np.ndarray, nv: np.ndarray, n_per: np.ndarray, bound: float, n_boot: int,
                      confidence: float, rng: np.random.Generator):
    """Percentile bootstrap over trials of ``N^H/N^V`` and ``(N^H - N^V bound)/n``."""
    idx = rng.integers(0, len(nh), size=(n_boot, len(nh)))
    h, v, n = nh[idx].sum(1), nv[idx].sum(1), n_per[idx].sum(1)
    q = [50 * (1 - confidence), 50 * (1 + confidence)]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(v > 0, h / np.maximum(v, 1), np.nan)
    ratio_ci = [float(x) for x in np.nanpercentile(ratio, q)] if np.isfinite(ratio).any() else [None, None]
    excess_ci = [float(x) for x in np.percentile((h - v * bound) / n, q)]
    return ratio_ci, excess_ci


def _verdict(misses_v: int, misses_h: int, ratio_ci, excess_ci, bound: float, eps: float) -> str:
    if misses_v == 0:
        if misses_h == 0:
            return "vacuous"
        return "violated" if excess_ci[0] > eps**3 else "within_eps3"
    lo, hi = ratio_ci
    if lo > bound:
        return "violated"
    return "loose" if hi < bound else "tight"


def theorem2_monte_carlo(betas: Sequence[float] = DEFAULT_GRID["betas"],
                         epsilons: Sequence[float] = DEFAULT_GRID["epsilons"],
                         dims: Sequence[int] = DEFAULT_GRID["dims"],
                         tau: float | None = None, m: int = 16, separation: float = 1.0,
                         frames: int | None = None, trials: int | None = None, seed: int = 0, *,
                         quick: bool = False, tau_quantile: float = 0.25, boundary: bool = True,
                         drift: str = "shell", normalize: bool = True, top_k: int = 4,
                         engine: str = "rules", confidence: float = 0.95, n_boot: int = 2000,
                         pilot: int = 20_000) -> list[dict]:
    """Monte Carlo check of Theorem 2's bound (10) over a grid of ``beta``, ``eps`` and ``d``.

    One row per (regime, d, eps, beta); the choices and every column are described in the module
    docstring. ``frames`` (T) and ``trials`` default to :data:`QUICK` or :data:`FULL`. The same drift
    realisations serve every ``beta`` and both regimes of a (d, eps) cell (common random numbers), and
    VQ's counts do not depend on ``beta``. Runs with one torch thread (restored afterwards): every op is
    a few hundred flops, and idle intra-op threads spinning on a shared machine slowed it tenfold.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny per-frame ops: intra-op threads only spin, badly so on a loaded machine
    try:
        return _theorem2_monte_carlo(betas, epsilons, dims, tau, m, separation, frames, trials, seed, quick,
                                     tau_quantile, boundary, drift, normalize, top_k, engine, confidence,
                                     n_boot, pilot)
    finally:
        torch.set_num_threads(threads)


def _theorem2_monte_carlo(betas, epsilons, dims, tau, m, separation, frames, trials, seed, quick, tau_quantile,
                          boundary, drift, normalize, top_k, engine, confidence, n_boot, pilot) -> list[dict]:
    size = QUICK if quick else FULL
    frames = size["frames"] if frames is None else int(frames)
    trials = size["trials"] if trials is None else int(trials)
    if frames < 1 or trials < 1:
        raise ValueError("frames and trials: must be >= 1")
    if tau is not None and not 0.0 < tau < 1.0:
        raise ValueError(f"tau: must be in (0, 1), got {tau}")
    if not 0.0 < tau_quantile < 1.0:
        raise ValueError(f"tau_quantile: must be in (0, 1), got {tau_quantile}")
    if engine not in ("rules", "vectorised"):
        raise ValueError(f"engine: must be 'rules' or 'vectorised', got {engine!r}")
    if m < 1:
        raise ValueError(f"m: must be >= 1, got {m}")
    betas = [float(b) for b in betas]
    rows: list[dict] = []
    for d in dims:
        for eps in epsilons:
            eps_key = int(round(eps * 1e6))
            regimes: list[tuple[str, float]] = []
            if tau is None:  # pilot: the tau_quantile quantile of the VQ score, on its own memory and drift
                prng = np.random.default_rng([seed, 1, d, eps_key])
                pp = separated_prototypes(m, d, separation, prng)
                zp = drifting_latents(pp[0], bounded_drift(pilot, d, eps, prng, drift), normalize)
                regimes.append(("quantile", float(np.quantile((zp @ torch.from_numpy(pp).T).max(1).values.numpy(),
                                                              tau_quantile))))
            else:
                regimes.append(("given", float(tau)))
            tb = boundary_tau(eps) - BOUNDARY_MARGIN
            if boundary and 0.0 < tb < 1.0:
                regimes.append(("boundary", tb))

            scores: dict = {}
            self_score: dict = {}  # beta -> per-trial <T(mu*), mu*>, T the Hopfield update (eq. 4)
            wrong_index = 0
            sep_min, rho_max = np.inf, -np.inf
            sq_norm = 0.0
            for trial in range(trials):
                rng = np.random.default_rng([seed, 0, d, eps_key, trial])
                protos = separated_prototypes(m, d, separation, rng)
                if m > 1:
                    g = protos.astype(np.float64) @ protos.T.astype(np.float64)
                    off = g[~np.eye(m, dtype=bool)]
                    rho_max = max(rho_max, float(off.max()))
                    sep_min = min(sep_min, float(np.sqrt(max(0.0, 2 - 2 * off.max()))))
                j_star = int(rng.integers(m))
                delta = bounded_drift(frames, d, eps, rng, drift)
                sq_norm += float((delta**2).sum())
                z = drifting_latents(protos[j_star], delta, normalize)
                mem = fixed_memory(protos)
                got = (_scores_rules(z, mem, regimes[0][1], betas, top_k) if engine == "rules"
                       else _scores_vectorised(z, mem, betas, top_k))
                assert mem.size == m  # the theorem's memory is fixed
                wrong_index += int((got[("nearest", None)][1] != j_star).sum())
                mu = mem.prototypes[j_star]
                for beta in betas:
                    readout = hopfield_retrieve(mu[None], mem.prototypes, beta)[0]
                    self_score.setdefault(beta, []).append(float(readout @ mu))
                for key, (s, _) in got.items():
                    scores.setdefault(key, []).append(s)
            scores = {k: np.stack(v) for k, v in scores.items()}  # (trials, frames)
            n = trials * frames
            s_vq = scores[("nearest", None)]
            mean_sq = sq_norm / n
            for r_i, (regime, t) in enumerate(regimes):
                miss_vq = s_vq < t
                nv_t = miss_vq.sum(1)
                kv = int(nv_t.sum())
                for beta in betas:
                    bound = theorem2_bound(beta, eps, d)
                    x = beta * eps**2 / (2 * d)
                    row = {"regime": regime, "tau": t,
                           "tau_quantile": tau_quantile if regime == "quantile" else None,
                           "boundary_condition": bool(t < boundary_tau(eps)),
                           "beta": beta, "eps": float(eps), "d": int(d), "m": int(m),
                           "x": x, "bound": bound,
                           "trials": trials, "frames": frames, "n": n,
                           "drift": drift, "normalize": normalize, "engine": engine, "top_k": top_k,
                           "separation": separation,
                           "separation_min": None if m == 1 else sep_min,
                           "rho_max": None if m == 1 else rho_max,
                           "separation_condition": True if m == 1 else bool(1 - rho_max > 2 * eps),
                           "p_nearest_not_mu_star": wrong_index / n,
                           "mean_score_vq": float(s_vq.mean()), "score_std_vq": float(s_vq.std()),
                           "boost_claimed": beta * mean_sq / (2 * d),
                           "readout_self_score": float(np.mean(self_score[beta])),
                           "misses_vq": kv, "p_miss_vq": kv / n, "p_miss_vq_ci": _wilson(kv, n, confidence)}
                    for v in VARIANTS:
                        s_h = scores[(v, beta)]
                        nh_t = (s_h < t).sum(1)
                        kh = int(nh_t.sum())
                        brng = np.random.default_rng([seed, 2, d, eps_key, r_i, int(round(beta * 1e6)),
                                                      VARIANTS.index(v)])
                        ratio_ci, excess_ci = _bootstrap_trials(nh_t, nv_t, np.full(trials, frames), bound,
                                                                n_boot, confidence, brng)
                        ratio = kh / kv if kv else None
                        flips = (s_h < t) != miss_vq
                        rounding = flips & (np.abs(s_h - s_vq) < ROUNDING_TOL)
                        row |= {f"misses_{v}": kh, f"p_miss_{v}": kh / n, f"p_miss_{v}_ci": _wilson(kh, n, confidence),
                                f"ratio_{v}": ratio, f"ratio_{v}_ci": ratio_ci if kv else [None, None],
                                f"excess_{v}": (kh - kv * bound) / n, f"excess_{v}_ci": excess_ci,
                                f"score_shift_{v}": float((s_h - s_vq).mean()),
                                f"flips_{v}": int(flips.sum()), f"rounding_flips_{v}": int(rounding.sum()),
                                f"float32_artefact_{v}": bool(flips.any() and rounding.sum() == flips.sum()),
                                f"c_implied_{v}": (1 - ratio) / x if ratio is not None and x > 0 else None,
                                f"verdict_{v}": _verdict(kv, kh, ratio_ci, excess_ci, bound, eps),
                                f"violated_beyond_eps3_{v}": bool(excess_ci[0] > eps**3)}
                        row[f"holds_{v}"] = row[f"verdict_{v}"] != "violated"
                    rows.append(row)
    return rows


def format_theorem2_table(rows: Sequence[Mapping]) -> str:
    """A compact plain-text table of :func:`theorem2_monte_carlo` rows (``*``: a float32 artefact)."""
    def f(v, nd=3):
        return "  -  " if v is None else f"{v:.{nd}f}"

    def verdict(r, v):
        return r[f"verdict_{v}"] + ("*" if r.get(f"float32_artefact_{v}") else "")

    head = (f"{'regime':<9}{'d':>4}{'eps':>6}{'beta':>6}{'tau':>7}{'P^V':>7}{'P^paper':>8}{'P^hopf':>8}"
            f"{'bound':>7}{'r_paper':>8}{'r_hopf':>8}  {'paper':<12}{'hopfield':<12}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['regime']:<9}{r['d']:>4}{r['eps']:>6.2f}{r['beta']:>6g}{r['tau']:>7.4f}"
                     f"{r['p_miss_vq']:>7.3f}{r['p_miss_paper']:>8.3f}{r['p_miss_hopfield']:>8.3f}"
                     f"{r['bound']:>7.4f}{f(r['ratio_paper']):>8}{f(r['ratio_hopfield']):>8}  "
                     f"{verdict(r, 'paper'):<12}{verdict(r, 'hopfield'):<12}")
    return "\n".join(lines)


def theorem2_figure(rows: Sequence[Mapping], path: str | Path) -> Path:
    """Measured ``N^H / N^V`` against ``beta eps^2 / (2d)`` with the bound ``1 - x`` (one marker per variant).

    Left: rows where VQ misses (ratio defined), with bootstrap intervals. Right, when present: rows where
    VQ never misses (the theorem's boundary regime), ``P_miss^H`` against ``x``: bound (10) allows
    ``0 + O(eps^3)`` there.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    defined = [r for r in rows if r["misses_vq"] > 0]
    undefined = [r for r in rows if r["misses_vq"] == 0]
    ncols = 2 if undefined else 1
    fig = Figure(figsize=(6.0 * ncols, 5.4))
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    markers = {"paper": "o", "hopfield": "s"}
    betas = sorted({r["beta"] for r in rows})
    colours = {b: c for b, c in zip(betas, ["C0", "C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9"] * 10)}
    xs = [r["x"] for r in rows if r["x"] > 0]
    xgrid = np.geomspace(min(xs) / 2, max(xs) * 2, 200) if xs else np.array([1e-3, 1.0])
    ax = axes[0]
    for v in VARIANTS:
        for b in betas:
            sel = [r for r in defined if r["beta"] == b]
            if not sel:
                continue
            y = np.array([r[f"ratio_{v}"] for r in sel])
            lo = np.array([r[f"ratio_{v}_ci"][0] for r in sel])
            hi = np.array([r[f"ratio_{v}_ci"][1] for r in sel])
            ax.errorbar([r["x"] for r in sel], y, yerr=[np.maximum(y - lo, 0), np.maximum(hi - y, 0)],
                        fmt=markers[v], color=colours[b], mfc="none" if v == "paper" else colours[b],
                        ms=9 if v == "paper" else 4, mew=1.2, capsize=2, lw=0.8, zorder=3 if v == "paper" else 2,
                        label=f"{v}, beta={b:g}")
    ax.plot(xgrid, 1 - xgrid, "k-", lw=1.2, label="bound (10): 1 - beta eps^2/(2d)")
    ax.axhline(1.0, color="grey", ls=":", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("beta eps^2 / (2d)")
    ax.set_ylabel("N_refresh^H / N_refresh^V")
    ax.set_title("Theorem 2: measured refresh ratio (tau where VQ misses)", fontsize=10)
    ax.legend(fontsize=6, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.14))
    if undefined:
        ax = axes[1]
        for v in VARIANTS:
            for b in betas:
                sel = [r for r in undefined if r["beta"] == b]
                if sel:
                    ax.plot([r["x"] for r in sel], [r[f"p_miss_{v}"] for r in sel], markers[v], color=colours[b],
                            mfc="none" if v == "paper" else colours[b], ms=9 if v == "paper" else 4, mew=1.2,
                            zorder=3 if v == "paper" else 2, label=f"{v}, beta={b:g}")
        ax.set_xscale("log")
        ax.set_xlabel("beta eps^2 / (2d)")
        ax.set_ylabel("P_miss^H  (P_miss^V = 0)")
        ax.set_title("condition 3 (tau < 1 - eps - eps^2/2): P_miss^V = 0,\nbound (10) allows O(eps^3)",
                     fontsize=10)
        ax.legend(fontsize=6, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.14))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    return path


# =========================================================================== Theorem 1

#: Claim 1's signs: dC_R/dtau < 0, dD/dtau < 0 (D = MSE), dH/dtau < 0.
CLAIMED_SIGNS = {"hit_rate": -1, "reasoning_capacity": -1, "mse": -1}


def sign_steps(x: Sequence[float], y: Sequence[float], expected_sign: int, atol: float = 0.0) -> dict:
    """Adjacent steps of ``y`` along increasing ``x``: how many have the expected strict sign, ties, violations."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    dy = np.diff(y)
    match = expected_sign * dy > atol
    tie = np.abs(dy) <= atol
    viol = ~match & ~tie
    n = len(dy)
    return {"expected_sign": expected_sign, "n_steps": n, "n_match": int(match.sum()), "n_ties": int(tie.sum()),
            "fraction_match": float(match.mean()) if n else None,
            "violations": [{"x0": float(x[i]), "x1": float(x[i + 1]), "y0": float(y[i]), "y1": float(y[i + 1])}
                           for i in np.flatnonzero(viol)],
            "holds_strict": bool(n and match.all()), "holds_weak": bool(not viol.any())}


def spearman(x: Sequence[float], y: Sequence[float]) -> tuple[float | None, float | None]:
    """``scipy.stats.spearmanr``; (None, None) when undefined (fewer than 3 points or a constant series)."""
    if len(x) < 3 or np.ptp(np.asarray(y, float)) == 0 or np.ptp(np.asarray(x, float)) == 0:
        return None, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.spearmanr(x, y)
    return float(res.statistic), float(res.pvalue)


def tau_star(taus: Sequence[float], distortion: Sequence[float], d0: Iterable[float]) -> list[float | None]:
    """Eq. (9) on a measured curve: ``tau*(D0) = min{tau_i : D(tau_i) <= D0}``, None where nothing is feasible."""
    taus, distortion = np.asarray(taus, float), np.asarray(distortion, float)
    out = []
    for v in d0:
        ok = distortion <= v
        out.append(float(taus[ok].min()) if ok.any() else None)
    return out


def non_increasing_violations(x: Sequence[float], y: Sequence[float | None], atol: float = 0.0) -> list[dict]:
    """Steps where ``y`` (None = +inf, infeasible) increases along ``x``."""
    yy = [np.inf if v is None else v for v in y]
    return [{"x0": float(x[i]), "x1": float(x[i + 1]), "y0": y[i], "y1": y[i + 1]}
            for i in range(len(yy) - 1) if yy[i + 1] > yy[i] + atol]


def pareto_dominated(points: Sequence[Mapping], distortion_key: str = "mse",
                     capacity_key: str = "reasoning_capacity", key_x: str = "tau", atol: float = 0.0) -> list[dict]:
    """Pairs where one point dominates another: ``D1 <= D2`` and ``C1 >= C2``, one of them strict (claim 3)."""
    found = []
    for a in points:
        for b in points:
            if a is b:
                continue
            da, db, ca, cb = a[distortion_key], b[distortion_key], a[capacity_key], b[capacity_key]
            if da <= db + atol and ca >= cb - atol and (da < db - atol or ca > cb + atol):
                found.append({"dominated": {key_x: b[key_x], distortion_key: db, capacity_key: cb},
                              "by": {key_x: a[key_x], distortion_key: da, capacity_key: ca}})
    return found


def _group_name(row: Mapping, group_key) -> str:
    if group_key is None:
        return "all"
    keys = (group_key,) if isinstance(group_key, str) else tuple(group_key)
    return "/".join(str(row.get(k)) for k in keys)


def theorem1_monotonicity(rows: Sequence[Mapping], key_x: str = "tau",
                          keys: Sequence[str] = ("hit_rate", "reasoning_capacity", "mse"), *,
                          group_key: str | Sequence[str] | None = "rule",
                          expected_signs: Mapping[str, int] | None = None,
                          distortion_key: str = "mse", capacity_key: str = "reasoning_capacity",
                          d0_grid: Sequence[float] | None = None, atol: float = 0.0) -> dict:
    """Check Theorem 1's three claims on the measured rows of a ``tau`` sweep, per rule (``group_key``).

    1. Signs (default :data:`CLAIMED_SIGNS`, -1 for any other key): per key, adjacent ``tau`` steps with
       the claimed strict sign (``fraction_match``), ties (``|step| <= atol``), strict violations (the
       ``tau`` pairs), and Spearman's rank correlation with ``tau``.
    2. Eq. (9): ``tau*(D0)`` over ``d0_grid`` (default: every measured ``D`` and 21 points between the
       smallest and largest). Its non-increase in ``D0`` holds for *any* curve (the feasible set only grows
       with ``D0``), so it is checked but tells nothing; the informative checks are whether the feasible set
       ``{tau: D(tau) <= D0}`` is an up-set ``[tau*, 1)`` on the grid (what ``dD/dtau < 0`` gives) and
       whether ``tau*`` maximises ``C_R`` over it (eq. 9's "optimal").
    3. Pareto: pairs of sweep points where one dominates the other (:func:`pareto_dominated`).

    Rows with the same ``tau`` in a group are averaged; rows missing a key are skipped for that key.
    """
    signs = dict(CLAIMED_SIGNS) | dict(expected_signs or {})
    groups: dict[str, list[Mapping]] = {}
    for r in rows:
        groups.setdefault(_group_name(r, group_key), []).append(r)
    out = {"key_x": key_x, "keys": list(keys), "groups": {}}
    all_hold = True
    for name, grp in groups.items():
        by_tau: dict[float, list[Mapping]] = {}
        for r in grp:
            by_tau.setdefault(float(r[key_x]), []).append(r)
        taus = sorted(by_tau)
        pts = []
        for t in taus:
            p = {key_x: t}
            for k in set(keys) | {distortion_key, capacity_key}:
                vals = [r[k] for r in by_tau[t] if r.get(k) is not None and np.isfinite(r[k])]
                p[k] = float(np.mean(vals)) if vals else None
            pts.append(p)
        res: dict = {"n_points": len(pts), "monotonicity": {}}
        for k in keys:
            sel = [p for p in pts if p[k] is not None]
            x, y = [p[key_x] for p in sel], [p[k] for p in sel]
            chk = sign_steps(x, y, signs.get(k, -1), atol)
            rho, pval = spearman(x, y)
            chk |= {"spearman_rho": rho, "spearman_p": pval,
                    "spearman_sign_matches": None if rho is None else bool(np.sign(rho) == chk["expected_sign"])}
            res["monotonicity"][k] = chk
            all_hold &= chk["holds_strict"]
        sel = [p for p in pts if p[distortion_key] is not None and p[capacity_key] is not None]
        if sel:
            t_arr = np.array([p[key_x] for p in sel])
            d_arr = np.array([p[distortion_key] for p in sel])
            c_arr = np.array([p[capacity_key] for p in sel])
            grid = (np.unique(np.concatenate([d_arr, np.linspace(d_arr.min(), d_arr.max(), 21)]))
                    if d0_grid is None else np.sort(np.asarray(d0_grid, float)))
            ts = tau_star(t_arr, d_arr, grid)
            viol = non_increasing_violations(grid, ts)
            up_set, optimal, argmax_tau = [], [], []
            for v, t in zip(grid, ts):
                feas = d_arr <= v
                if t is None:
                    up_set.append(None), optimal.append(None), argmax_tau.append(None)
                    continue
                up_set.append(bool(np.all(feas[t_arr >= t])))
                best = float(t_arr[feas][np.argmax(c_arr[feas])])
                argmax_tau.append(best)
                optimal.append(bool(c_arr[t_arr == t][0] >= c_arr[feas].max() - atol))
            known = [o for o in optimal if o is not None]
            res["tau_star"] = {"d0": [float(v) for v in grid], "tau_star": ts, "non_increasing": not viol,
                               "violations": viol, "feasible_set_is_up_set": up_set,
                               "argmax_capacity_tau": argmax_tau, "tau_star_is_optimal": optimal,
                               "fraction_optimal": float(np.mean(known)) if known else None}
            dom = pareto_dominated(sel, distortion_key, capacity_key, key_x, atol)
            res["pareto"] = {"n_points": len(sel), "dominated": dom, "holds": not dom}
            all_hold &= not dom
        out["groups"][name] = res
    out["all_hold"] = bool(all_hold)
    return out


# =========================================================================== run folder


def theorem2_cells(cfg: Mapping, normalize: Sequence[bool] = (True, False)) -> list[tuple[bool, int, float]]:
    """The cells of :func:`run_hopfield_theory`: ``(normalize, d, eps)`` over the grid of ``cfg``."""
    return [(bool(nz), int(d), float(eps)) for nz in normalize for d in cfg["dims"] for eps in cfg["epsilons"]]


def theorem2_cell(cfg: Mapping, cell: tuple[bool, int, float], seed: int) -> list[dict]:
    """The rows of one (normalize, d, eps) cell: :func:`theorem2_monte_carlo` on that cell alone. Its draws are
    already keyed by (run seed, d, eps, trial), never by the order of the loop, so a cell gives the rows it
    gives inside the whole grid and the cell's own ``seed`` is not needed."""
    nz, d, eps = cell
    return theorem2_monte_carlo(**(dict(cfg) | {"dims": (d,), "epsilons": (eps,)}), normalize=nz)


def run_hopfield_theory(out_dir: str | Path | None = None, quick: bool = False, seed: int = 0,
                        normalize: Sequence[bool] = (True, False), *, strategy=None, progress=None,
                        **kwargs) -> dict:
    """Theorem 2's Monte Carlo on :data:`DEFAULT_GRID`, once per ``normalize`` setting (rows carry it); each
    (normalize, d, eps) is a cell of :func:`semcom.sweeps.map_cells` (``strategy``: serial, or Dask workers).

    Writes ``config.json``, ``results.json`` and ``theorem2_normalized.png`` / ``theorem2_unnormalized.png``
    to ``out_dir`` when given. Returns ``{"config", "rows", "runtime_s"}``.
    """
    from semcom.sweeps import map_cells

    cfg = dict(DEFAULT_GRID) | {"quick": quick, "seed": seed} | kwargs
    t0 = time.perf_counter()
    rows = [r for got in map_cells(theorem2_cell, theorem2_cells(cfg, normalize), cfg, seed, progress, strategy)
            for r in got]
    runtime = time.perf_counter() - t0
    config = {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()} | {"normalize": list(normalize)}
    result = {"config": config, "rows": rows, "runtime_s": runtime}
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(config, indent=2))
        (out / "results.json").write_text(json.dumps({"rows": rows, "runtime_s": runtime}, indent=2))
        for nz in normalize:
            sel = [r for r in rows if r["normalize"] == bool(nz)]
            theorem2_figure(sel, out / f"theorem2_{'normalized' if nz else 'unnormalized'}.png")
    return result


if __name__ == "__main__":  # python -m semcom.experiments.hopfield_theory [--quick] [out_dir]
    import sys

    args = [a for a in sys.argv[1:] if a != "--quick"]
    res = run_hopfield_theory(args[0] if args else None, quick="--quick" in sys.argv)
    for nz in (True, False):
        print(f"\nnormalize={nz}")
        print(format_theorem2_table([r for r in res["rows"] if r["normalize"] == nz]))
    print(f"runtime {res['runtime_s']:.1f} s")
