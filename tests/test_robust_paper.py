"""The robust paper's reproductions (semcom.experiments.robust_paper) on the shipped models, kept tiny."""

from __future__ import annotations

import json

from semcom.experiments import robust_paper as rp
from semcom.experiments.registry import REPRODUCTIONS


def test_registered_with_snr_option():
    for fig in ("table1", "fig4", "fig5", "fig6", "fig7", "fig8", "fig9", "fig10", "fig11"):
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


def test_fig8_quick_rows_and_universal_beats_random_on_the_jscc(tmp_path, monkeypatch):
    monkeypatch.setattr(rp, "QUICK_FIG8_SSNRS", (0.0,))  # the --quick run at one SSNR
    ticks = []
    out = rp.outcome("fig8", True, ticks.append, tmp_path)
    res = out.results
    assert len(ticks) == rp.steps("fig8", True) and [p.name for p in out.figures] == ["robust_fig8.png"]
    rows = {(r["scheme"], r["noise"]): r for r in res["rows"]}
    assert set(rows) == {(s, n) for s in rp.FIG4_SCHEMES for n in ("universal", "random")}
    for r in res["rows"]:
        assert {"scheme", "ssnr_db", "snr_db", "accuracy", "noise", "dataset"} <= set(r)
        assert r["ssnr_db"] == 0.0 and 0.0 <= r["accuracy"] <= 1.0
    # Algorithm 1's sample-independent noise hurts the JSCC more than random noise of the same power
    for s in ("jscc", "jscc+at"):
        assert rows[s, "universal"]["accuracy"] < rows[s, "random"]["accuracy"]
        assert rows[s, "universal"]["epsilon"] == rows[s, "random"]["epsilon"]
    # at 0 dB SSNR both noises cost the masked VQ-VAE accuracy
    assert rows["masked-vqvae", "universal"]["accuracy"] < res["clean_accuracy"]["masked-vqvae"]
    json.dumps(res)


def test_fig8_noise_is_on_the_received_symbols():
    """The index link's perturbation hook sees equalised 16-QAM symbols of whole codewords and changes the bits."""
    import numpy as np
    import torch

    from semcom.robust.link import IndexLink

    bits = np.random.default_rng(0).integers(0, 2, 768 * 4).astype(np.uint8)
    seen = []

    def perturb(x_hat):
        seen.append(x_hat.shape)
        return x_hat + 2.0
    clean = IndexLink(18.0, seed=1).send_bits(bits)
    noisy = IndexLink(18.0, seed=1, perturb=perturb).send_bits(bits)
    recorded = IndexLink(18.0, seed=1, record=True)
    assert np.array_equal(recorded.send_bits(bits), clean)  # recording alone changes nothing
    assert seen == [torch.Size([4, 384])] and recorded.records[0][1].is_complex()
    assert np.array_equal(clean, bits) and (noisy != bits).mean() > 0.1


def test_fig11_rows_have_both_schemes_and_figure(tmp_path):
    """``robust-fig11``: recall@1 and PSNR per scheme (masked-vqvae-tasks, -tasks+at), SNR and semantic noise (clean,
    FGSM 0.1, PGD 0.05 / 0.1, aimed at retrieval or reconstruction); kept small: 100 images, two SNRs."""
    assert rp.steps("fig11", True) == 2 * 3
    res = rp.run_fig11(True, snrs=(-9.0, 18.0), samples=100)
    assert [p.name for p in rp.figure_fig11(res, tmp_path)] == ["robust_fig11.png"]
    rows = {(r["scheme"], r["snr_db"], r["attack"], r["noise"], r["epsilon"]): r for r in res["rows"]}
    noises = {("none", "none", 0.0)} | {("fgsm", t, 0.1) for t in ("retrieval", "reconstruction")} | {
        ("pgd", t, e) for t in ("retrieval", "reconstruction") for e in (0.05, 0.1)}
    assert set(rows) == {(s, snr) + n for s in rp.FIG11_SCHEMES for snr in (-9.0, 18.0) for n in noises}
    for r in res["rows"]:
        assert 0.0 <= r["recall_at_1"] <= 1.0 and r["images"] == 100 and r["psnr_db"] > 0
    chance = res["chance_recall_at_1"]
    assert 0.07 < chance < 0.13
    for scheme in rp.FIG11_SCHEMES:
        clean = rows[scheme, 18.0, "none", "none", 0.0]["recall_at_1"]
        # clean retrieval over an error-free link is far above chance; the link's errors at -9 dB bring it down
        assert clean > chance + 0.3
        assert rows[scheme, -9.0, "none", "none", 0.0]["recall_at_1"] < clean - 0.2
        # the retrieval-targeted semantic noise costs recall
        assert rows[scheme, 18.0, "pgd", "retrieval", 0.1]["recall_at_1"] < clean
    recon = res["reconstructions"]
    assert len(recon["original"]) == 10 and {f"{s}:noisy_input" for s in rp.FIG11_SCHEMES} <= set(recon)
    json.dumps(res)
