"""Matched-fidelity calibration and the Hopfield-paper reproductions."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semcom.cli import main
from semcom.experiments.calibration import calibrate_tau
from semcom.experiments.hopfield_table1 import savings


@settings(max_examples=50, deadline=None)
@given(a=st.floats(5, 40), slope=st.floats(1, 100), target_off=st.floats(0.05, 0.95))
def test_calibration_finds_the_cheapest_tau_in_the_window(a, slope, target_off):
    psnr = lambda tau: a + slope * (tau - 0.5)  # noqa: E731  (monotone in tau)
    target = psnr(0.5 + target_off * 0.4999)
    cal = calibrate_tau(psnr, target, 0.2, 0.5, 0.9999, iters=30)
    assert cal.matched and abs(cal.psnr_db - target) <= 0.2 + 1e-9
    # the smallest such tau: a little lower falls below the window (unless the lowest tau is already in it)
    assert cal.tau == 0.5 or psnr(cal.tau - 1e-6) < target - 0.2 + 1e-3


def test_calibration_reports_what_it_cannot_match():
    flat = calibrate_tau(lambda tau: 14.0, 19.0)
    assert not flat.matched and "does not move" in flat.reason
    low = calibrate_tau(lambda tau: 10 + 5 * tau, 19.0)
    assert not low.matched and "reaches only" in low.reason
    high = calibrate_tau(lambda tau: 30 + tau, 19.0)
    assert not high.matched and "already" in high.reason
    step = calibrate_tau(lambda tau: 15.0 if tau < 0.8 else 25.0, 19.0)
    assert not step.matched and "jumps" in step.reason and 0.79 < step.tau <= 0.8 + 1e-3


def test_savings_are_one_minus_the_bit_ratio():
    rows = [{"scenario": "S", "system": "nearest", "bits_per_frame_wire": 200.0, "bits_per_frame_paper": 100.0,
             "matched": True},
            {"scenario": "S", "system": "hopfield", "bits_per_frame_wire": 150.0, "bits_per_frame_paper": 30.0,
             "matched": True}]
    s = savings(rows)
    assert s["S"]["bits_per_frame_wire"] == pytest.approx(0.25) and s["S"]["bits_per_frame_paper"] == pytest.approx(0.7)
    assert s["average"]["bits_per_frame_wire"] == pytest.approx(0.25)


def test_reproduce_fig1_quick_writes_a_run_folder(tmp_path, capsys):
    out = tmp_path / "fig1"
    assert main(["reproduce", "hopfield-fig1", "--quick", "--out", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    for name in ("config.json", "results.json", "report.html", "fig1a_bit_reduction.png", "fig1b_new_latents.png"):
        assert (out / name).stat().st_size > 0
    rows = res["rows"]
    assert {r["scenario"] for r in rows} == {"STABLE", "GRADUAL_DRIFT", "MODERATE", "SCENE_CHANGE"}
    by = {(r["scenario"], r["rule"], r["tau"]): r for r in rows}
    for red in res["reduction"]:
        h, v = by[(red["scenario"], "hopfield", red["tau"])], by[(red["scenario"], "nearest", red["tau"])]
        assert red["reduction_wire"] == pytest.approx(1 - h["bits_per_frame_wire"] / v["bits_per_frame_wire"])
    # a higher tau never lowers the bits of the VQ rule (Theorem 1's monotonicity, measured)
    for scenario in ("STABLE", "MODERATE"):
        bits = [by[(scenario, "nearest", t)]["bits_per_frame_wire"] for t in sorted({r["tau"] for r in rows})]
        assert np.all(np.diff(bits) >= -1e-9)


def test_unknown_reproduction_is_a_one_line_error(capsys):
    assert main(["reproduce", "no-such-thing"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown reproduction" in err[0]


def test_table1_rows_for_one_scenario_match_or_say_why():
    from semcom.experiments.hopfield_common import ReproConfig, ceiling_psnr, scenario_clips
    from semcom.experiments.hopfield_table1 import codec_rows, rule_rows
    from semcom.models import load_autoencoder

    model = load_autoencoder()
    cfg = ReproConfig.quick_version(frames=24, codecs=("jpeg", "h264"))
    clips = {"STABLE": scenario_clips(model, cfg)["STABLE"]}["STABLE"]
    target = ceiling_psnr(model, clips) - cfg.below_ceiling_db
    rows = rule_rows(model, clips, cfg, "nearest", "STABLE", target) + codec_rows(clips, cfg, "STABLE", target)
    assert [r["system"] for r in rows] == ["nearest", "nearest+ac", "nearest+res+ac", "jpeg", "h264"]
    for r in rows:
        assert r["matched"] == (abs(r["psnr_db"] - target) <= cfg.tol_db + 1e-9) or r["reason"]
        if not r["matched"]:
            assert r["reason"]
    fixed, ac = rows[0], rows[1]
    assert fixed["tau"] == ac["tau"] and fixed["psnr_db"] == ac["psnr_db"]        # same decisions
    assert ac["bits_per_frame_wire"] < fixed["bits_per_frame_wire"]                # fewer bits
    assert fixed["paper"] == {"bits_per_frame": 9.51, "hit_rate": 0.978, "reasoning_capacity": 14.26}
