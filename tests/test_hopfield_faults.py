"""Figure 3 and the link under channel errors (semcom.experiments.hopfield_faults), on a reduced grid."""

from __future__ import annotations

import pytest

from semcom.experiments.hopfield_common import ReproConfig
from semcom.experiments.hopfield_faults import PROTOCOLS, figure3, figure_errors, run_errors, run_fig3
from semcom.models import load_autoencoder

FIG3_KEYS = {"rule", "mode", "level", "refreshes", "bits_per_frame_wire", "psnr_db", "frames_to_resync"}


@pytest.fixture(scope="module")
def model():
    return load_autoencoder(None)


@pytest.fixture(scope="module")
def fig3(model):
    cfg = ReproConfig.quick_version(frames=36)
    levels = {"id_permutation": (0.0, 0.5), "vector_noise": (0.0, 0.2)}
    protocols = {k: PROTOCOLS[k] for k in ("paper", "semcom")}
    return run_fig3(cfg, model, regimes=("illum_change", "high_motion"), levels_of=levels, protocols=protocols)


def test_fig3_rows_hold_what_the_issue_names(fig3):
    rows = fig3["rows"]
    assert len(rows) == 2 * 2 * 2 * 2 and all(FIG3_KEYS <= set(r) for r in rows)
    assert all(r["decoded_known_bad"] == 0 for r in rows)
    for r in rows:
        if r["level"] == 0:   # no fault: nothing to repair, nothing out of sync
            assert r["faults"] == r["refreshes"] == r["repaired_slots"] == r["out_of_sync_frames"] == 0
            assert r["frames_to_resync"] == 0


def test_memory_checks_resync_what_cues_alone_leave_behind(fig3):
    by = {(r["protocol"], r["mode"], r["level"], r["rule"]): r for r in fig3["rows"]}
    for rule in ("nearest", "hopfield"):
        paper, semcom = by[("paper", "vector_noise", 0.2, rule)], by[("semcom", "vector_noise", 0.2, rule)]
        assert paper["faults"] == semcom["faults"] == 2                 # one corruption per clip
        assert paper["frames_to_resync"] is None and paper["unresolved_faults"] >= 1
        assert semcom["frames_to_resync"] is not None and semcom["frames_to_resync"] <= 15
        assert semcom["repaired_slots"] > 0 and semcom["out_of_sync_frames"] < paper["out_of_sync_frames"]


def test_delta_bits_is_vq_minus_hopfield(fig3):
    by = {(r["protocol"], r["mode"], r["level"], r["rule"]): r for r in fig3["rows"]}
    for d in fig3["delta"]:
        v, h = (by[(d["protocol"], d["mode"], d["level"], rule)] for rule in ("nearest", "hopfield"))
        assert d["delta_bits_per_clip"] == pytest.approx((v["bits_wire"] - h["bits_wire"]) / 2)
        assert d["refreshes_nearest"] == v["refreshes"] and d["refreshes_hopfield"] == h["refreshes"]


def test_fig3_figures(fig3, tmp_path):
    paths = figure3(fig3, tmp_path)
    assert [p.name for p in paths] == ["fig3a_id_permutation.png", "fig3b_vector_noise.png"]
    assert all(p.stat().st_size > 10_000 for p in paths)


def test_errors_cost_bits_and_fidelity(model, tmp_path):
    cfg = ReproConfig.quick_version(frames=36, rules=("nearest", "hopfield"))
    res = run_errors(cfg, model, regimes=("cam_shake",), bers=(0.0, 1e-2), erasures=(0.2,))
    by = {(r["rule"], r["channel"], r["level"]): r for r in res["rows"]}
    for rule in ("nearest", "hopfield"):
        clean, noisy = by[(rule, "bsc", 0.0)], by[(rule, "bsc", 1e-2)]
        assert clean["damaged_packets"] == 0 and noisy["damaged_packets"] > 0
        assert noisy["bits_per_frame_wire"] > clean["bits_per_frame_wire"]
        assert noisy["frames_lost"] > 0 and noisy["psnr_db"] < clean["psnr_db"]
        assert by[(rule, "erasure", 0.2)]["damaged_packets"] > 0
        assert all(r["decoded_known_bad"] == 0 and r["out_of_sync_frames"] == 0 for r in res["rows"])
    assert figure_errors(res, tmp_path)[0].stat().st_size > 10_000
