"""The grounded codebook paper's losses and theory (semcom.quantization.codebook), each against its formula,
a library, a closed form or a Monte Carlo over a binary symmetric channel. Equation numbers: papers/README.md."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom, norm

from semcom.errors import ConfigError
from semcom.quantization.codebook import (
    CodebookLoss,
    binary_labels,
    bsc_flip_probability,
    bsc_mix,
    channel_aware_loss,
    channel_distortion,
    entropy_regularised_loss,
    error_weight_distribution,
    hamming_matrix,
    hard_index_entropy,
    index_bits,
    index_entropy,
    index_error_probability,
    index_probabilities,
    monte_carlo_channel_distortion,
    nearest_indices,
    optimal_codebook_size,
    quantization_distortion,
    quantization_loss,
    rate_bits_per_image,
    soft_assignments,
    squared_distances,
    total_codebook_loss,
    total_distortion,
    transition_matrix,
    transition_matrix_random_labelling,
)

FAST = settings(max_examples=15, deadline=None)
sizes = st.sampled_from([16, 32, 64, 128])
# No subnormal p: scipy's binom.pmf overflows at p ~ 7e-309 (a hypothesis find), our closed forms do not
flip_p = st.floats(min_value=0.0, max_value=0.5, allow_nan=False, allow_subnormal=False)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small tensors: one intra-op thread is faster on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def direct_transition(J: int, p: float) -> np.ndarray:
    """Eq. (17) written out with Python's own popcount, one entry at a time."""
    n = math.ceil(math.log2(J))
    out = np.empty((J, J))
    for i, k in itertools.product(range(J), range(J)):
        d = bin(i ^ k).count("1")
        out[i, k] = p**d * (1 - p) ** (n - d)
    return out


# =========================================================================== eqs. (1)-(5)


def test_nearest_indices_is_cdist_argmin():
    g = gen(0)
    codebook = torch.randn(64, 8, generator=g)
    z = torch.randn(4, 5, 7, 8, generator=g)
    idx = nearest_indices(z, codebook)
    assert idx.shape == (4, 5, 7) and idx.dtype == torch.int64
    d = torch.cdist(z.reshape(-1, 8).double(), codebook.double())
    ref = d.argmin(-1)
    flat = idx.reshape(-1)
    differ = flat != ref
    # the two may only disagree on a floating-point tie
    assert torch.allclose(d[differ, flat[differ]], d[differ, ref[differ]], atol=1e-5)
    assert differ.float().mean() < 0.01
    # each codeword lies in its own Voronoi cell (eqs. 3-4), and so do points close to it
    assert torch.equal(nearest_indices(codebook, codebook), torch.arange(64))
    assert torch.equal(nearest_indices(codebook + 1e-3 * torch.randn(64, 8, generator=g), codebook), torch.arange(64))


def test_nearest_indices_matches_vector_quantize_pytorch():
    from vector_quantize_pytorch import VectorQuantize

    g = gen(1)
    J, D = 128, 16
    codebook = torch.randn(J, D, generator=g)
    z = torch.randn(3, 50, D, generator=g)
    vq = VectorQuantize(dim=D, codebook_size=J).eval()
    with torch.no_grad():
        vq._codebook.embed.copy_(codebook[None])
        quantized, vq_idx, _ = vq(z)
    ours = nearest_indices(z, codebook)
    d = squared_distances(z, codebook)
    differ = ours != vq_idx
    assert differ.float().mean() < 0.01
    assert torch.allclose(d[differ, ours[differ]], d[differ, vq_idx[differ]], atol=1e-4)
    assert torch.allclose(quantized[~differ], codebook[ours][~differ], atol=1e-5)


def test_squared_distances_formula_and_shape_errors():
    g = gen(2)
    z, e = torch.randn(10, 4, generator=g, dtype=torch.float64), torch.randn(16, 4, generator=g, dtype=torch.float64)
    direct = ((z[:, None, :] - e[None, :, :]) ** 2).sum(-1)
    assert torch.allclose(squared_distances(z, e), direct, atol=1e-12)
    with pytest.raises(ConfigError, match="last dimension"):
        nearest_indices(torch.zeros(3, 5), e)
    with pytest.raises(ConfigError, match="codebook"):
        nearest_indices(z, e[0])


