"""The digital link on Sionna: error rates against closed forms, the byte link, erasures, gradients, ``semcom ber``.

Monte Carlo checks use a tolerance of 4 standard deviations of the estimate
(``sigma = sqrt(m p (1 - p) / bits)``, where ``m`` bits share one symbol and
may err together), so with the fixed seeds they are deterministic and a real
bias of a few per cent shows up.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from semcom.cli import main as cli_main
from semcom.errors import ConfigError
from semcom.phy import (
    BSCChannel,
    DifferentiableChannel,
    DigitalLink,
    MIMOChannel,
    Modulation,
    PhyConfig,
    RayleighChannel,
    simulate_ber,
    straight_through_bits,
    theory,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """BP decoding is many small ops; on a shared 2-core box one thread is ~3x faster than two."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def within(ber: float, expected: float, bits: int, m: int = 1, k: float = 4.0) -> bool:
    sigma = math.sqrt(m * expected * (1 - expected) / bits)
    return abs(ber - expected) <= k * sigma


# ----------------------------------------------------------------------------- closed forms


def q_sqrt_2g(ebn0_db):
    return norm.sf(np.sqrt(2 * 10 ** (np.asarray(ebn0_db) / 10)))


def test_closed_forms_agree_with_each_other():
    e = np.array([-2.0, 0.0, 4.0, 8.0, 12.0])
    assert np.allclose(theory.ber_bpsk_awgn(e), q_sqrt_2g(e))
    assert np.allclose(theory.ber_qam_awgn(4, e), q_sqrt_2g(e))  # Gray QPSK = BPSK per bit
    assert np.allclose(theory.ber_qam_awgn_approx(4, e), q_sqrt_2g(e))
    for order in (16, 64):  # the approximation becomes exact at high SNR
        assert theory.ber_qam_awgn(order, 14.0) == pytest.approx(theory.ber_qam_awgn_approx(order, 14.0), rel=1e-6)
        assert theory.ber_qam_awgn(order, 0.0) > theory.ber_qam_awgn_approx(order, 0.0)
    g = 10 ** (e / 10)
    assert np.allclose(theory.ber_bpsk_rayleigh(e), (1 - np.sqrt(g / (1 + g))) / 2)
    assert np.allclose(theory.ber_qam_fading(4, e, 1), theory.ber_bpsk_rayleigh(e))
    assert np.all(theory.ber_bpsk_diversity(e, 3) < theory.ber_bpsk_diversity(e, 1))


def test_qam_fading_is_the_average_of_the_awgn_ber():
    from scipy.integrate import quad

    for order in (16, 64):
        g = 10 ** 0.5
        num = quad(lambda t: np.exp(-t) * theory.ber_qam_awgn(order, 10 * np.log10(g * t)), 1e-12, np.inf)[0]
        assert theory.ber_qam_fading(order, 5.0) == pytest.approx(num, rel=1e-6)


# ----------------------------------------------------------------------------- Monte Carlo vs closed forms


@pytest.mark.parametrize("modulation", ["bpsk", "qpsk"])
def test_bpsk_qpsk_awgn_ber_is_q_sqrt_2ebn0(modulation):
    points = simulate_ber(modulation, "awgn", "none", [0.0, 4.0, 7.0], target_errors=10**9, max_bits=150_000,
                          seed=1)
    for p in points:
        assert p.bler is None and 100_000 < p.bits <= 150_000
        assert p.ber_theory == pytest.approx(float(q_sqrt_2g(p.ebn0_db)))
        assert within(p.ber, float(q_sqrt_2g(p.ebn0_db)), p.bits), (p.ebn0_db, p.ber)


@pytest.mark.parametrize("modulation,points_db", [("qam16", [0.0, 6.0, 10.0]), ("qam64", [4.0, 8.0, 12.0])])
def test_qam_awgn_ber_matches_gray_formulas(modulation, points_db):
    m = {"qam16": 4, "qam64": 6}[modulation]
    order = 2**m
    # maxlog LLR signs are the nearest-point decisions the closed forms assume
    points = simulate_ber(modulation, "awgn", "none", points_db, target_errors=10**9, max_bits=150_000,
                          seed=2, demapping="maxlog")
    for p in points:
        exact = float(theory.ber_qam_awgn(order, p.ebn0_db))
        assert within(p.ber, exact, p.bits, m), (p.ebn0_db, p.ber, exact)
        approx = float(theory.ber_qam_awgn_approx(order, p.ebn0_db))
        rel = 0.2 if p.ebn0_db < 5 else 0.06  # the nearest-neighbour approximation is loose at low SNR
        assert p.ber == pytest.approx(approx, rel=rel), (p.ebn0_db, p.ber, approx)


