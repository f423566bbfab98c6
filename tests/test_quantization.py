"""The 8-bit scalar quantiser Q of eq. (2) of the Hopfield paper (semcom.quantization.scalar)."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from semcom.quantization import Q, dequantize, quantize

SETTINGS = settings(max_examples=60, deadline=None)


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


@st.composite
def unit_vectors(draw, min_d: int = 1, max_d: int = 256) -> torch.Tensor:
    """Random unit vectors (float32): isotropic Gaussian directions, and arbitrary drawn floats."""
    d = draw(st.integers(min_d, max_d))
    if draw(st.booleans()):
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        v = rng.normal(size=d)
    else:
        v = draw(hnp.arrays(np.float64, d, elements=st.floats(-1.0, 1.0, allow_nan=False)))
        if np.linalg.norm(v) < 1e-3:
            v = v.copy()
            v[0] = 1.0
    return torch.from_numpy(unit(v)).to(torch.float32)


@st.composite
def gaussian_unit_vectors(draw, min_d: int = 1, max_d: int = 256) -> torch.Tensor:
    d = draw(st.integers(min_d, max_d))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return torch.from_numpy(unit(rng.normal(size=d))).to(torch.float32)


code_arrays = st.integers(1, 256).flatmap(lambda d: hnp.arrays(np.uint8, d))


# --------------------------------------------------------------------------- quantize


@SETTINGS
@given(unit_vectors())
def test_codes_are_uint8_and_follow_the_formula(z):
    codes = quantize(z)
    assert isinstance(codes, np.ndarray)
    assert codes.dtype == np.uint8
    assert codes.shape == tuple(z.shape)
    # round((z + 1) / 2 * 255), half to even like torch.round, computed independently in float64
    expected = np.round((z.double().numpy() + 1.0) * 0.5 * 255.0)
    assert expected.min() >= 0 and expected.max() <= 255
    np.testing.assert_array_equal(codes.astype(np.int64), expected.astype(np.int64))


def test_code_extremes_and_clamping():
    np.testing.assert_array_equal(quantize(torch.tensor([1.0, -1.0, 0.0])), [255, 0, 128])
    # out-of-range inputs are clamped to [-1, 1], never wrap around in uint8
    np.testing.assert_array_equal(quantize(torch.tensor([2.0, -3.0, 1e9, -1e9])), [255, 0, 255, 0])


def test_quantize_keeps_batch_shape():
    z = torch.nn.functional.normalize(torch.randn(5, 7, generator=torch.Generator().manual_seed(0)), dim=-1)
    codes = quantize(z)
    assert codes.shape == (5, 7) and codes.dtype == np.uint8
    for i in range(5):
        np.testing.assert_array_equal(codes[i], quantize(z[i]))


# --------------------------------------------------------------------------- dequantize


@SETTINGS
@given(code_arrays)
def test_dequantize_is_unit_norm_float32_in_the_direction_of_the_levels(codes):
    x = dequantize(codes)
    assert x.dtype == torch.float32
    assert x.shape == codes.shape
    assert torch.isfinite(x).all()
    assert abs(float(torch.linalg.vector_norm(x.double())) - 1.0) < 1e-5
    # the direction is the one of the uniform levels codes / 255 * 2 - 1 (never zero for integer codes)
    levels = codes.astype(np.float64) / 255.0 * 2.0 - 1.0
    assert np.all(levels != 0.0)
    np.testing.assert_allclose(x.double().numpy(), unit(levels), atol=2e-7)


def test_dequantize_normalises_each_row_of_a_batch():
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 256, size=(4, 9)).astype(np.uint8)
    x = dequantize(codes)
    assert x.shape == (4, 9)
    np.testing.assert_allclose(torch.linalg.vector_norm(x, dim=-1).numpy(), 1.0, atol=1e-6)
    for i in range(4):
        assert torch.equal(x[i], dequantize(codes[i]))


def test_dequantize_of_one_dimension_is_plus_or_minus_one():
    for c in range(256):
        x = dequantize(np.array([c], dtype=np.uint8))
        assert float(x[0]) == (1.0 if c >= 128 else -1.0)


# --------------------------------------------------------------------------- Q(z) vs z


@SETTINGS
@given(unit_vectors())
def test_quantisation_error_is_bounded(z):
    codes = quantize(z)
    levels = codes.astype(np.float64) / 255.0 * 2.0 - 1.0   # before the normalisation
    z64 = z.double().numpy()
    # uniform rounding: at most half a step (step = 2/255) per coordinate
    assert np.max(np.abs(levels - z64)) <= 1.0 / 255.0 + 1e-6
    # normalisation then moves coordinate i by |x_i| * |1/||x|| - 1|
    norm = np.linalg.norm(levels)
    assert abs(norm - 1.0) <= np.sqrt(z64.size) / 255.0 + 1e-6
    bound = 1.0 / 255.0 + np.abs(levels) * abs(1.0 / norm - 1.0) + 1e-6
    qz = Q(z).double().numpy()
    assert np.all(np.abs(qz - z64) <= bound)
    assert abs(np.linalg.norm(qz) - 1.0) < 1e-5


@SETTINGS
@given(unit_vectors(min_d=64, max_d=64))
def test_Q_is_close_in_cosine_for_d64(z):
    assert float(Q(z) @ z) > 0.999


@SETTINGS
@given(gaussian_unit_vectors())
def test_requantising_a_dequantised_latent_stays_within_one_code(z):
    codes = quantize(z)
    again = quantize(dequantize(codes))
    assert again.dtype == np.uint8
    assert np.max(np.abs(again.astype(np.int64) - codes.astype(np.int64))) <= 1


@SETTINGS
@given(code_arrays)
def test_requantising_arbitrary_codes_matches_the_normalisation_shift(codes):
    """For arbitrary codes (not from a unit vector) Q is not a projection: the drift is exactly
    the normalisation's, ``|x_i| |1/||x|| - 1|`` in code units, plus rounding."""
    levels = codes.astype(np.float64) / 255.0 * 2.0 - 1.0
    shift = levels * (1.0 / np.linalg.norm(levels) - 1.0) * 127.5      # signed, in code units
    again = quantize(dequantize(codes)).astype(np.float64)
    assert np.all(np.abs(again - (codes.astype(np.float64) + shift)) <= 0.5 + 1e-3)