def test_quantization_loss_value_and_stop_gradients():
    """Eq. (5): value (1 + beta) ||z - e||^2; sg sends ||sg[z] - e||^2 to the codebook only and
    beta ||z - sg[e]||^2 to z only."""
    g = gen(3)
    beta = 0.3
    z = torch.randn(12, 6, generator=g, dtype=torch.float64, requires_grad=True)
    e = torch.randn(12, 6, generator=g, dtype=torch.float64, requires_grad=True)
    loss = quantization_loss(z, e, beta)
    sq = ((z - e) ** 2).sum(-1).mean()
    assert loss.item() == pytest.approx((1 + beta) * sq.item(), rel=1e-12)
    loss.backward()
    n = z.shape[0]
    assert torch.allclose(z.grad, 2 * beta * (z - e).detach() / n)
    assert torch.allclose(e.grad, 2 * (e - z).detach() / n)
    with pytest.raises(ConfigError, match="e_i"):
        quantization_loss(z, e[:3], beta)
    with pytest.raises(ConfigError, match="beta=-1"):
        quantization_loss(z, e, -1.0)


# =========================================================================== eqs. (10)-(14)


def test_soft_assignments_and_entropy_against_direct_computation():
    g = gen(4)
    z = torch.randn(20, 3, generator=g, dtype=torch.float64)
    e = torch.randn(16, 3, generator=g, dtype=torch.float64)
    T = 0.7
    num = np.exp(-np.array([[np.sum((zb - ej) ** 2) for ej in e.numpy()] for zb in z.numpy()]) / T)
    q_ref = num / num.sum(1, keepdims=True)
    q = soft_assignments(z, e, T)
    assert np.allclose(q.numpy(), q_ref, atol=1e-12)
    p_ref = q_ref.mean(0)
    assert np.allclose(index_probabilities(z, e, T).numpy(), p_ref, atol=1e-12)
    h_ref = -(p_ref * np.log(p_ref)).sum()
    assert index_entropy(z, e, T).item() == pytest.approx(h_ref, rel=1e-10)
    assert index_entropy(z, e, T, unit="bits").item() == pytest.approx(h_ref / np.log(2), rel=1e-10)
    with pytest.raises(ConfigError, match="unit='dits'"):
        index_entropy(z, e, T, unit="dits")
    with pytest.raises(ConfigError, match="temperature=0"):
        soft_assignments(z, e, 0.0)


def test_uniform_soft_assignments_have_entropy_log_J():
    """All codewords equidistant from every z: q_bj = 1/J, so H = log J (nats) = log2 J (bits)."""
    J = 64
    e = torch.nn.functional.normalize(torch.randn(J, 5, generator=gen(5), dtype=torch.float64), dim=-1)
    z = torch.zeros(9, 5, dtype=torch.float64)
    assert torch.allclose(soft_assignments(z, e, 0.5), torch.full((9, J), 1 / J, dtype=torch.float64))
    assert index_entropy(z, e, 0.5).item() == pytest.approx(math.log(J), rel=1e-12)
    assert index_entropy(z, e, 0.5, unit="bits").item() == pytest.approx(6.0, rel=1e-12)
    # and as T -> infinity for any z
    z = torch.randn(9, 5, generator=gen(6), dtype=torch.float64)
    assert index_entropy(z, e, 1e6).item() == pytest.approx(math.log(J), rel=1e-6)


def test_small_temperature_gives_hard_assignments():
    g = gen(7)
    z, e = torch.randn(30, 4, generator=g, dtype=torch.float64), torch.randn(16, 4, generator=g, dtype=torch.float64)
    q = soft_assignments(z, e, 1e-4)
    assert torch.equal(q.argmax(-1), nearest_indices(z, e))
    assert torch.allclose(q.max(-1).values, torch.ones(30, dtype=torch.float64))
    hard = hard_index_entropy(nearest_indices(z, e), 16, unit="nats")
    assert index_entropy(z, e, 1e-4).item() == pytest.approx(hard, abs=1e-9)