def test_bpsk_rayleigh_matches_closed_form():
    points = simulate_ber("bpsk", "rayleigh", "none", [0.0, 5.0, 10.0], target_errors=10**9, max_bits=150_000,
                          seed=3, coherence_symbols=1)
    for p in points:
        g = 10 ** (p.ebn0_db / 10)
        expected = (1 - math.sqrt(g / (1 + g))) / 2
        assert p.ber_theory == pytest.approx(expected)
        assert within(p.ber, expected, p.bits), (p.ebn0_db, p.ber, expected)


def test_qam16_rayleigh_app_demapping_is_at_most_the_slicer_ber():
    kw = dict(target_errors=10**9, max_bits=150_000, seed=4, coherence_symbols=1)
    slicer = simulate_ber("qam16", "rayleigh", "none", [4.0], demapping="maxlog", **kw)[0]
    app = simulate_ber("qam16", "rayleigh", "none", [4.0], demapping="app", **kw)[0]
    exact = float(theory.ber_qam_fading(16, 4.0))
    assert within(slicer.ber, exact, slicer.bits, 4)
    assert app.ber <= slicer.ber  # bitwise MAP decisions (same noise, same seed) never do worse


def test_rayleigh_gains_are_constant_over_a_coherence_block():
    ch = RayleighChannel(coherence_symbols=4)
    h = ch.gains(3, 10)
    assert h.shape == (3, 10)
    assert torch.equal(h[:, 0:4], h[:, :1].expand(3, 4)) and torch.equal(h[:, 8:10], h[:, 8:9].expand(3, 2))
    assert not torch.equal(h[:, 0], h[:, 4])
    whole = RayleighChannel().gains(2, 7)  # default: one gain per row (codeword)
    assert torch.equal(whole, whole[:, :1].expand(2, 7))


