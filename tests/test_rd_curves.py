"""rd-curves: the Pareto front, the Bjontegaard delta against closed forms, and a tiny run end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest

from semcom.experiments.rd_curves import RDConfig, bd_rate, pareto_front, run_rd_curves, scenario_rows


def test_pareto_front_keeps_only_undominated_points():
    pts = [(100, 20.0), (120, 19.0), (150, 22.0), (150, 21.0), (300, 22.0), (400, 25.0)]
    assert pareto_front(pts) == [(100, 20.0), (150, 22.0), (400, 25.0)]


@pytest.mark.parametrize("factor", [0.5, 0.8, 1.0, 1.7])
def test_bd_rate_of_a_scaled_curve_is_the_scale(factor):
    """A curve whose every rate is ``factor`` times the anchor's has BD-rate ``100 (factor - 1)`` exactly."""
    anchor = [(b, 20 + 4 * math.log10(b)) for b in (100, 200, 400, 800, 1600)]
    test = [(factor * b, p) for b, p in anchor]
    pct, lo, hi, reason = bd_rate(anchor, test)
    assert reason is None and pct == pytest.approx(100 * (factor - 1), abs=1e-6)
    assert lo == pytest.approx(anchor[0][1]) and hi == pytest.approx(anchor[-1][1])


def test_bd_rate_matches_a_closed_form_for_a_psnr_dependent_gap():
    """log10 R_test(p) = log10 R_anchor(p) + a p: the mean gap over [lo, hi] is a (lo + hi) / 2."""
    ps = np.linspace(20, 30, 11)
    anchor = [(10 ** (1 + p / 10), p) for p in ps]
    test = [(10 ** (1 + p / 10 + 0.01 * p), p) for p in ps]
    pct, *_ = bd_rate(anchor, test)
    assert pct == pytest.approx(100 * (10 ** (0.01 * 25) - 1), rel=1e-6)


def test_bd_rate_is_none_without_overlap():
    pct, lo, hi, reason = bd_rate([(100, 20), (200, 22)], [(100, 25), (200, 27)])
    assert pct is None and lo is None and "overlap" in reason
    assert bd_rate([(100, 20), (200, 22)], [(100, 21.8), (200, 24)])[0] is None  # a 0.2 dB sliver
    assert bd_rate([(100, 20)], [(100, 20), (200, 22)])[3].startswith("a curve")


def test_scenario_rows_average_their_regimes():
    rows = [{"scenario": "S", "regime": r, "system": "x264", "model": None, "quality": None, "tau": None, "crf": 30,
             "bits_per_frame_wire": b, "psnr_db": p, "ms_ssim": 0.9, "hit_rate": None}
            for r, b, p in (("a", 100, 20), ("b", 300, 24))]
    (row,) = scenario_rows(rows)
    assert row["bits_per_frame_wire"] == 200 and row["psnr_db"] == 22 and row["regime"] == "all"


def test_tiny_run_has_the_promised_rows():
    from semcom.models import load_autoencoder
    from semcom.models.zoo import load_model

    cfg = RDConfig(qualities=(2, 6), taus=(0.9,), sphere_taus=(0.98, 0.995),
                   crfs={"h264": (51, 30), "av1": (63, 40)}, frames=4)
    res = run_rd_curves(cfg, load_autoencoder(), load_model("hyperprior"), strip_regime="static")
    systems = {r["system"] for r in res["rows"]}
    assert {"semcom-hyperprior", "semcom-hyperprior-norefine", "semcom-hyperprior-nomotion", "semcom-hyperprior-intra",
            "semcom-sphere64", "x264", "av1"} <= systems
    for r in res["rows"]:
        for key in ("scenario", "regime", "system", "model", "quality", "tau", "bits_per_frame_wire", "psnr_db",
                    "ms_ssim", "hit_rate"):
            assert key in r
        assert r["bits_per_frame_wire"] > 0 and 5 < r["psnr_db"] < 60 and 0 < r["ms_ssim"] <= 1
    assert {r["scenario"] for r in res["rows"]} >= {"STABLE", "MODERATE", "SCENE_CHANGE", "GRADUAL_DRIFT", "HELD-OUT"}
    bd = res["bd_rate"]
    assert bd and all({"scenario", "regime", "system", "anchor", "bd_rate_pct", "psnr_lo", "psnr_hi"} <= set(b)
                      for b in bd)
    assert all((b["bd_rate_pct"] is None) == (b["reason"] is not None) for b in bd)
    assert any(b["system"] == "semcom-hyperprior" and b["anchor"] == "semcom-hyperprior-norefine" for b in bd)
    assert res["strip"]["original"].shape == (64, 64, 3) and "av1" in res["strip"]["systems"]