@FAST
@given(J=sizes, T=st.floats(min_value=0.05, max_value=50.0), seed=st.integers(0, 2**16))
def test_index_entropy_bounds(J, T, seed):
    g = gen(seed)
    z, e = torch.randn(17, 3, generator=g, dtype=torch.float64), torch.randn(J, 3, generator=g, dtype=torch.float64)
    q = soft_assignments(z, e, T)
    assert torch.allclose(q.sum(-1), torch.ones(17, dtype=torch.float64))
    h = index_entropy(z, e, T).item()
    assert -1e-12 <= h <= math.log(J) + 1e-12


def test_hard_index_entropy():
    assert hard_index_entropy(torch.arange(256) % 32, 32) == pytest.approx(5.0)
    assert hard_index_entropy(torch.full((50,), 3), 16) == pytest.approx(0.0, abs=1e-12)
    assert hard_index_entropy(torch.tensor([0, 0, 1, 1]), 16) == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="indices"):
        hard_index_entropy(torch.tensor([0, 40]), 16)


def test_entropy_regularised_loss_and_its_gradient_spreads_the_indices():
    """Eq. (13) = L_q - lambda_H H; ascending H (eq. 14) spreads a codebook crowded in one corner, so that the
    hard index entropy rises toward log J."""
    g = gen(8)
    T = 0.1
    z = torch.randn(128, 2, generator=g)
    e = (0.3 * torch.randn(16, 2, generator=g) + torch.tensor([3.0, 0.0])).requires_grad_()
    idx = nearest_indices(z, e)
    expected = quantization_loss(z, e[idx], 0.25) - 0.5 * index_entropy(z, e, T)
    got = entropy_regularised_loss(z, e, beta=0.25, lambda_h=0.5, temperature=T)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    h0, hard0 = index_entropy(z, e, T).item(), hard_index_entropy(idx, 16, unit="nats")
    assert hard0 < 0.3 * math.log(16)
    opt = torch.optim.Adam([e], lr=0.05)
    for _ in range(50):
        opt.zero_grad()
        (-index_entropy(z, e, T)).backward()
        opt.step()
    assert index_entropy(z, e, T).item() > h0 + 1.5
    assert hard_index_entropy(nearest_indices(z, e), 16, unit="nats") > 0.8 * math.log(16)


# =========================================================================== eqs. (15)-(17)


@pytest.mark.parametrize("J", [16, 64, 4096])
def test_binary_labels_are_natural_binary(J):
    labels = binary_labels(J)
    n = index_bits(J)
    assert n == int(math.log2(J)) and labels.shape == (J, n)
    assert set(labels.unique().tolist()) <= {0, 1}
    weights = 2 ** torch.arange(n - 1, -1, -1)
    assert torch.equal((labels * weights).sum(-1), torch.arange(J))
    assert labels[1].tolist() == [0] * (n - 1) + [1]  # most significant bit first


def test_hamming_matrix_is_popcount_of_xor():
    J = 64
    direct = torch.tensor([[bin(i ^ k).count("1") for k in range(J)] for i in range(J)])
    assert torch.equal(hamming_matrix(J), direct)


@FAST
@given(n=st.integers(1, 16), p=flip_p)
def test_error_weight_distribution_is_binomial(n, p):
    """Eq. (15) against scipy.stats.binom; eq. (16) is 1 - P(w = 0)."""
    pmf = error_weight_distribution(n, p).numpy()
    assert np.allclose(pmf, binom.pmf(np.arange(n + 1), n, p), rtol=1e-10, atol=1e-300)
    assert pmf.sum() == pytest.approx(1.0, abs=1e-12)
    pe = index_error_probability(n, p)
    assert pe == pytest.approx(1.0 - pmf[0], abs=1e-12)
    assert pe == pytest.approx(binom.sf(0, n, p), abs=1e-12)


def test_index_error_probability_values():
    assert index_error_probability(8, 0.0) == 0.0
    assert index_error_probability(8, 0.5) == pytest.approx(1 - 2**-8)
    assert index_error_probability(6, 0.1) == pytest.approx(1 - 0.9**6)
    assert index_error_probability(12, 1e-9) == pytest.approx(12e-9, rel=1e-6)  # no cancellation at small p