def test_bsc_flips_bits_at_rate_p():
    p, n = 0.1, 200_000
    bsc = BSCChannel()
    from semcom.phy._rng import make_generator, use_generator

    use_generator(bsc, make_generator(0))
    bits = torch.randint(0, 2, (4, n // 4), generator=torch.Generator().manual_seed(0)).float()
    llr = bsc(bits, p)
    flipped = ((llr > 0).float() != bits).float().mean().item()
    assert within(flipped, p, n)
    assert torch.allclose(llr.abs(), torch.tensor(math.log((1 - p) / p)))
    # through simulate_ber: explicit crossover, and the default (hard-decision AWGN) one
    pt = simulate_ber("bpsk", "bsc", "none", [0.0], target_errors=10**9, max_bits=100_000, seed=5, bsc_p=0.03)[0]
    assert within(pt.ber, 0.03, pt.bits) and pt.ber_theory == 0.03
    pt = simulate_ber("qpsk", "bsc", "none", [3.0], target_errors=10**9, max_bits=100_000, seed=5)[0]
    assert within(pt.ber, float(q_sqrt_2g(3.0)), pt.bits)


def test_ldpc_half_rate_lowers_ber_at_moderate_snr():
    kw = dict(target_errors=10**9, max_bits=15_000, seed=6)
    uncoded = simulate_ber("qpsk", "awgn", "none", [2.0], **kw)[0]
    coded = simulate_ber("qpsk", "awgn", "ldpc-1/2", [2.0], **kw)[0]
    assert uncoded.ber > 0.03
    assert coded.bler is not None and coded.blocks >= 10
    assert coded.ber < uncoded.ber / 20
    # below the threshold it cannot help: every codeword fails
    bad = simulate_ber("qpsk", "awgn", "ldpc-1/2", [-2.0], target_errors=1, max_bits=3_000, seed=6)[0]
    assert bad.bler == 1.0


# ----------------------------------------------------------------------------- MIMO


def test_mimo_8x4_zf_matches_diversity_closed_form_and_lmmse_does_better():
    kw = dict(target_errors=10**9, max_bits=100_000, seed=7)
    zf = simulate_ber("qpsk", "mimo", "none", [4.0], equalizer="zf", **kw)[0]
    lmmse = simulate_ber("qpsk", "mimo", "none", [4.0], equalizer="lmmse", **kw)[0]
    expected = float(theory.ber_bpsk_diversity(4.0, 1))  # 4 streams on 4 receive antennas: diversity 4 - 4 + 1
    assert zf.ber_theory == pytest.approx(expected)
    assert within(zf.ber, expected, zf.bits, 2)
    assert lmmse.ber_theory is None and lmmse.ber < zf.ber
    two = simulate_ber("qpsk", "mimo", "none", [4.0], equalizer="zf", num_streams=2, **kw)[0]
    assert within(two.ber, float(theory.ber_bpsk_diversity(4.0, 3)), two.bits, 2)  # diversity 4 - 2 + 1


def test_mimo_channel_shapes_and_full_spatial_multiplexing():
    ch = MIMOChannel()  # 8 x 4, 4 streams
    assert (ch.num_tx_ant, ch.num_rx_ant, ch.num_streams) == (8, 4, 4)
    p = ch.precoder
    assert torch.allclose(p.mH @ p, torch.eye(4, dtype=p.dtype), atol=1e-6)
    x = Modulation("qpsk").map(torch.randint(0, 2, (3, 16)).float())
    x_hat, no_eff = MIMOChannel(8, 4, 8, "lmmse")(x, 0.01)  # 8 streams on 4 antennas: LMMSE still runs
    assert x_hat.shape == x.shape and no_eff.shape == x.shape and torch.all(no_eff > 0)
    with pytest.raises(ValueError):
        MIMOChannel(8, 4, 8, "zf")
    with pytest.raises(ConfigError, match="ZF"):
        DigitalLink("qpsk", "mimo", equalizer="zf", num_streams=8)


@pytest.mark.parametrize("equalizer", ["lmmse", "zf"])
def test_digital_link_over_mimo_8x4(equalizer):
    link = DigitalLink("qam16", "mimo", "ldpc-1/2", snr_db=25.0, equalizer=equalizer, seed=0)
    packets = [b"robust codebook", bytes(range(200))]
    res = link.transmit(packets)
    assert res.packets == packets
    assert res.channel_uses == res.coded_bits // 4 and res.time_slots == res.channel_uses // 4


# ----------------------------------------------------------------------------- the byte link


@pytest.mark.parametrize("modulation,channel", [("bpsk", "awgn"), ("qpsk", "rayleigh"), ("qam16", "bsc"),
                                                ("qam64", "rayleigh")])
def test_digital_link_round_trip_at_high_snr(modulation, channel):
    link = DigitalLink(modulation, channel, "ldpc-1/2", snr_db=40.0, seed=1)
    packets = [b"", b"\x00", b"hello semantic world", bytes(range(256)) * 2]
    res = link.transmit(packets)
    assert res.packets == packets and res.erasures == 0
    cfg = link.config
    m, n, kp = cfg.bits_per_symbol, cfg.codeword_bits, cfg.payload_bits_per_codeword
    assert kp == n // 2 - 24
    assert res.packet_codewords == [math.ceil((8 * len(p) + 1) / kp) for p in packets]
    assert res.coded_bits == res.codewords * n and res.channel_uses == res.coded_bits // m
    assert res.channel_uses == sum(res.packet_channel_uses) == sum(link.channel_uses_for(len(p)) for p in packets)
    assert res.info_bits == 8 * sum(map(len, packets))


def test_digital_link_erases_instead_of_garbling_at_very_low_snr():
    link = DigitalLink("qam64", "rayleigh", "ldpc-1/2", snr_db=-5.0, seed=2)
    res = link.transmit([bytes([i]) * 50 for i in range(12)])
    assert res.packets == [None] * 12 and res.erased == [True] * 12 and res.erasures == 12
    assert res.channel_uses == 12 * 1536 // 6  # erased packets still cost their channel uses


def test_delivered_packets_are_never_corrupted():
    """Over many seeds and SNRs around the waterfall, whatever is delivered equals what was sent.

    Uncoded, short codewords keep it cheap and make nearly every codeword
    corrupt at low SNR: a 24-bit CRC lets a corrupted codeword through with
    probability ~2**-24, so over the ~10**4 corrupted codewords here the
    chance of a (legitimate) failure is below 1e-3.
    """
    rng = np.random.default_rng(0)
    packets = [rng.bytes(int(rng.integers(0, 40))) for _ in range(60)]
    corrupted_seen = delivered = 0
    for seed in range(12):
        for snr in (0.0, 6.0, 10.0):
            link = DigitalLink("qpsk", "awgn", "none", snr_db=snr, seed=seed, codeword_bits=96)
            res = link.transmit(packets)
            for sent, got in zip(packets, res.packets):
                if got is not None:
                    assert got == sent
                    delivered += 1
                else:
                    corrupted_seen += 1
    assert corrupted_seen > 1000 and delivered > 100  # both outcomes really happened
    # coded, in the waterfall, a few seeds: partial deliveries are exact too
    for seed in range(3):
        link = DigitalLink("qpsk", "awgn", "ldpc-1/2", ebn0_db=1.0, seed=seed)
        res = link.transmit(packets[:12])
        assert all(got is None or got == sent for sent, got in zip(packets, res.packets))


def test_one_bad_codeword_erases_its_whole_packet_only():
    link = DigitalLink("qpsk", "awgn", "none", codeword_bits=64)
    packets = [b"a" * 20, b"b" * 3]
    u, counts = link.segment(packets)
    assert counts == [math.ceil(161 / 40), 1]
    assert link.reassemble(u, counts) == packets
    u[1, 5] = 1 - u[1, 5]  # second codeword of the first packet
    assert link.reassemble(u, counts) == [None, b"b" * 3]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=300), max_size=8), st.sampled_from([64, 96, 192, 1536]))
