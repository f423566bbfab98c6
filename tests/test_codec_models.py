"""The learned codec's blocks: GDN, the entropy models against scipy, the hyperprior, the zoo, training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from semcom.errors import ConfigError, WeightsError, WireFormatError
from semcom.models.entropy import SCALE_LEVELS, FactorizedLaplace, GaussianConditional, scale_table
from semcom.models.gdn import GDN
from semcom.models.hyperprior import SpatialHyperprior
from semcom.models.zoo import MODELS, check_quality, entry, load_model


def test_gdn_is_the_formula():
    torch.manual_seed(0)
    g = GDN(4)
    with torch.no_grad():
        g.beta.copy_(torch.tensor([1.0, 0.5, 2.0, 0.1]))
        g.gamma.copy_(torch.rand(4, 4))
    x = torch.randn(2, 4, 3, 3)
    norm = torch.sqrt(g.beta.view(1, 4, 1, 1) + torch.einsum("ij,bjhw->bihw", g.gamma, x * x))
    assert torch.allclose(g(x), x / norm, atol=1e-6)
    inv = GDN(4, inverse=True)
    inv.load_state_dict(g.state_dict())
    assert torch.allclose(inv(x), x * norm, atol=1e-6)


@pytest.mark.parametrize("scale", [0.11, 0.7, 3.0, 20.0])
def test_gaussian_likelihood_matches_scipy(scale):
    gc = GaussianConditional()
    y = torch.arange(-200, 201).float()
    p = gc.likelihood(y, torch.full_like(y, scale)).double().numpy()
    ref = stats.norm.cdf(y.numpy() + 0.5, scale=scale) - stats.norm.cdf(y.numpy() - 0.5, scale=scale)
    assert np.allclose(p, np.maximum(ref, 1e-9), rtol=1e-4, atol=1e-7)
    assert abs(p.sum() - 1.0) < 1e-4


def test_laplace_likelihood_matches_scipy():
    fl = FactorizedLaplace(3)
    with torch.no_grad():
        fl.log_scale.copy_(torch.log(torch.tensor([0.5, 1.0, 4.0])))
    z = torch.arange(-10, 11).float().view(1, 1, 21, 1).repeat(1, 3, 1, 1)
    p = fl.likelihood(z)
    for c, b in enumerate((0.5, 1.0, 4.0)):
        v = np.arange(-10, 11)
        ref = stats.laplace.cdf(v + 0.5, scale=b) - stats.laplace.cdf(v - 0.5, scale=b)
        assert np.allclose(p[0, c, :, 0].detach().numpy(), np.maximum(ref, 1e-9), rtol=1e-4, atol=1e-7)


def test_scale_table_and_indexes():
    t = scale_table()
    assert len(t) == SCALE_LEVELS and bool((t[1:] > t[:-1]).all())
    gc = GaussianConditional()
    idx = gc.indexes(torch.tensor([0.0, 0.11, 1.0, 1e6]))
    assert idx[0] == 0 and idx[-1] == SCALE_LEVELS - 1
    assert float(gc.table[idx[2]]) >= 1.0 and float(gc.table[idx[2] - 1]) < 1.0


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(-30, 30), st.integers(0, SCALE_LEVELS - 1)), min_size=1, max_size=200))
def test_gaussian_and_laplace_round_trip(pairs):
    import constriction

    symbols = torch.tensor([p[0] for p in pairs]).float()
    idx = torch.tensor([p[1] for p in pairs])
    gc, fl = GaussianConditional(), FactorizedLaplace(1)
    enc = constriction.stream.queue.RangeEncoder()
    fl.encode(symbols.view(1, 1, -1, 1), enc)
    gc.encode(symbols, idx, enc)
    dec = constriction.stream.queue.RangeDecoder(enc.get_compressed())
    assert torch.equal(fl.decode((1, 1, len(pairs), 1), dec).flatten(), symbols)
    assert torch.equal(gc.decode(idx, dec), symbols)


def test_coded_size_is_the_information_content():
    """The range coder's output is within a few words of sum(-log2 p) under the same model."""
    import constriction

    gen = torch.Generator().manual_seed(1)
    gc = GaussianConditional()
    idx = torch.randint(10, 50, (4000,), generator=gen)
    symbols = torch.round(torch.randn(4000, generator=gen) * gc.table[idx]).clamp(-127, 127)
    enc = constriction.stream.queue.RangeEncoder()
    gc.encode(symbols, idx, enc)
    info = float(-torch.log2(gc.likelihood(symbols, gc.table[idx])).sum())
    coded = 32 * len(enc.get_compressed())
    assert info <= coded <= 1.01 * info + 64


