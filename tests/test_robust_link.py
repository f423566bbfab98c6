"""The robust paper's link (semcom.robust.link): indices over 8x4 MIMO, 16-QAM, LDPC 1/2; the JSCC's analogue
latent over the same MIMO channel; JPEG+LDPC with the mid-grey failure rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from semcom.errors import ConfigError
from semcom.robust.link import (
    IndexLink,
    JPEGLink,
    MIMOLatentChannel,
    index_link_for,
    jpeg_bytes,
    jpeg_image,
    symbols_per_image,
)


def _grid(b=6, n=49, t=24, J=256, seed=0, drop=0):
    g = torch.Generator().manual_seed(seed)
    grid = torch.full((b, n), -1, dtype=torch.long)
    for i in range(b):
        pos = torch.randperm(n, generator=g)[:t - (i % (drop + 1) if drop else 0)].sort().values
        grid[i, pos] = torch.randint(0, J, (pos.numel(),), generator=g)
    return grid


def test_high_snr_delivers_indices_intact():
    link = IndexLink(18.0, seed=1)
    grid = _grid()
    assert torch.equal(link(grid), grid)
    assert link.stats.index_errors == 0 and link.stats.bits == 6 * 24 * 8


def test_low_snr_corrupts_indices_but_keeps_positions():
    link = IndexLink(-6.0, seed=1)
    grid = _grid()
    got = link(grid)
    assert torch.equal(got >= 0, grid >= 0)
    assert link.stats.index_error_rate > 0.5
    assert int((got != grid).sum()) == link.stats.index_errors


def test_same_seed_same_output():
    grid = _grid(seed=3)
    assert torch.equal(IndexLink(3.0, seed=7)(grid), IndexLink(3.0, seed=7)(grid))


def test_position_map_travels_and_is_counted():
    grid = _grid(drop=3)
    link = IndexLink(18.0, position_map=True)
    assert torch.equal(link(grid), grid)
    sent = int((grid >= 0).sum())
    assert link.stats.bits == sent * 8 + grid.shape[0] * grid.shape[1]


def test_position_map_errors_lose_indices_not_the_stream():
    grid = _grid(b=20, drop=3)
    got = IndexLink(-3.0, position_map=True, seed=2)(grid)
    # every image still gets at most as many indices as it sent; nothing shifts into another image
    assert ((got >= 0).sum(1) <= (grid >= 0).sum(1)).all()


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 5), st.integers(1, 30), st.sampled_from([2, 16, 256, 1024]), st.booleans(),
       st.integers(0, 2**31))
def test_bits_round_trip(b, n, J, pmap, seed):
    link = IndexLink.__new__(IndexLink)
    link.J, link.bits_per_index, link.position_map = J, int(np.log2(J)), pmap
    rng = np.random.default_rng(seed)
    grid = np.where(rng.random((b, n)) < 0.5, rng.integers(0, J, (b, n)), -1)
    stream, lengths = link.bits(grid)
    assert stream.size == sum(lengths)
    assert np.array_equal(link.unbits(stream, lengths, grid), grid)


def test_symbols_per_image_matches_formula():
    # Table I: 224x224, patch 16, J_c = 8, M_r = 0.5, 16-QAM: 196 symbols (code rate left out); with LDPC 1/2: 392
    assert symbols_per_image(98 * 8, code_rate=1.0) == 196
    assert symbols_per_image(98 * 8) == 392
    from semcom.robust.config import robust_config

    cfg = robust_config(height=224, width=224, patch_size=16)
    assert symbols_per_image(cfg.num_keep * cfg.bits_per_index, code_rate=1.0) == cfg.symbols_per_image()
    # the link itself spends whole codewords: 1536-bit codewords, 768 information bits, 384 symbols each
    link = IndexLink(10.0)
    assert link.pipe.channel_uses(768) == 384 and link.pipe.channel_uses(769) == 768


def test_index_link_for_model():
    from semcom.robust.model import MaskedVQVAE

    m = MaskedVQVAE(height=28, width=28, channels=1, patch_size=4, J=16)
    link = index_link_for(m, 5.0)
    assert link.J == 16 and not link.position_map
    m2 = MaskedVQVAE(height=28, width=28, channels=1, patch_size=4, dedup_threshold=0.9)
    assert index_link_for(m2, 5.0).position_map


def test_model_through_the_link_high_snr_equals_noiseless():
    from semcom.robust.model import MaskedVQVAE

    torch.manual_seed(0)
    m = MaskedVQVAE(height=28, width=28, channels=1, patch_size=4).eval()
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        a = m(x).logits
        b = m(x, channel=index_link_for(m, 18.0)).logits
    assert torch.allclose(a, b)


def test_bad_input():
    with pytest.raises(ConfigError, match="snr_db"):
        IndexLink(float("nan"))
    with pytest.raises(ConfigError, match="J="):
        IndexLink(3.0, J=100)
    with pytest.raises(ConfigError, match="index grid"):
        IndexLink(3.0, J=16)(torch.tensor([[3, 17]]))


def test_mimo_latent_channel():
    z = torch.randn(3, 24, 8)
    z = z * torch.rsqrt(2 * z.pow(2).mean(dim=(1, 2), keepdim=True))
    hi = MIMOLatentChannel(40.0, seed=0)(z)
    lo = MIMOLatentChannel(-5.0, seed=0)(z)
    assert hi.shape == z.shape
    assert float((hi - z).pow(2).mean()) < 1e-2 < float((lo - z).pow(2).mean())
    zg = z.clone().requires_grad_(True)
    MIMOLatentChannel(3.0)(zg).sum().backward()
    assert zg.grad is not None and bool(torch.isfinite(zg.grad).all())
    assert MIMOLatentChannel.symbols((24, 8)) == 96


def test_jpeg_link_and_grey_rule():
    torch.manual_seed(0)
    x = torch.rand(3, 1, 28, 28)
    good = JPEGLink(30.0)(x)
    assert good.shape == x.shape and float((good - x).abs().mean()) < 0.1
    bad = JPEGLink(-9.0)(x)
    assert torch.equal(bad, torch.full_like(x, 0.5))
    assert jpeg_image(b"not a jpeg", (1, 28, 28)).eq(0.5).all()
    assert jpeg_image(jpeg_bytes(x[0]), (1, 28, 28)).shape == (1, 28, 28)
    uses = JPEGLink(10.0).channel_uses(x)
    assert all(u % 384 == 0 and u > 0 for u in uses)


def test_jpeg_link_cwer_mode_follows_the_measured_rate():
    x = torch.rand(8, 1, 28, 28)
    assert torch.equal(JPEGLink(5.0, mode="cwer", cwer=1.0)(x), torch.full_like(x, 0.5))
    assert not JPEGLink(5.0, mode="cwer", cwer=0.0)(x).eq(0.5).all()
    link = JPEGLink(30.0, mode="cwer", probe_codewords=8)
    assert link.codeword_error_rate() == 0.0
    with pytest.raises(ConfigError, match="mode"):
        JPEGLink(3.0, mode="fast")