def test_segmentation_then_reassembly_is_the_identity(packets, n):
    link = DigitalLink("qpsk", "awgn", "none", codeword_bits=n)
    u, counts = link.segment(packets)
    assert u.shape == (sum(counts), n)
    assert link.reassemble(u, counts) == packets


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=120), min_size=1, max_size=4))
def test_noiseless_link_is_the_identity(packets):
    link = DigitalLink("qam16", "awgn", "none", snr_db=80.0, codeword_bits=192)
    assert link.transmit(packets).packets == packets


def test_same_seed_same_bits_and_no_global_rng_touched():
    import sionna.phy

    state = sionna.phy.config.torch_rng("cpu").get_state()
    packets = [bytes(range(30))] * 40
    runs = [DigitalLink("qpsk", "rayleigh", "none", snr_db=12.0, seed=s, codeword_bits=64).transmit(packets)
            for s in (3, 3, 4)]
    assert runs[0].packets == runs[1].packets
    assert runs[0].erased != runs[2].erased
    assert torch.equal(sionna.phy.config.torch_rng("cpu").get_state(), state)


def test_a_seeded_link_pickles_and_goes_on_with_the_same_bits():
    import pickle

    packets = [bytes(range(20))] * 30
    link = DigitalLink("qpsk", "rayleigh", "none", snr_db=14.0, codeword_bits=64, seed=5)
    copy = pickle.loads(pickle.dumps(link))  # same generator state, rebuilt blocks
    assert type(copy.chain.channel.awgn).__name__ == "AWGN"
    assert copy.transmit(packets).packets == link.transmit(packets).packets


def test_ebn0_and_snr_are_related_by_rate_and_bits_per_symbol():
    link = DigitalLink("qam16", "awgn", "ldpc-1/2", ebn0_db=3.0)
    res = link.transmit([b"x"])
    assert res.snr_db == pytest.approx(3.0 + 10 * math.log10(4 * 0.5))
    assert res.ebn0_db == pytest.approx(3.0)
    with pytest.raises(ConfigError):
        link.transmit([b"x"], snr_db=1.0, ebn0_db=1.0)


# ----------------------------------------------------------------------------- differentiable path


@pytest.mark.parametrize("modulation", ["bpsk", "qpsk", "qam16", "qam64"])
def test_soft_map_equals_sionna_mapper_on_hard_bits(modulation):
    mod = Modulation(modulation)
    bits = torch.randint(0, 2, (5, 12 * mod.bits_per_symbol)).float()
    assert torch.equal(mod.soft_map(bits), mod.map(bits))


@pytest.mark.parametrize("channel", ["awgn", "rayleigh", "bsc", "mimo"])
def test_gradients_reach_the_encoder_through_map_channel_demap(channel):
    torch.manual_seed(0)
    encoder, decoder = torch.nn.Linear(16, 32), torch.nn.Linear(32, 16)
    link = DifferentiableChannel("qam16", channel, snr_db=8.0, seed=0)
    x = torch.randn(8, 16)
    bits = straight_through_bits(torch.sigmoid(encoder(x)))
    assert set(bits.unique().tolist()) <= {0.0, 1.0}  # hard bits go over the air
    p_one = link(bits)
    assert p_one.shape == bits.shape and torch.all((p_one >= 0) & (p_one <= 1))
    loss = torch.nn.functional.mse_loss(decoder(p_one), x)
    loss.backward()
    assert encoder.weight.grad is not None and encoder.weight.grad.abs().sum() > 0
    assert torch.isfinite(encoder.weight.grad).all()


def test_differentiable_channel_llrs_follow_sionna_sign_convention():
    link = DifferentiableChannel("qpsk", "awgn", snr_db=30.0, return_llrs=True)
    bits = torch.randint(0, 2, (4, 64)).float()
    llr = link(bits)
    assert torch.equal((llr > 0).float(), bits)  # llr = log P(1)/P(0): positive means 1


