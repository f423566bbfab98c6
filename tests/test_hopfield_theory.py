"""Theorem 2's Monte Carlo (bound (10)) and Theorem 1's checkers, semcom.experiments.hopfield_theory."""

from __future__ import annotations

import json

import numpy as np
import pytest

from semcom.experiments.hopfield_theory import (
    boundary_tau,
    bounded_drift,
    non_increasing_violations,
    pareto_dominated,
    separated_prototypes,
    sign_steps,
    spearman,
    tau_star,
    theorem1_monotonicity,
    theorem2_bound,
    theorem2_figure,
    theorem2_monte_carlo,
)

SMALL = {"trials": 3, "frames": 40, "n_boot": 200, "pilot": 4000}


def by_regime(rows, regime):
    return [r for r in rows if r["regime"] == regime]


# =========================================================================== Theorem 2


def test_bound_formula():
    assert theorem2_bound(20.0, 0.1, 16) == pytest.approx(1 - 20 * 0.01 / 32)
    assert theorem2_bound(100.0, 0.3, 16) == pytest.approx(0.71875)
    assert boundary_tau(0.2) == pytest.approx(1 - 0.2 - 0.02)
    rows = theorem2_monte_carlo((5.0,), (0.2,), (16,), **SMALL)
    for r in rows:
        assert r["bound"] == pytest.approx(1 - 5.0 * 0.04 / 32)
        assert r["x"] == pytest.approx(5.0 * 0.04 / 32)


def test_prototypes_are_separated_and_drift_is_bounded():
    rng = np.random.default_rng(1)
    p = separated_prototypes(16, 16, 1.0, rng).astype(np.float64)
    assert np.allclose(np.linalg.norm(p, axis=1), 1, atol=1e-6)
    dist = np.linalg.norm(p[:, None] - p[None], axis=-1)[~np.eye(16, dtype=bool)]
    assert dist.min() >= 1.0 - 1e-6
    for kind in ("shell", "ball"):
        delta = bounded_drift(500, 16, 0.2, rng, kind)
        assert np.linalg.norm(delta, axis=1).max() <= 0.2 + 1e-12
    assert np.allclose(np.linalg.norm(bounded_drift(50, 8, 0.3, rng, "shell"), axis=1), 0.3)
    with pytest.raises(ValueError, match="separation"):
        separated_prototypes(40, 2, 1.5, rng, max_candidates=2000)


def test_large_beta_hopfield_rule_equals_vq_exactly_and_paper_never_misses():
    rows = theorem2_monte_carlo((1e4,), (0.1, 0.3), (8, 16), boundary=False, **SMALL)
    for r in rows:
        assert r["misses_vq"] > 0
        assert r["misses_hopfield"] == r["misses_vq"]
        assert r["misses_paper"] == 0 and r["ratio_paper"] == 0.0
        assert r["readout_self_score"] == pytest.approx(1.0, abs=1e-6)


def test_single_prototype_paper_rule_never_misses():
    rows = theorem2_monte_carlo((0.5, 100.0), (0.1, 0.3), (16,), m=1, **SMALL)
    for r in rows:
        assert r["misses_paper"] == 0
        if r["regime"] == "quantile":
            assert r["misses_vq"] > 0 and r["ratio_paper"] == 0.0
            assert r["verdict_paper"] in ("loose", "tight")


@pytest.mark.parametrize("normalize", [True, False])
def test_condition_3_makes_vq_misses_impossible(normalize):
    rows = by_regime(theorem2_monte_carlo((1.0, 50.0), (0.05, 0.3), (16,), normalize=normalize, **SMALL), "boundary")
    assert rows
    for r in rows:
        assert r["boundary_condition"] and r["misses_vq"] == 0 and r["ratio_paper"] is None
    # small beta: the readout averages the memory, the score falls below tau, the bound (0 + O(eps^3)) breaks
    low = [r for r in rows if r["beta"] == 1.0]
    assert all(r["misses_paper"] > 0 and r["verdict_paper"] == "violated" for r in low)
    assert all(r["verdict_paper"] == "vacuous" for r in rows if r["beta"] == 50.0)


def test_small_beta_violates_the_bound():
    rows = by_regime(theorem2_monte_carlo((1.0,), (0.1,), (16,), **SMALL), "quantile")
    (r,) = rows
    assert r["ratio_paper"] > 1 and r["verdict_paper"] == "violated" and not r["holds_paper"]
    assert r["score_shift_paper"] < 0 < r["boost_claimed"]


def test_engines_agree():
    kw = dict(betas=(2.0, 8.0, 100.0), epsilons=(0.2,), dims=(16,), **SMALL)
    a, b = theorem2_monte_carlo(engine="rules", **kw), theorem2_monte_carlo(engine="vectorised", **kw)
    for ra, rb in zip(a, b):
        for k in ("misses_vq", "misses_paper", "misses_hopfield"):
            assert ra[k] == rb[k], (k, ra["beta"])


def test_monte_carlo_is_reproducible_under_a_seed():
    kw = dict(betas=(5.0,), epsilons=(0.2,), dims=(16,), **SMALL)
    a = json.dumps(theorem2_monte_carlo(seed=3, **kw))
    assert a == json.dumps(theorem2_monte_carlo(seed=3, **kw))
    assert a != json.dumps(theorem2_monte_carlo(seed=4, **kw))


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(ValueError, match="tau"):
        theorem2_monte_carlo((1.0,), (0.1,), (8,), tau=1.5)
    with pytest.raises(ValueError, match="engine"):
        theorem2_monte_carlo((1.0,), (0.1,), (8,), engine="gpu")


