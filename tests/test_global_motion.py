"""Global motion compensation (semcom.prediction.global_motion): eq. (1) against closed forms and scipy, the
estimator against known motions, the motion coder's round trip and its bit count."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from semcom.prediction.global_motion import (
    BOUND,
    ESCAPE_BITS,
    ESCAPE_CHUNKS,
    LIMIT,
    PARAMS,
    STEP,
    MotionCoder,
    dequantise,
    estimate,
    quantise,
    warp,
)


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    """A 64x64 view of a bundled photo, smoothed a little (a camera's optics), as (1, 3, H, W) in [0, 1]."""
    from scipy.ndimage import gaussian_filter
    from skimage import data

    img = data.astronaut()[80:208:2, 160:288:2].astype(np.float64) / 255.0
    img = gaussian_filter(img, (0.8, 0.8, 0))
    return torch.from_numpy(img).permute(2, 0, 1)[None].float()


def _theta(**kw) -> torch.Tensor:
    theta = torch.zeros(len(PARAMS))
    for name, value in kw.items():
        theta[PARAMS.index(name)] = value
    return theta


def test_the_identity_motion_returns_the_anchor(photo):
    assert torch.allclose(warp(photo, torch.zeros(len(PARAMS))), photo, atol=1e-5)


def test_an_integer_translation_is_a_shift_of_the_pixels(photo):
    out = warp(photo, _theta(tx=3.0, ty=-2.0))
    # x_pred(p) = A(p + t): column x shows the anchor's column x + 3, row y the anchor's row y - 2
    assert torch.allclose(out[..., 2:, : 64 - 3], photo[..., : 62, 3:], atol=1e-4)


def test_gain_and_offset_relight_each_channel(photo):
    out = warp(photo, _theta(log_gain_r=float(np.log(0.5)), offset_g=0.1, log_gain_b=float(np.log(1.5))))
    assert torch.allclose(out[:, 0], 0.5 * photo[:, 0], atol=1e-5)
    assert torch.allclose(out[:, 1], photo[:, 1] + 0.1, atol=1e-5)
    assert torch.allclose(out[:, 2], 1.5 * photo[:, 2], atol=1e-5)


def test_a_fractional_translation_matches_scipys_shift(photo):
    """Eq. (1)'s bicubic sampling against scipy's cubic-spline shift, away from the borders."""
    from scipy.ndimage import shift

    ref = np.stack([shift(photo[0, c].double().numpy(), (0.0, -1.5), order=3, mode="nearest") for c in range(3)])
    out = warp(photo, _theta(tx=1.5))[0].double().numpy()
    assert np.abs(out - ref)[:, 8:-8, 8:-8].max() < 0.03


def test_the_estimator_recovers_a_known_motion(photo):
    true = _theta(tx=2.3, ty=-1.7, log_zoom=0.03, angle=0.02, log_gain_r=-0.1, log_gain_g=-0.05, log_gain_b=0.02,
                  offset_r=0.02, offset_g=-0.01, offset_b=0.0)
    frame = warp(photo, true).clamp(0, 1)
    found = estimate(photo, frame, iterations=60)
    err = (found - true).abs()
    assert err[:2].max() < 0.1, err  # pixels
    assert err[2:4].max() < 0.005, err
    mse = float((warp(photo, found) - frame).pow(2).mean())
    assert 10 * np.log10(1 / mse) > 40


def test_a_large_translation_is_found_from_the_phase_correlation(photo):
    """An 11-pixel pan is beyond L-BFGS's reach from the identity; the phase-correlation start finds it, as
    scipy's independent shift of the photo confirms."""
    from scipy.ndimage import shift

    moved = np.stack([shift(photo[0, c].double().numpy(), (0.0, -11.0), order=3, mode="nearest") for c in range(3)])
    found = estimate(photo, torch.from_numpy(moved)[None].float())
    assert abs(float(found[0]) - 11.0) < 0.25 and abs(float(found[1])) < 0.25


def test_content_entering_the_frame_does_not_bend_the_gain():
    """Two views of a photo 13 and 10 pixels apart: a third of the frame is new content, which no motion
    predicts. The estimate is the translation with no relighting, as it fits only what it samples inside the
    anchor (fitting the replicated border too gave a log gain of -0.27 on such a pan)."""
    from scipy.ndimage import gaussian_filter
    from skimage import data

    img = gaussian_filter(data.astronaut()[::2, ::2].astype(np.float64) / 255.0, (0.8, 0.8, 0))
    view = lambda x, y: torch.from_numpy(img[y : y + 64, x : x + 64]).permute(2, 0, 1)[None].float()  # noqa: E731
    anchor, frame = view(60, 40), view(73, 50)
    found = estimate(anchor, frame, [_theta(tx=12.0, ty=9.0)])
    assert abs(float(found[0]) - 13.0) < 0.25 and abs(float(found[1]) - 10.0) < 0.25, found
    assert float(found[4:7].abs().max()) < 0.02 and float(found[7:].abs().max()) < 0.01, found


def test_quantise_is_the_nearest_step_and_refuses_nothing_finite():
    theta = torch.tensor([0.3, -0.06, 0.01, -0.002, 0.1, 0.0, -0.2, 0.05, 0.5, -0.5])
    k = quantise(theta)
    assert bool(((dequantise(k).double() - theta.double()).abs() <= STEP / 2 + 1e-6).all())
    assert quantise(torch.full((len(PARAMS),), float("nan"))).tolist() == [0] * len(PARAMS)
    assert np.array_equal(quantise(torch.full((len(PARAMS),), 1e30)), BOUND)
    assert torch.isfinite(warp(torch.rand(1, 3, 16, 16), dequantise(BOUND * 10))).all()


def test_an_error_beyond_the_limit_is_an_escape_of_18_more_bits():
    """A camera that turns back is off the constant-velocity prediction by twice its motion: the error travels as
    an escape (the alphabet's end, then 18 bits), where it used to be refused."""
    coder = MotionCoder()
    k = np.zeros(len(PARAMS), dtype=np.int64)
    assert coder.errors(k).tolist() == [0] * len(PARAMS)
    near, far = k.copy(), k.copy()
    near[3], far[3] = LIMIT - 1, LIMIT + 1000
    gap = coder.information(coder.errors(far)) - coder.information(coder.errors(near))
    assert gap == pytest.approx(ESCAPE_BITS * ESCAPE_CHUNKS + np.log2(coder.counts[3, LIMIT - 1 + LIMIT]
                                                                       / coder.counts[3, 2 * LIMIT]))


_ERRORS = st.one_of(st.integers(-40, 40), st.integers(-3 * int(BOUND[0]), 3 * int(BOUND[0])))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.lists(_ERRORS, min_size=len(PARAMS), max_size=len(PARAMS)), st.booleans()),
                min_size=1, max_size=12))
