"""Bit accounting (eq. 3), capacity metrics (Section III-B, eq. 5) and image fidelity vs scikit-image."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from semcom.metrics import (
    compression_ratio,
    index_bits,
    mse,
    paper_bits,
    psnr,
    psnr_per_frame,
    raw_bits_per_frame,
    reasoning_capacity,
    semantic_efficiency,
    ssim,
)

# =========================================================================== eq. (3)

INDEX_BITS = {0: 0, 1: 0, 2: 1, 3: 2, 4: 2, 5: 3, 256: 8, 257: 9}


@pytest.mark.parametrize(("m", "bits"), sorted(INDEX_BITS.items()))
def test_index_bits(m, bits):
    assert index_bits(m) == bits
    if m >= 1:
        assert bits == math.ceil(math.log2(m))


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 2**40))
def test_index_bits_is_ceil_log2(m):
    b = index_bits(m)
    assert 2**b >= m and (b == 0 or 2 ** (b - 1) < m)


@pytest.mark.parametrize(("m", "bits"), sorted(INDEX_BITS.items()))
def test_paper_bits_eq3(m, bits):
    assert paper_bits(True, m, 64) == bits
    assert paper_bits(False, m, 64) == 512
    assert paper_bits(False, m, 3, latent_bits=8) == 24
    assert paper_bits(False, m, 10, latent_bits=4) == 40


# =========================================================================== Section III-B


def test_raw_bits_per_frame():
    assert raw_bits_per_frame(64, 64) == 64 * 64 * 3 * 8 == 98304
    assert raw_bits_per_frame(32, 48, channels=1, bit_depth=16) == 32 * 48 * 16


def test_compression_ratio_and_efficiency_by_hand():
    # 10 frames of 64x64: B_raw = 983040; 8 hits of 2 bits + 2 misses of 8*64 bits = 1040 bits
    b_raw, b_sem = 10 * 98304, 8 * 2 + 2 * 512
    gamma = compression_ratio(b_raw, b_sem)
    assert gamma == pytest.approx(983040 / 1040)
    eta = semantic_efficiency(0.8, gamma)
    assert eta == pytest.approx(0.8 * 945.230769, rel=1e-6)
    assert reasoning_capacity(eta) == pytest.approx(math.log2(1 + 756.184615), rel=1e-6)
    assert reasoning_capacity(eta) == pytest.approx(9.5642, abs=1e-3)
    assert compression_ratio(100, 0) == math.inf
    assert compression_ratio(0, 5) == 0


@pytest.mark.parametrize(("eta", "cr"), [(0.0, 0.0), (1.0, 1.0), (3.0, 2.0), (7.0, 3.0), (1023.0, 10.0),
                                         (2**14.26 - 1, 14.26)])
def test_reasoning_capacity_eq5(eta, cr):
    assert reasoning_capacity(eta) == pytest.approx(cr, abs=1e-9)
    assert reasoning_capacity(eta, omega=2.5) == pytest.approx(2.5 * cr, abs=1e-9)


def test_reasoning_capacity_small_eta_is_linear():
    eta = 1e-4
    assert reasoning_capacity(eta) == pytest.approx(eta / math.log(2), rel=1e-4)


def test_semantic_efficiency_limits():
    assert semantic_efficiency(0.0, 1e6) == 0.0
    assert semantic_efficiency(1.0, 12.5) == 12.5
    assert reasoning_capacity(semantic_efficiency(0.0, 1e6)) == 0.0


# =========================================================================== image fidelity


def clips(seed: int, t: int = 3, h: int = 32, w: int = 40, noise: float = 12.0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = (np.sin(xx / 5.0)[None, :, :, None] * 80 + 120 + yy[None, :, :, None]
            + rng.normal(0, 20, size=(t, h, w, 3)))
    a = np.clip(base, 0, 255).astype(np.uint8)
    b = np.clip(a.astype(np.float64) + rng.normal(0, noise, size=a.shape), 0, 255).astype(np.uint8)
    return a, b


def sk_ssim(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([structural_similarity(x / 255.0, y / 255.0, gaussian_weights=True, sigma=1.5,
                                                use_sample_covariance=False, channel_axis=-1, data_range=1.0)
                          for x, y in zip(a, b)]))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("noise", [2.0, 12.0, 60.0])
def test_mse_and_psnr_match_scikit_image(seed, noise):
    a, b = clips(seed, noise=noise)
    af, bf = a / 255.0, b / 255.0
    assert mse(a, b) == pytest.approx(mean_squared_error(af, bf), rel=1e-6)
    assert psnr(a, b) == pytest.approx(peak_signal_noise_ratio(af, bf, data_range=1.0), rel=1e-3)
    per = psnr_per_frame(a, b)
    assert per.shape == (len(a),)
    np.testing.assert_allclose(per, [peak_signal_noise_ratio(x, y, data_range=1.0) for x, y in zip(af, bf)],
                               rtol=1e-3)
    # the clip PSNR is of the mean MSE, not the mean of per-frame PSNRs
    assert psnr(a, b) == pytest.approx(10 * math.log10(1.0 / np.mean((af - bf) ** 2)), rel=1e-6)


def photo_clip(noise: float, seed: int = 0):
    """Two 64x64 frames of a real photograph (scikit-image's astronaut), and a noisy copy."""
    from skimage.data import astronaut
    from skimage.transform import resize
    img = (resize(astronaut(), (64, 64), anti_aliasing=True) * 255).astype(np.uint8)
    a = np.stack([img, np.roll(img, 3, axis=1)])
    rng = np.random.default_rng(seed)
    return a, np.clip(a + rng.normal(0, noise, a.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("noise", [5.0, 12.0, 30.0])
def test_ssim_matches_scikit_image_on_a_photo(noise):
    a, b = photo_clip(noise)
    assert ssim(a, b) == pytest.approx(sk_ssim(a, b), rel=1e-3)


def test_ssim_matches_scikit_image_when_only_the_border_differs():
    a, _ = clips(0, h=64, w=64)
    b = a.copy()
    band = np.zeros(a.shape[1:3], bool)
    band[:5] = band[-5:] = True
    band[:, :5] = band[:, -5:] = True
    b[:, band] = 255 - b[:, band]
    assert ssim(a, b) == pytest.approx(sk_ssim(a, b), rel=1e-3)     # 0.50 vs 0.87


def test_ssim_is_the_mean_of_per_frame_ssim_and_ordered():
    a, b = clips(4, t=4, noise=30.0)
    per = [ssim(a[i], b[i]) for i in range(4)]        # a single frame (H, W, 3) is accepted
    assert ssim(a, b) == pytest.approx(np.mean(per), rel=1e-6)
    # more noise, lower SSIM; and within a few percent of scikit-image's value
    values = [ssim(*clips(4, noise=n)) for n in (2.0, 12.0, 60.0)]
    assert values[0] > values[1] > values[2]
    for n, v in zip((2.0, 12.0, 60.0), values):
        assert v == pytest.approx(sk_ssim(*clips(4, noise=n)), rel=3e-2)


def test_identical_clips():
    a, _ = clips(5)
    assert psnr(a, a) == math.inf
    assert mse(a, a) == 0.0
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-6)
    assert np.all(psnr_per_frame(a, a) >= 100.0)


def test_extreme_clips():
    black, white = np.zeros((2, 16, 16, 3), np.uint8), np.full((2, 16, 16, 3), 255, np.uint8)
    assert mse(black, white) == 1.0
    assert psnr(black, white) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("fn", [mse, psnr, ssim, psnr_per_frame])
def test_shape_mismatch_raises_value_error(fn):
    a, b = clips(6)
    with pytest.raises(ValueError):
        fn(a, b[:2])
    with pytest.raises(ValueError):
        fn(a, b[:, :16])
    with pytest.raises(ValueError):
        fn(a[0], b)