def test_Q_is_not_idempotent_for_adversarial_vectors_but_bounded():
    """A spike plus many coordinates that all round the same way: the renormalisation moves the
    spike by several codes (documented, harmless: the protocol never re-quantises a stored latent)."""
    d, k, frac = 256, 132, 0.49
    a = (k + frac) / 127.5 - 1.0
    z = torch.tensor([np.sqrt(1.0 - (d - 1) * a * a)] + [a] * (d - 1), dtype=torch.float64)
    codes = quantize(z)
    again = quantize(dequantize(codes))
    drift = np.abs(again.astype(int) - codes.astype(int)).max()
    assert 1 < drift <= 8
    # still within the worst-case angle: ||levels - z|| <= sqrt(d)/255, so cos >= sqrt(1 - d/255^2)
    assert float(Q(z).double() @ z) >= np.sqrt(1.0 - d / 255.0**2) - 1e-6


# --------------------------------------------------------------------------- determinism


@SETTINGS
@given(unit_vectors())
def test_quantiser_is_deterministic(z):
    c1, c2 = quantize(z), quantize(z.clone())
    np.testing.assert_array_equal(c1, c2)
    assert torch.equal(Q(z), Q(z.clone()))
    # the receiver dequantises bytes off the wire: same codes, bit-identical latent
    wire = np.frombuffer(c1.tobytes(), dtype=np.uint8)
    assert torch.equal(dequantize(wire), dequantize(c1))
    # float64 and float32 inputs of the same value give the same codes
    np.testing.assert_array_equal(quantize(z.double()), c1)
