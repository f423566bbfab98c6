"""The robust paper's reproductions (semcom.experiments.robust_paper) on the shipped models, kept tiny."""

from __future__ import annotations

import json

from semcom.experiments import robust_paper as rp
from semcom.experiments.registry import REPRODUCTIONS


def test_registered_with_snr_option():
    for fig in ("table1", "fig4", "fig5", "fig6", "fig7", "fig9", "fig10", "fig11"):
        r = REPRODUCTIONS[f"robust-{fig}"]
        assert r.options == ("snr",)


def test_table1_formulas_match_the_paper():
    res = rp.run_table1(quick=True)
    paper = {(r["task"], r["scheme"]): r for r in res["rows"] if r["dataset"].startswith("paper")}
    assert paper["classification", "masked-vqvae (patch 16)"]["symbols_no_code"] == 196
    assert paper["classification", "masked-vqvae (patch 8)"]["symbols_no_code"] == 784
    assert paper["classification", "jpeg+ldpc"]["symbols_ldpc"] == 53760
    ours = {(r["task"], r["scheme"]): r for r in res["rows"] if r["dataset"].startswith("mnist5k")}
    vq = ours["classification", "masked-vqvae (patch 4)"]
    assert vq["info_bits"] == 24 * 8 and vq["symbols_ldpc"] == 96
    assert ours["classification", "jscc (analogue, code_dim 8)"]["symbols_ldpc"] == 96
    assert ours["classification", "jpeg+ldpc (q75, measured)"]["symbols_ldpc"] > 96


def test_fig4_rows_interface():
    res = rp.run_fig4(quick=True, snrs=[18.0], epsilons=[0.0, 0.1], samples=20)
    assert len(res["rows"]) == len(rp.FIG4_SCHEMES) * 2
    assert {r["scheme"] for r in res["rows"]} == set(rp.FIG4_SCHEMES)
    for r in res["rows"]:
        assert {"scheme", "snr_db", "epsilon", "accuracy", "dataset"} <= set(r)
        assert 0.0 <= r["accuracy"] <= 1.0
    json.dumps(res)


def test_fig6_rows_interface_and_monotone_noise():
    res = rp.run_fig6(quick=True, snr=18.0, epsilons=[0.0, 0.3], samples=20)
    rows = {(r["scheme"], r["epsilon"]): r["accuracy"] for r in res["rows"]}
    assert set(rows) == {(s, e) for s in rp.FIG4_SCHEMES for e in (0.0, 0.3)}
    # a large budget never helps the undefended masked VQ-VAE
    assert rows["masked-vqvae", 0.3] <= rows["masked-vqvae", 0.0]