def test_motion_errors_round_trip_through_a_range_coder(steps):
    """Both ends' coders stay in step, escapes included; the transmitter's information count is the payload's
    length."""
    import constriction

    tx, rx = MotionCoder(), MotionCoder()
    enc = constriction.stream.queue.RangeEncoder()
    sent, bits = [], 0.0
    for errors, new_anchor in steps:
        k = np.clip(tx.prediction() + np.array(errors), -BOUND, BOUND)
        e = tx.errors(k)
        bits += tx.information(e)
        tx.encode(e, enc)
        assert np.array_equal(tx.k_of(e), k)
        tx.update(e, new_anchor)
        sent.append((k, new_anchor))
    words = enc.get_compressed()
    dec = constriction.stream.queue.RangeDecoder(words)
    for k, new_anchor in sent:
        e = rx.decode(dec)
        assert np.array_equal(rx.k_of(e), k)
        rx.update(e, new_anchor)
    assert np.array_equal(rx.velocity, tx.velocity) and np.array_equal(rx.counts, tx.counts)
    assert 32 * len(words) <= bits * 1.01 + 64


def test_a_crafted_escape_decodes_within_bounds():
    """Whatever an escape's 18 bits say, the motion decoded stays within BOUND."""
    import constriction

    enc = constriction.stream.queue.RangeEncoder()
    coder = MotionCoder()
    e = np.full(len(PARAMS), LIMIT + (1 << 18) - 1)
    coder.encode(e, enc)
    got = MotionCoder().decode(constriction.stream.queue.RangeDecoder(enc.get_compressed()))
    assert np.array_equal(got, e) and np.array_equal(np.abs(MotionCoder().k_of(got)), BOUND)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1e30, 1e6])
def test_a_wild_motion_samples_the_border_instead_of_crashing(photo, value):
    """grid_sample's CPU kernel can crash on NaN or huge coordinates (an L-BFGS trial step makes them); the warp
    clamps its grid first, so any theta gives finite pixels."""
    for i in (0, 2, 3):
        theta = torch.zeros(len(PARAMS))
        theta[i] = value
        with torch.enable_grad():
            theta.requires_grad_(True)
            out = warp(photo, theta)
            out.sum().backward()
        assert torch.isfinite(out).all()
    flat = torch.full((1, 3, 32, 32), 0.5)
    assert torch.isfinite(estimate(flat, flat)).all()