@FAST
@given(J=sizes, p=flip_p)
def test_exact_transition_matrix_properties(J, p):
    """Eq. (17) exact: rows sum to 1, diagonal (1-p)^n = 1 - P_e, symmetric, and it is the Kronecker product
    of n one-bit BSCs [[1-p, p], [p, 1-p]]."""
    P = transition_matrix(J, p)
    n = index_bits(J)
    assert torch.allclose(P.sum(1), torch.ones(J, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(P.diagonal(), torch.full((J,), (1 - p) ** n, dtype=torch.float64))
    assert P.diagonal()[0].item() == pytest.approx(1 - index_error_probability(n, p), abs=1e-12)
    assert torch.equal(P, P.T)
    bsc = torch.tensor([[1 - p, p], [p, 1 - p]], dtype=torch.float64)
    kron = bsc
    for _ in range(n - 1):
        kron = torch.kron(kron, bsc)
    assert torch.allclose(P, kron, atol=1e-14)


def test_exact_transition_matrix_entries_and_limits():
    assert np.allclose(transition_matrix(32, 0.13).numpy(), direct_transition(32, 0.13), atol=1e-15)
    assert torch.equal(transition_matrix(16, 0.0), torch.eye(16, dtype=torch.float64))
    assert torch.allclose(transition_matrix(16, 0.5), torch.full((16, 16), 1 / 16, dtype=torch.float64))
    assert transition_matrix(16, 0.1, dtype=torch.float32).dtype == torch.float32


def test_transition_row_against_monte_carlo_bsc():
    """Row i of eq. (17) against the histogram of received indices when i's label goes through a BSC."""
    J, p, i, trials = 16, 0.15, 5, 200_000
    labels = binary_labels(J)[i]
    flips = (torch.rand(trials, labels.numel(), generator=gen(9)) < p).long()
    received = ((labels ^ flips) * 2 ** torch.arange(3, -1, -1)).sum(-1)
    freq = torch.bincount(received, minlength=J).double() / trials
    row = transition_matrix(J, p)[i]
    se = torch.sqrt(row * (1 - row) / trials)
    assert ((freq - row).abs() <= 5 * se + 1e-12).all()


@FAST
@given(J=sizes, p=flip_p)
def test_random_labelling_form(J, p):
    """Eq. (17) approximate: 1 - P_e on the diagonal, P_e/(J-1) off it; the same diagonal as the exact form
    and the same off-diagonal mass, which the exact form spreads unevenly."""
    R = transition_matrix_random_labelling(J, p)
    P = transition_matrix(J, p)
    pe = index_error_probability(index_bits(J), p)
    assert torch.allclose(R.sum(1), torch.ones(J, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(R.diagonal(), P.diagonal(), atol=1e-12)
    off = ~torch.eye(J, dtype=torch.bool)
    assert torch.allclose(R[off], torch.full((J * (J - 1),), pe / (J - 1), dtype=torch.float64))
    # the mean off-diagonal entry of the exact matrix is exactly P_e / (J - 1)
    assert P[off].mean().item() == pytest.approx(pe / (J - 1), rel=1e-9, abs=1e-300)


def test_random_labelling_is_the_exact_form_averaged_over_relabellings():
    """Averaging P(pi(k) | pi(i)) over random permutations pi of the labels tends to the random-labelling form."""
    J, p, draws = 16, 0.1, 3000
    P = transition_matrix(J, p)
    g = gen(10)
    acc = torch.zeros(J, J, dtype=torch.float64)
    acc_sq = torch.zeros(J, J, dtype=torch.float64)
    for _ in range(draws):
        perm = torch.randperm(J, generator=g)
        m = P[perm][:, perm]
        acc += m
        acc_sq += m * m
    mean = acc / draws
    se = torch.sqrt((acc_sq / draws - mean**2).clamp_min(0) / draws)
    R = transition_matrix_random_labelling(J, p)
    assert ((mean - R).abs() <= 5 * se + 1e-12).all()
    # and the exact, structured matrix is not itself the random-labelling one
    assert (P - R).abs().max() > 10 * se.max()


@FAST
@given(J=sizes, p=flip_p, seed=st.integers(0, 2**16))
def test_bsc_mix_is_the_transition_matrix_product(J, p, seed):
    values = torch.randn(J, 3, generator=gen(seed), dtype=torch.float64)
    assert torch.allclose(bsc_mix(values, p), transition_matrix(J, p) @ values, atol=1e-12)
    v1 = values[:, 0]
    assert torch.allclose(bsc_mix(v1, p), transition_matrix(J, p) @ v1, atol=1e-12)


# =========================================================================== eqs. (22)-(23)


def direct_channel_aware(z, e, P):
    """Eq. (22) with an explicit sum over k, averaged over the vectors."""
    i = nearest_indices(z, e)
    return torch.stack([sum(P[i[b], k] * ((z[b] - e[k]) ** 2).sum() for k in range(e.shape[0]))
                        for b in range(z.shape[0])]).mean()


@pytest.mark.parametrize("exact", [True, False])
def test_channel_aware_loss_against_its_formula_with_gradients(exact):
    g = gen(11)
    J, p = 16, 0.08
    z = torch.randn(10, 3, generator=g, dtype=torch.float64, requires_grad=True)
    e = torch.randn(J, 3, generator=g, dtype=torch.float64, requires_grad=True)
    P = transition_matrix(J, p) if exact else transition_matrix_random_labelling(J, p)
    ours = channel_aware_loss(z, e, p, exact=exact)
    ref = direct_channel_aware(z, e, P)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-10)
    gz, ge = torch.autograd.grad(ours, (z, e))
    rz, re = torch.autograd.grad(ref, (z, e))
    assert torch.allclose(gz, rz, atol=1e-10) and torch.allclose(ge, re, atol=1e-10)
    assert gz.abs().sum() > 0 and (ge.abs().sum(-1) > 0).all()  # every codeword gets a gradient when p > 0


def test_channel_aware_loss_gradcheck_and_limits():
    g = gen(12)
    z = torch.randn(6, 2, generator=g, dtype=torch.float64, requires_grad=True)
    e = torch.randn(16, 2, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: channel_aware_loss(a, b, 0.2), (z, e))
    # p = 0: only the sent codeword arrives, L_ch = D_q; p = 1/2: every codeword equally likely
    assert channel_aware_loss(z, e, 0.0).item() == pytest.approx(quantization_distortion(z, e), rel=1e-12)
    uniform = squared_distances(z, e).mean().item()
    assert channel_aware_loss(z, e, 0.5).item() == pytest.approx(uniform, rel=1e-10)
    # float32 and grid-shaped z
    z32 = torch.randn(2, 4, 4, 2, generator=g, requires_grad=True)
    loss = channel_aware_loss(z32, e.detach().float(), 0.1)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(z32.grad).all()


def test_total_codebook_loss_and_module():
    """Eq. (23) = L_q - lambda_H H + lambda_ch L_ch, as a function and as CodebookLoss."""
    g = gen(13)
    z = torch.randn(40, 4, generator=g, dtype=torch.float64)
    e = torch.randn(32, 4, generator=g, dtype=torch.float64)
    kw = dict(beta=0.25, lambda_h=0.3, lambda_ch=0.7, temperature=2.0)
    l_q = quantization_loss(z, e[nearest_indices(z, e)], 0.25)
    expected = l_q - 0.3 * index_entropy(z, e, 2.0) + 0.7 * channel_aware_loss(z, e, 0.05)
    got = total_codebook_loss(z, e, 0.05, **kw)
    assert got.item() == pytest.approx(expected.item(), rel=1e-12)
    module = CodebookLoss(0.05, **kw)
    assert module(z, e).item() == pytest.approx(expected.item(), rel=1e-12)
    assert module.last["quantization"] == pytest.approx(l_q.item())
    # the plain VQ-VAE variant is eq. (5) alone
    assert total_codebook_loss(z, e, 0.05, beta=0.25, lambda_h=0.0, lambda_ch=0.0).item() == pytest.approx(l_q.item())
    assert CodebookLoss()(z, e).item() == pytest.approx(l_q.item())
    with pytest.raises(ConfigError, match="p=0.7"):
        CodebookLoss(0.7)


# =========================================================================== eqs. (18)-(20)


def test_channel_distortion_against_double_sum():
    g = gen(14)
    J, p = 16, 0.12
    e = torch.randn(J, 5, generator=g, dtype=torch.float64)
    probs = torch.rand(J, generator=g, dtype=torch.float64)
    probs /= probs.sum()
    P = direct_transition(J, p)
    en = e.numpy()
    ref = sum(probs[i].item() * sum(P[i, k] * np.sum((en[i] - en[k]) ** 2) for k in range(J) if k != i)
              for i in range(J))
    assert channel_distortion(e, probs, p) == pytest.approx(ref, rel=1e-10)
    pe = index_error_probability(4, p)
    ref_random = sum(probs[i].item() * pe / (J - 1) * sum(np.sum((en[i] - en[k]) ** 2) for k in range(J))
                     for i in range(J))
    assert channel_distortion(e, probs, p, exact=False) == pytest.approx(ref_random, rel=1e-10)
    assert channel_distortion(e, probs, 0.0) == 0.0
    with pytest.raises(ConfigError, match="probs"):
        channel_distortion(e, probs * 2, p)


@pytest.mark.parametrize("p", [0.01, 0.1, 0.3])
def test_channel_distortion_against_monte_carlo_over_a_bsc(p):
    g = gen(15)
    J = 64
    e = torch.randn(J, 8, generator=g)
    indices = torch.randint(0, J, (500,), generator=g)
    probs = torch.bincount(indices, minlength=J).double() / indices.numel()
    theory = channel_distortion(e, probs, p)
    mc = monte_carlo_channel_distortion(e, indices, p, trials=200, generator=g)
    assert mc.samples == 100_000
    assert abs(mc.mean - theory) <= 4 * mc.stderr
    assert mc.stderr < 0.05 * theory  # the check has teeth


def test_random_labelling_distortion_is_the_average_over_relabellings():
    """Eqs. (18)-(19) with the random-labelling P equal D_ch averaged over random index labellings."""
    g = gen(16)
    J, p, draws = 32, 0.05, 400
    e = torch.randn(J, 4, generator=g, dtype=torch.float64)
    probs = torch.rand(J, generator=g, dtype=torch.float64)
    probs /= probs.sum()
    perm = torch.randperm(J, generator=g)  # codeword j carries label perm[j]: spot-check the function itself
    P, d = transition_matrix(J, p), torch.cdist(e, e) ** 2
    inv = torch.argsort(perm)
    relabelled = float((probs[:, None] * P[perm][:, perm] * d).sum())
    assert channel_distortion(e[inv], probs[inv], p) == pytest.approx(relabelled, rel=1e-10)
    perms = torch.stack([torch.randperm(J, generator=g) for _ in range(draws)])  # [draws, J]
    vals = (probs[None, :, None] * P[perms[:, :, None], perms[:, None, :]] * d).sum((1, 2)).numpy()
    random_form = channel_distortion(e, probs, p, exact=False)
    assert abs(vals.mean() - random_form) <= 4 * vals.std(ddof=1) / math.sqrt(draws)
    assert vals.std() > 0.01 * random_form  # the labelling matters for the exact form


def test_total_distortion_equals_channel_aware_loss_for_centroid_codewords():
    """Eq. (20): D = D_q + D_ch is the expected squared error of the codeword that arrives when each codeword
    is the centroid of its cell; here z = e_j +- delta u, so every e_j is its cell's mean."""
    g = gen(17)
    J, p, delta = 16, 0.07, 0.01
    e = 3.0 * torch.randn(J, 4, generator=g, dtype=torch.float64)
    u = torch.nn.functional.normalize(torch.randn(J, 3, 4, generator=g, dtype=torch.float64), dim=-1)
    z = torch.cat([e[:, None, :] + delta * u, e[:, None, :] - delta * u], dim=1).reshape(-1, 4)
    assert torch.equal(nearest_indices(z, e), torch.arange(J).repeat_interleave(6))
    assert quantization_distortion(z, e) == pytest.approx(delta**2, rel=1e-9)
    d = total_distortion(z, e, p)
    assert d == pytest.approx(channel_aware_loss(z, e, p).item(), rel=1e-10)
    assert d == pytest.approx(delta**2 + channel_distortion(e, torch.full((J,), 1 / J, dtype=torch.float64), p))


# =========================================================================== eq. (21)


def test_optimal_codebook_size_on_a_toy_table():
    D = {16: 1.0, 32: 0.6, 64: 0.45, 128: 0.4}
    R = {J: rate_bits_per_image(J, 100) for J in D}
    assert R == {16: 400, 32: 500, 64: 600, 128: 700}
    # costs at mu = 1e-3: 1.4, 1.1, 1.05, 1.1
    assert optimal_codebook_size(D, R, 1e-3) == 64
    assert optimal_codebook_size(D, R, 0.0) == 128
    assert optimal_codebook_size(D, R, 1.0) == 16
    # brute force over mu
    for mu in np.linspace(0, 0.01, 41):
        costs = {J: D[J] + mu * R[J] for J in D}
        assert optimal_codebook_size(D, R, float(mu)) == min(costs, key=lambda J: (costs[J], J))


def test_optimal_codebook_size_from_theory_moves_with_p():
    """With distortion from eqs. (18)-(20) on a toy codebook family, a noisier channel never favours more bits."""
    D_q = {J: 4.0 / J for J in (16, 32, 64, 128, 256)}  # a quantiser that halves D_q per extra bit
    best = []
    for p in (0.0, 0.01, 0.05):
        D = {J: D_q[J] + 2.0 * index_error_probability(index_bits(J), p) for J in D_q}
        R = {J: rate_bits_per_image(J, 64) for J in D_q}
        best.append(optimal_codebook_size(D, R, 1e-4))
    assert best[0] >= best[1] >= best[2] and best[0] > best[2]


def test_optimal_codebook_size_bad_input():
    with pytest.raises(ConfigError, match="J=48"):
        optimal_codebook_size({48: 1.0}, {48: 1.0}, 0.1)
    with pytest.raises(ConfigError, match="rate_of_J"):
        optimal_codebook_size({16: 1.0}, {32: 1.0}, 0.1)
    with pytest.raises(ConfigError, match="mu=-1"):
        optimal_codebook_size({16: 1.0}, {16: 1.0}, -1)
    with pytest.raises(ConfigError, match="no codebook sizes"):
        optimal_codebook_size({}, {}, 0.1)


# =========================================================================== p from modulation and SNR


def test_bsc_flip_probability_closed_forms():
    for snr_db in (0.0, 6.0, 12.0):
        es = 10 ** (snr_db / 10)
        # Gray QPSK: each bit is BPSK at E_b = E_s / 2
        assert bsc_flip_probability("qpsk", snr_db, "awgn") == pytest.approx(norm.sf(math.sqrt(es)), rel=1e-9)
        g = es / 2
        assert bsc_flip_probability("qpsk", snr_db, "rayleigh") == pytest.approx(0.5 * (1 - math.sqrt(g / (1 + g))),
                                                                                rel=1e-9)
    # nearest-neighbour approximations of Gray M-QAM at high SNR, written in E_s / N_0
    es = 10 ** 2.2
    assert bsc_flip_probability("16qam", 22.0, "awgn") == pytest.approx(0.75 * norm.sf(math.sqrt(es / 5)), rel=1e-3)
    es = 10 ** 2.8
    assert bsc_flip_probability("qam64", 28.0, "awgn") == pytest.approx(7 / 12 * norm.sf(math.sqrt(es / 21)), rel=1e-3)
    # ordering and monotonicity
    for ch in ("awgn", "rayleigh"):
        ps = [bsc_flip_probability(m, 10.0, ch) for m in ("qpsk", "qam16", "qam64")]
        assert ps[0] < ps[1] < ps[2] <= 0.5
        assert bsc_flip_probability("qam64", 5.0, ch) > bsc_flip_probability("qam64", 15.0, ch)
    assert bsc_flip_probability("qam64", 10.0, "rayleigh") > bsc_flip_probability("qam64", 10.0, "awgn")


def test_bsc_flip_probability_16qam_rayleigh_monte_carlo():
    """Gray 16-QAM (Gray 4-PAM on I and Q) over flat Rayleigh with zero-forcing equalisation, simulated."""
    rng = np.random.default_rng(18)
    snr_db, symbols = 10.0, 100_000
    levels = np.array([-3.0, -1.0, 1.0, 3.0]) / math.sqrt(10.0)
    gray = np.array([[0, 0], [0, 1], [1, 1], [1, 0]])  # adjacent levels differ in one bit
    a = rng.integers(0, 4, (symbols, 2))
    x = levels[a[:, 0]] + 1j * levels[a[:, 1]]
    h = (rng.standard_normal(symbols) + 1j * rng.standard_normal(symbols)) / math.sqrt(2)
    no = 10 ** (-snr_db / 10)
    w = (rng.standard_normal(symbols) + 1j * rng.standard_normal(symbols)) * math.sqrt(no / 2)
    y = (h * x + w) / h
    a_hat = np.stack([np.abs(y.real[:, None] - levels).argmin(1), np.abs(y.imag[:, None] - levels).argmin(1)], 1)
    errors = (gray[a] != gray[a_hat]).mean()
    p = bsc_flip_probability("qam16", snr_db, "rayleigh")
    se = math.sqrt(p * (1 - p) / (symbols * 4))
    assert abs(errors - p) < 5 * se + 2e-3  # bits within a symbol are correlated: a loose margin


# =========================================================================== validation at the door


@pytest.mark.parametrize("J", [8, 100, 8192, 15.5, True, "64", 0, -16])
def test_bad_codebook_size_is_a_one_line_error_naming_it(J):
    with pytest.raises(ConfigError) as info:
        transition_matrix(J, 0.1)
    msg = str(info.value)
    assert "\n" not in msg and (f"J={J!r}" in msg or f"J={J}" in msg)
    assert msg.startswith("invalid J")


@pytest.mark.parametrize("p", [-0.1, 0.6, float("nan"), float("inf"), "0.1", None])
def test_bad_flip_probability_is_a_one_line_error_naming_it(p):
    for call in (lambda: transition_matrix(16, p), lambda: index_error_probability(4, p),
                 lambda: channel_aware_loss(torch.zeros(2, 3), torch.randn(16, 3), p)):
        with pytest.raises(ConfigError) as info:
            call()
        msg = str(info.value)
        assert "\n" not in msg and msg.startswith("invalid p") and f"p={p!r}" in msg


def test_codebook_size_checked_by_every_builder():
    e = torch.randn(24, 3)
    for call in (lambda: binary_labels(24), lambda: hamming_matrix(24),
                 lambda: transition_matrix_random_labelling(24, 0.1),
                 lambda: channel_aware_loss(torch.zeros(2, 3), e, 0.1),
                 lambda: channel_distortion(e, torch.full((24,), 1 / 24), 0.1),
                 lambda: monte_carlo_channel_distortion(e, torch.zeros(3, dtype=torch.long), 0.1, 2),
                 lambda: bsc_mix(e, 0.1)):
        with pytest.raises(ConfigError, match="J=24"):
            call()


def test_other_bad_values():
    with pytest.raises(ConfigError, match="modulation"):
        bsc_flip_probability("qam256", 10.0)
    with pytest.raises(ConfigError, match="channel"):
        bsc_flip_probability("qam64", 10.0, "rician")
    with pytest.raises(ConfigError, match="snr_db=nan"):
        bsc_flip_probability("qam64", float("nan"))
    with pytest.raises(ConfigError, match="n=0"):
        error_weight_distribution(0, 0.1)
    with pytest.raises(ConfigError, match="trials"):
        monte_carlo_channel_distortion(torch.randn(16, 2), torch.zeros(3, dtype=torch.long), 0.1, 0)
    with pytest.raises(ConfigError, match="indices"):
        monte_carlo_channel_distortion(torch.randn(16, 2), torch.tensor([16]), 0.1, 2)