# ----------------------------------------------------------------------------- config and CLI


@pytest.mark.parametrize("kwargs,field", [
    (dict(modulation="qam8"), "modulation"),
    (dict(channel="awgn2"), "channel"),
    (dict(code="ldpc-1/7"), "code"),
    (dict(code="turbo"), "code"),
    (dict(modulation="qam64", codeword_bits=1000), "codeword_bits"),
    (dict(snr_db=5.0, ebn0_db=5.0), "ebn0_db"),
    (dict(bsc_p=0.7), "bsc_p"),
    (dict(snr_db="loud"), "snr_db"),
])
def test_bad_values_raise_one_line_config_errors(kwargs, field):
    with pytest.raises(ConfigError, match=field) as exc:
        DigitalLink(**kwargs)
    assert "\n" not in str(exc.value)


def test_transmit_rejects_a_bare_bytes_object():
    with pytest.raises(ConfigError):
        DigitalLink(code="none").transmit(b"abc")


def test_phy_config_defaults():
    cfg = PhyConfig()
    assert (cfg.modulation, cfg.channel, cfg.code, cfg.codeword_bits) == ("qam16", "awgn", "ldpc-1/2", 1536)
    assert cfg.esn0_db() == 10.0 and cfg.info_bits_per_codeword == 768 and cfg.payload_bits_per_codeword == 744
    assert PhyConfig(channel="mimo").streams == 4


def test_cli_ber_json(capsys, tmp_path):
    plot = tmp_path / "ber.png"
    rc = cli_main(["ber", "--modulation", "qpsk", "--channel", "awgn", "--ebn0-db", "0,4", "--bits", "20000",
                   "--target-errors", "100000", "--seed", "1", "--plot", str(plot), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert [p["ebn0_db"] for p in out["points"]] == [0.0, 4.0]
    for p in out["points"]:
        assert set(p) >= {"ebn0_db", "ber", "bler", "bits", "errors"}
        assert p["bler"] is None and 0 < p["ber"] < 0.5 and p["bits"] <= 20000
        assert p["errors"] == round(p["ber"] * p["bits"])
    assert plot.stat().st_size > 1000
    rc = cli_main(["ber", "--code", "ldpc-1/2", "--snr-db", "6", "--bits", "3000", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["axis"] == "snr_db" and out["points"][0]["bler"] == 0.0


@pytest.mark.parametrize("argv,needle", [
    (["ber", "--modulation", "qam8"], "--modulation"),
    (["ber", "--code", "ldpc-x"], "code"),
    (["ber", "--ebn0-db", "a,b"], "--ebn0-db"),
    (["ber", "--channel", "mimo", "--equalizer", "zf", "--num-streams", "6"], "num_streams"),
    (["ber", "--bits", "0"], "max_bits"),
])
def test_cli_ber_bad_values(capsys, argv, needle):
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("semcom: error:") and needle in err and err.count("\n") == 1


def test_fit_codeword_sends_short_packets_in_short_codewords():
    packets = [b"", b"hit", bytes(40), bytes(300)]
    fixed = DigitalLink("qam64", "rayleigh", "ldpc-1/2", snr_db=40.0, seed=0)
    fit = DigitalLink("qam64", "rayleigh", "ldpc-1/2", snr_db=40.0, seed=0, fit_codeword=True)
    assert fit.config.codeword_lengths == [96, 192, 384, 768, 1536]
    a, b = fixed.transmit(packets), fit.transmit(packets)
    assert a.packets == b.packets == packets
    assert a.packet_codeword_bits == [1536] * 4
    # payload + padding bit + CRC24 <= k = n / 2: 1 + 24 <= 48; 25 + 24 <= 96; 321 + 24 <= 384; 2401 bits: 4 x 1536
    assert b.packet_codeword_bits == [96, 192, 768, 1536]
    assert b.packet_channel_uses == [16, 32, 128, 4 * 256] == [fit.channel_uses_for(len(p)) for p in packets]
    assert b.channel_uses == sum(b.packet_channel_uses) < a.channel_uses


def test_importing_sionna_through_semcom_keeps_torch_seeded():
    """Sionna's first import reseeds torch's global generator at random; semcom.phy imports it with torch's state
    kept, so a seeded run that builds its first Sionna block afterwards stays reproducible (in a fresh process,
    where Sionna is not yet imported)."""
    import subprocess
    import sys

    code = ("import torch; torch.manual_seed(0); s = torch.random.get_rng_state(); import semcom.phy.channels; "
            "import sionna.phy; assert torch.equal(s, torch.random.get_rng_state()), 'torch reseeded'")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