def test_hyperprior_shapes_and_rates():
    torch.manual_seed(0)
    m = SpatialHyperprior(n=16, c=8, cz=4, qualities=3)
    x = torch.rand(2, 3, 64, 64)
    out = m(x, torch.tensor([0, 2]))
    assert out.x_hat.shape == x.shape and out.y_hat.shape == (2, 8, 8, 8)
    assert bool((out.bits_y > 0).all()) and bool((out.bits_z > 0).all())
    m.eval()
    ref = torch.round(m.analysis(x, torch.tensor([1, 1])))
    same = m(x, torch.tensor([1, 1]), ref)  # the reference is the frame itself: the residual rounds to 0
    assert same.y_hat.sub(ref).abs().max() <= 1.0
    z = m.hyper_analysis(m.analysis(x, torch.tensor([1, 1])) - ref, ref)
    assert z.shape == (2, 4, 4, 4) and m.scales(torch.round(z), ref).shape == (2, 8, 8, 8)


def test_zoo_names_and_qualities():
    assert set(MODELS) >= {"sphere64", "hyperprior"}
    with pytest.raises(ConfigError, match="sphere64, hyperprior"):
        entry("bmshj2018")
    with pytest.raises(ConfigError, match="1..8"):
        check_quality("hyperprior", 9)
    with pytest.raises(ConfigError, match="1..1"):
        check_quality("sphere64", 2)
    assert check_quality("hyperprior", None) == 4


def test_shipped_hyperprior_loads_with_provenance():
    m = load_model("hyperprior")
    assert m.qualities == 8 and m.hparams["c"] == 64
    meta = m.metadata
    assert "ascent" in meta["validation_photos"]
    from semcom.sources.photos import REGIME_PHOTOS

    assert not set(meta["train_photos"].split(",")) & set(REGIME_PHOTOS)


def test_hostile_weights_are_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "huge.safetensors"
    save_file({"x": torch.zeros(1)}, str(path), metadata={"n": str(10**9), "c": "8", "cz": "4", "qualities": "2",
                                                            "height": "64", "width": "64"})
    with pytest.raises(WeightsError, match="n=1000000000"):
        load_model("hyperprior", path)
    with pytest.raises(WeightsError, match="not found"):
        load_model("hyperprior", tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"junk" * 10)
    with pytest.raises((WeightsError, WireFormatError)):
        load_model("hyperprior", tmp_path / "junk.safetensors")


def test_training_runs_and_validates():
    from semcom.sources.photos import load_photo
    from semcom.training.codec import CodecTrainConfig, colour_augment, train_codec, views

    gen = torch.Generator().manual_seed(0)
    crops = torch.rand(4, 3, 80, 80, generator=gen)
    aug = colour_augment(crops, crops, gen)
    assert aug.shape == crops.shape and float(aug.min()) >= 0 and float(aug.max()) <= 1
    x, ref = views(aug, 64, 6, gen)
    assert x.shape == ref.shape == (4, 3, 64, 64)
    cfg = CodecTrainConfig(n=8, c=8, cz=4, lambdas=(0.001, 0.01), steps=4, batch_size=2, pool=16)
    seen = []
    model, log = train_codec([load_photo("moon"), load_photo("grace_hopper")], cfg, [load_photo("ascent")],
                             checkpoint=lambda m, s, lg: seen.append(s), checkpoint_every=2)
    assert seen == [2, 4] and len(log) == 4
    assert all(math.isfinite(r["loss"]) for r in log)
    assert [v["quality"] for v in log[-1]["validation"]] == [1, 2]
