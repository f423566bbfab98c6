"""The pixel refinement of the codec link (semcom.prediction.refinement): transforms against closed forms, the
Laplace model against scipy, the step against its high-rate optimum, and coding round trips."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.fft import dctn

from semcom.errors import ConfigError
from semcom.prediction.refinement import (
    COLOUR,
    LIMIT,
    Refinement,
    from_blocks,
    laplace_information,
    step_size,
    to_blocks,
)


def _dct_matrix(n: int = 8) -> np.ndarray:
    """The orthonormal DCT-II matrix, closed form: ``a_k cos(pi (2 j + 1) k / 2n)``."""
    k, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    a = np.where(k == 0, math.sqrt(1.0 / n), math.sqrt(2.0 / n))
    return a * np.cos(np.pi * (2 * j + 1) * k / (2 * n))


def test_colour_basis_is_orthonormal():
    assert np.allclose(COLOUR @ COLOUR.T, np.eye(3))


def test_scipy_dct_matches_the_closed_form_and_keeps_the_energy():
    rng = np.random.default_rng(0)
    b = rng.normal(size=(8, 8))
    d = _dct_matrix()
    assert np.allclose(dctn(b, norm="ortho"), d @ b @ d.T)
    e = rng.normal(size=(16, 24, 3))
    c = dctn(to_blocks(e), axes=(-2, -1), norm="ortho")
    assert math.isclose(float((c**2).sum()), float((e**2).sum()), rel_tol=1e-12)


@given(st.integers(1, 4), st.integers(1, 4), st.integers(0, 2**32 - 1))
@settings(max_examples=30, deadline=None)
def test_blocks_round_trip(h, w, seed):
    e = np.random.default_rng(seed).normal(size=(8 * h, 8 * w, 3))
    b = to_blocks(e)
    assert b.shape == (3, h, w, 8, 8)
    assert np.allclose(from_blocks(b), e)
    # block (i, j) of the first colour channel is the mean of the three channels times sqrt 3
    assert np.allclose(b[0, h - 1, w - 1], e[8 * (h - 1):, 8 * (w - 1):].sum(-1) / math.sqrt(3.0))


@pytest.mark.parametrize("scale", [0.1, 0.7, 3.0, 40.0])
def test_laplace_information_matches_scipy(scale):
    from scipy.stats import laplace

    q = np.arange(-60, 61)
    p = laplace.cdf(q + 0.5, scale=scale) - laplace.cdf(q - 0.5, scale=scale)
    ours = laplace_information(q, np.full(q.shape, scale))
    keep = p > 1e-8  # below that, scipy's difference of two CDFs near 1 has lost its digits
    assert np.allclose(ours[keep], -np.log2(p[keep]), rtol=1e-7, atol=1e-9)
    assert math.isclose(float(np.exp2(-ours).sum()), float(p.sum()), rel_tol=1e-9)


def test_step_is_the_high_rate_optimum():
    """``Delta`` minimises the high-rate cost per coefficient ``-log2 Delta + mu Delta^2 / 12``."""
    from scipy.optimize import minimize_scalar

    for mu in (10.0, 300.0, 5000.0):
        best = minimize_scalar(lambda d, mu=mu: -math.log2(d) + mu * d * d / 12.0, bounds=(1e-4, 10.0),
                               method="bounded", options={"xatol": 1e-10})
        assert math.isclose(step_size(mu), best.x, rel_tol=1e-4)


def _pair(mu: float = 1500.0, h: int = 32, w: int = 48) -> tuple[Refinement, Refinement]:
    return Refinement(mu, h, w), Refinement(mu, h, w)


def _frames(seed: int, h: int = 32, w: int = 48, blur: int = 4):
    rng = np.random.default_rng(seed)
    frame = rng.random((h, w, 3))
    shown = np.repeat(np.repeat(frame[::blur, ::blur], blur, 0), blur, 1)  # a blocky stand-in for a decoded frame
    return frame, np.round(shown * 255).astype(np.uint8)


@given(st.integers(0, 2**32 - 1), st.floats(50.0, 20000.0), st.integers(1, 4))
@settings(max_examples=25, deadline=None)
def test_refinement_round_trips_through_the_range_coder(seed, mu, frames):
    """The receiver decodes the symbols the transmitter coded, frame after frame, and both keep equal statistics."""
    import constriction

    tx, rx = _pair(mu)
    enc = constriction.stream.queue.RangeEncoder()
    plans = []
    for t in range(frames):
        frame, shown = _frames(seed + t)
        plans.append(tx.plan(frame, shown))
        tx.encode(plans[-1], enc)
    dec = constriction.stream.queue.RangeDecoder(enc.get_compressed())
    for plan in plans:
        assert np.array_equal(rx.decode(dec), plan.q)
    for name, a in tx.state().items():
        assert np.array_equal(a, rx.state()[name]), name


def test_refinement_raises_psnr_and_pays_for_itself():
    tx, _ = _pair(mu=3000.0)
    frame, shown = _frames(1)
    plan = tx.plan(frame, shown)
    assert plan.flags.any() and plan.bits > 0
    refined = tx.apply(shown, plan.q)
    mse = lambda a: float(((a / 255.0 - frame) ** 2).mean())  # noqa: E731
    assert mse(refined) < 0.5 * mse(shown)
    # the Lagrangian it decided on went down: mu SSE drops by more than the bits
    sse = lambda a: float(((a / 255.0 - frame) ** 2).sum())  # noqa: E731
    assert plan.bits + tx.mu * sse(refined) < tx.mu * sse(shown)


def test_nothing_to_refine_costs_a_fraction_of_a_bit_per_frame():
    tx, _ = _pair()
    frame, shown = _frames(2)
    exact = shown.astype(np.float64) / 255.0
    bits = []
    for _ in range(8):
        plan = tx.plan(exact, shown)
        assert not plan.flags.any() and not plan.q.any()
        bits.append(plan.bits)
        tx.update(plan.flags, plan.q)
    assert bits[-1] < bits[0] < 1.0 and np.array_equal(tx.apply(shown, plan.q), shown)


def test_apply_clips_any_crafted_symbols():
    ref, _ = _pair()
    shown = np.full((32, 48, 3), 128, np.uint8)
    q = np.full(ref.blocks + (8, 8), LIMIT, np.int64)
    out = ref.apply(shown, q)
    assert out.dtype == np.uint8 and out.shape == shown.shape


def test_state_round_trip_and_bad_state_is_one_line():
    a, b = _pair()
    frame, shown = _frames(3)
    a.update(*(lambda p: (p.flags, p.q))(a.plan(frame, shown)))
    b.load_state(a.state())
    assert all(np.array_equal(v, b.state()[k]) for k, v in a.state().items())
    before = b.state()
    for bad in ({k: v for k, v in a.state().items() if k != "refine_band_sum"},
                a.state() | {"refine_flag_counts": np.zeros((3, 2))},
                a.state() | {"refine_band_weight": np.full((3, 8, 8), np.nan)},
                a.state() | {"refine_frame_counts": np.ones(3)}):
        with pytest.raises(ConfigError) as exc:
            b.load_state(bad)
        assert "\n" not in str(exc.value) and "refinement state" in str(exc.value)
        assert all(np.array_equal(v, b.state()[k]) for k, v in before.items())


@given(st.integers(0, 2**32 - 1), st.floats(50.0, 20000.0), st.floats(0.1, 20.0))
@settings(max_examples=40, deadline=None)
def test_rdo_quantisation_never_costs_more_than_rounding(seed, mu, scale):
    """Each coefficient's Lagrangian under the RD choice is at most that of plain rounding, and ``|q|`` is the
    rounded magnitude or one less."""
    ref = Refinement(mu, 8, 8)
    c = np.random.default_rng(seed).laplace(scale=2.0 * ref.step, size=(3, 1, 1, 8, 8))
    s = np.full((3, 1, 1, 1, 1), scale)
    q, bits = ref._quantise(c, s)
    assert np.array_equal(bits, laplace_information(q, s))
    r = np.round(c / ref.step)
    cost = lambda v: mu * (c - v * ref.step) ** 2 + laplace_information(v, s)  # noqa: E731
    assert (cost(q) <= cost(r) + 1e-9).all()
    assert np.isin(np.abs(r) - np.abs(q), [0, 1]).all() and (np.sign(q) * np.sign(c) >= 0).all()