def test_figure_is_written(tmp_path):
    rows = theorem2_monte_carlo((1.0, 50.0), (0.1,), (16,), **SMALL)
    path = theorem2_figure(rows, tmp_path / "t2.png")
    assert path.exists() and path.stat().st_size > 1000


# =========================================================================== Theorem 1


def sweep(rule, taus, hit, cr, mse):
    return [{"rule": rule, "tau": t, "hit_rate": h, "reasoning_capacity": c, "mse": m}
            for t, h, c, m in zip(taus, hit, cr, mse)]


TAUS = [0.5, 0.6, 0.7, 0.8, 0.9]


def test_monotonicity_verdicts_on_synthetic_rows():
    rows = sweep("mono", TAUS, [0.9, 0.8, 0.6, 0.3, 0.1], [5, 4, 3, 2, 1], [0.05, 0.04, 0.03, 0.02, 0.01])
    rows += sweep("bumpy", TAUS, [0.9, 0.8, 0.8, 0.3, 0.1], [5, 4, 3, 2, 1], [0.05, 0.04, 0.045, 0.02, 0.01])
    res = theorem1_monotonicity(rows)
    mono, bumpy = res["groups"]["mono"], res["groups"]["bumpy"]
    for k in ("hit_rate", "reasoning_capacity", "mse"):
        m = mono["monotonicity"][k]
        assert m["holds_strict"] and m["fraction_match"] == 1.0 and not m["violations"]
        assert m["spearman_rho"] == pytest.approx(-1.0)
    assert mono["pareto"]["holds"]
    mse = bumpy["monotonicity"]["mse"]
    assert not mse["holds_weak"] and mse["fraction_match"] == 0.75
    assert mse["violations"] == [{"x0": 0.6, "x1": 0.7, "y0": 0.04, "y1": 0.045}]
    hit = bumpy["monotonicity"]["hit_rate"]
    assert hit["n_ties"] == 1 and hit["holds_weak"] and not hit["holds_strict"]
    assert not res["all_hold"]


def test_duplicate_taus_are_averaged():
    rows = sweep("r", [0.5, 0.5, 0.7], [0.8, 0.6, 0.1], [3, 3, 1], [0.1, 0.1, 0.01])
    g = theorem1_monotonicity(rows)["groups"]["r"]
    assert g["n_points"] == 2 and g["monotonicity"]["hit_rate"]["holds_strict"]


def test_spearman_sign():
    x = np.arange(10.0)
    assert spearman(x, x**2)[0] == pytest.approx(1.0)
    assert spearman(x, -np.exp(x))[0] == pytest.approx(-1.0)
    assert spearman(x, np.ones(10)) == (None, None)
    assert sign_steps(x, x, +1)["holds_strict"] and not sign_steps(x, x, -1)["holds_weak"]


def test_tau_star_and_its_monotonicity_detection():
    taus, d = [0.1, 0.2, 0.3, 0.4, 0.5], [5.0, 3.0, 4.0, 2.0, 1.0]
    assert tau_star(taus, d, [0.5, 1.0, 2.5, 3.0, 4.0, 9.0]) == [None, 0.5, 0.4, 0.2, 0.2, 0.1]
    assert non_increasing_violations([1, 2, 3], [0.5, 0.3, 0.4]) == [{"x0": 2.0, "x1": 3.0, "y0": 0.3, "y1": 0.4}]
    assert non_increasing_violations([1, 2, 3], [None, 0.5, 0.5]) == []
    assert non_increasing_violations([1, 2], [0.5, None])  # feasible, then infeasible: an increase
    # a non-monotone D: tau* is still non-increasing (a tautology), but at D0 = 3 the feasible set is no
    # up-set, and at D0 = 4 tau* = 0.2 is not the C_R-optimal feasible tau (0.3 is)
    rows = sweep("r", taus, [0.9, 0.8, 0.7, 0.6, 0.5], [5.0, 4.0, 6.0, 2.0, 1.0], d)
    ts = theorem1_monotonicity(rows, d0_grid=[3.0, 4.0])["groups"]["r"]["tau_star"]
    assert ts["non_increasing"] and ts["tau_star"] == [0.2, 0.2]
    assert ts["feasible_set_is_up_set"] == [False, True]
    assert ts["argmax_capacity_tau"] == [0.2, 0.3] and ts["tau_star_is_optimal"] == [True, False]
    assert ts["fraction_optimal"] == 0.5


def test_pareto_domination_detection():
    pts = [{"tau": 0.5, "mse": 1.0, "reasoning_capacity": 1.0},
           {"tau": 0.6, "mse": 2.0, "reasoning_capacity": 2.0},
           {"tau": 0.7, "mse": 1.5, "reasoning_capacity": 3.0}]
    dom = pareto_dominated(pts)
    assert dom == [{"dominated": {"tau": 0.6, "mse": 2.0, "reasoning_capacity": 2.0},
                    "by": {"tau": 0.7, "mse": 1.5, "reasoning_capacity": 3.0}}]
    equal = [dict(pts[0]), dict(pts[0], tau=0.9)]
    assert pareto_dominated(equal) == []  # equal points: no strict inequality, no domination
    rows = [dict(p, rule="x") for p in pts]
    assert not theorem1_monotonicity(rows, keys=())["groups"]["x"]["pareto"]["holds"]
