"""The grounded codebook paper's VQ-VAE (semcom.models.vqvae) and its end-to-end loss (semcom.training.vqvae_loss):
eqs. (1)-(5), (10)-(13), (22)-(25). Tiny models (n=16, D=8, J=16) on 64x64 frames."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import save_file

from semcom.errors import ConfigError
from semcom.models.vqvae import VARIANTS, CodebookVQVAE, codebook_usage
from semcom.quantization.codebook import nearest_indices, total_codebook_loss
from semcom.training.vqvae_loss import (
    GRAM_LAYERS,
    VGG16Features,
    VQVAELoss,
    load_vgg16_features,
    ms_ssim_loss,
    reconstruction_loss,
)

TINY = {"n": 16, "d": 8, "J": 16}


def _model(variant: str = "proposed", **kw) -> CodebookVQVAE:
    torch.manual_seed(0)
    return CodebookVQVAE(**(TINY | {"variant": variant} | kw))


def _frames(b: int = 4, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # smooth random frames (upsampled noise), so MS-SSIM and the codec have structure to learn
    return torch.nn.functional.interpolate(torch.rand(b, 3, 8, 8, generator=g), size=64, mode="bilinear")


def _flat(z: torch.Tensor) -> torch.Tensor:
    return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])


# ----------------------------------------------------------------------------- model shapes and configuration


def test_shapes_and_interface():
    m = _model()
    x = _frames(2)
    out = m(x)
    assert out.x_hat.shape == (2, 3, 64, 64)
    assert out.indices.shape == (2, 8, 8) and out.indices.dtype == torch.int64
    assert out.z.shape == out.z_q.shape == (2, 8, 8, 8)
    assert m.codebook.shape == (16, 8)
    assert m.latent_shape == (8, 8, 8)
    assert m.bits_per_index == 4 and m.bits_per_image == 4 * 64
    assert m.hparams["J"] == 16 and m.hparams["d"] == 8 and m.hparams["variant"] == "proposed"


@pytest.mark.parametrize("J", [8, 15, 100, 48, 8192, 0, -16])
def test_codebook_size_must_be_power_of_two_in_range(J):
    with pytest.raises(ConfigError) as exc:
        CodebookVQVAE(n=4, d=4, J=J)
    msg = str(exc.value)
    assert "\n" not in msg and f"J={J}" in msg


@pytest.mark.parametrize("J", [16, 4096])
def test_codebook_size_bounds_accepted(J):
    assert CodebookVQVAE(n=4, d=4, J=J).codebook.shape == (J, 4)


def test_bad_configuration_is_one_line():
    for kw in ({"variant": "vq"}, {"codebook_update": "adam"}, {"p": 0.7}, {"lambda_h": -1.0},
               {"height": 60}, {"temperature": 0.0}):
        with pytest.raises(ConfigError) as exc:
            CodebookVQVAE(**(TINY | kw))
        assert "\n" not in str(exc.value)


# ----------------------------------------------------------------------------- the two endpoints


def test_indices_in_range_and_match_nearest_codeword():
    m = _model()
    x = _frames(3)
    m.train()
    m(x)  # k-means initialisation on the first training batch
    assert bool(m.vq._codebook.initted)
    m.eval()
    idx = m.indices(x)
    assert idx.shape == (3, 8, 8) and idx.dtype == torch.int64
    assert int(idx.min()) >= 0 and int(idx.max()) < 16
    # eqs. (1)-(4): the library's search is the hand-written argmin of semcom.quantization.codebook
    with torch.no_grad():
        z = m.encode(x)
    assert torch.equal(idx.reshape(-1), nearest_indices(_flat(z), m.codebook))
    assert torch.equal(m(x).indices, idx)
    # decoding the sent indices is decoding the quantised latent
    with torch.no_grad():
        assert torch.allclose(m.decode_indices(idx), m(x).x_hat, atol=1e-5)


def test_indices_do_not_touch_the_codebook():
    m = _model(codebook_update="ema")
    m.train()
    x = _frames(2)
    m(x)
    before = m.codebook.clone()
    m.indices(_frames(2, seed=5))
    assert torch.equal(m.codebook, before) and m.training


def test_decode_any_indices_gives_frames_in_unit_range():
    m = _model()
    with torch.no_grad():
        m.vq.codebook = torch.randn(16, 8) * 10.0  # large codewords: the output must still be clamped
    idx = torch.randint(0, 16, (5, 8, 8), generator=torch.Generator().manual_seed(3))
    frames = m.decode_indices(idx)
    assert frames.shape == (5, 3, 64, 64)
    assert float(frames.min()) >= 0.0 and float(frames.max()) <= 1.0
    assert torch.isfinite(frames).all()
    assert m.decode_indices(torch.zeros(1, 8, 8, dtype=torch.int32)).shape == (1, 3, 64, 64)


@pytest.mark.parametrize("bad", [torch.full((1, 8, 8), 16), torch.full((1, 8, 8), -1), torch.zeros(1, 8, 8),
                                 torch.zeros(8, 8, dtype=torch.long)])
def test_decode_rejects_bad_indices(bad):
    with pytest.raises(ConfigError) as exc:
        _model().decode_indices(bad)
    assert "\n" not in str(exc.value)


# ----------------------------------------------------------------------------- losses and gradients


def test_loss_terms_finite_and_gradients_reach_every_part():
    m = _model("proposed")
    m.train()
    x = _frames(4)
    out = m(x)
    loss = VQVAELoss()(out, x)
    assert torch.isfinite(loss)
    assert all(torch.isfinite(v) for v in out.losses.values())
    loss.backward()
    for name, module in (("encoder", m.g_a), ("decoder", m.g_s)):
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None for g in grads), name
        assert sum(float(g.abs().sum()) for g in grads) > 0.0, name
    cb = m.vq._codebook.embed
    assert isinstance(cb, torch.nn.Parameter) and cb.grad is not None and float(cb.grad.abs().sum()) > 0.0


def test_ema_codebook_is_a_buffer_moved_by_the_library():
    m = _model("vqvae", codebook_update="ema")
    assert not isinstance(m.vq._codebook.embed, torch.nn.Parameter)
    assert all(p.data_ptr() != m.vq._codebook.embed.data_ptr() for p in m.parameters())
    m.train()
    x = _frames(4)
    m(x)  # k-means init
    before = m.codebook.clone()
    m(_frames(4, seed=9))  # EMA update
    assert not torch.equal(m.codebook, before)
    out = m(x)
    out.losses["codebook"].backward()
    assert m.vq._codebook.embed.grad is None
    assert m.g_a[0].weight.grad is not None


def test_dead_code_is_reset_to_a_batch_vector():
    m = _model("vqvae", dead_code_threshold=1.0)
    m.train()
    x = _frames(4)
    m(x)
    with torch.no_grad():
        m.vq._codebook.embed.data[0, 0] = 1e3  # a codeword nobody will pick
        m.vq._codebook.cluster_size.data[0, 0] = 0.0
    out = m(x)
    assert float(m.codebook[0].detach().abs().max()) < 1e3
    d = (_flat(out.z.detach()) - m.codebook[0].detach()).pow(2).sum(-1)
    assert float(d.min()) < 1e-8  # replaced by one of the batch's encoder outputs


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variant_switches_the_right_terms(variant):
    m = _model(variant)
    cfg = VARIANTS[variant]
    m.train()
    x = _frames(3)
    m(x)
    out = m(x)
    assert ("entropy" in out.losses) == (cfg["lambda_h"] > 0)
    assert ("channel_aware" in out.losses) == (cfg["lambda_ch"] > 0)
    # eq. (23) as the tested hand-written total computes it on the same z and codebook
    expected = total_codebook_loss(_flat(out.z), m.codebook, cfg["p"], beta=0.25, lambda_h=cfg["lambda_h"],
                                   lambda_ch=cfg["lambda_ch"], temperature=1.0)
    assert torch.allclose(out.losses["codebook"], expected, rtol=1e-5, atol=1e-6)
    rebuilt = out.losses["quantization"] - cfg["lambda_h"] * out.losses.get("entropy", 0.0) \
        + cfg["lambda_ch"] * out.losses.get("channel_aware", 0.0)
    assert torch.allclose(out.losses["codebook"], rebuilt)


def test_channel_term_absent_when_lambda_ch_is_zero_and_present_otherwise():
    base = _model("vqvae+entropy")
    base.train()
    x = _frames(3)
    base(x)
    totals = {}
    for p in (0.0, 0.3):
        m = _model("vqvae+entropy", p=p)
        m.load_state_dict(base.state_dict())
        m.eval()
        totals[p] = float(m(x).losses["codebook"].detach())
    assert totals[0.0] == totals[0.3]  # p only enters through L_ch
    for p in (0.0, 0.3):
        m = _model("proposed", p=p)
        m.load_state_dict(base.state_dict())
        m.eval()
        totals[("ch", p)] = float(m(x).losses["codebook"].detach())
    assert totals[("ch", 0.3)] > totals[("ch", 0.0)]  # bit flips add distortion (eq. 22)


def test_overrides_replace_variant_defaults():
    m = CodebookVQVAE(**TINY, variant="vqvae", lambda_ch=0.5, p=0.01)
    assert m.hparams["lambda_ch"] == 0.5 and m.hparams["p"] == 0.01 and m.hparams["lambda_h"] == 0.0


def test_a_few_steps_reduce_the_total_loss():
    m = _model("proposed")
    m.train()
    x = _frames(4)
    m(x)  # k-means init outside the loop
    criterion = VQVAELoss()
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = criterion(m(x), x)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) / 5 < 0.8 * losses[0], losses


# ----------------------------------------------------------------------------- the reconstruction term (24)-(25)


def test_vqvae_loss_without_vgg_is_pixel_plus_ms_ssim_plus_codebook():
    m = _model("proposed")
    m.train()
    x = _frames(2)
    out = m(x)
    crit = VQVAELoss(mse_weight=2.0, ms_ssim_weight=0.5)
    assert not crit.perceptual_used
    total = crit(out, x)
    mse = torch.nn.functional.mse_loss(out.x_hat, x)
    expected = 2.0 * mse + 0.5 * ms_ssim_loss(out.x_hat, x) + out.losses["codebook"]
    assert torch.allclose(total, expected)
    assert "perceptual" not in crit.last and crit.last["total"] == pytest.approx(float(total.detach()))
    for k in ("mse", "ms_ssim", "quantization", "entropy", "channel_aware", "codebook"):
        assert k in crit.last


def test_ms_ssim_loss_is_zero_for_identical_frames_and_grows_with_noise():
    x = _frames(2)
    assert float(ms_ssim_loss(x, x)) == pytest.approx(0.0, abs=1e-5)
    g = torch.Generator().manual_seed(0)
    small = ms_ssim_loss((x + 0.02 * torch.randn(x.shape, generator=g)).clamp(0, 1), x)
    large = ms_ssim_loss((x + 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1), x)
    assert 0.0 < float(small) < float(large)


def _random_vgg_state(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    state = {f"features.{k}": v.clone() for k, v in VGG16Features().features.state_dict().items()}
    state["classifier.6.bias"] = torch.zeros(1000)  # a full torchvision dict has these: ignored
    return state


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_vgg16_from_a_local_file_gives_the_perceptual_term(tmp_path, suffix):
    state = _random_vgg_state()
    path = tmp_path / f"vgg16{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, str(path))
    vgg = load_vgg16_features(path)
    assert torch.equal(vgg.features[0].weight, state["features.0.weight"])
    assert torch.equal(vgg.features[21].bias, state["features.21.bias"])
    assert len(vgg(_frames(1))) == len(GRAM_LAYERS)
    x = _frames(2)
    terms = reconstruction_loss(x, x, perceptual_weight=1.0, vgg=vgg)
    assert float(terms["perceptual"]) == pytest.approx(0.0, abs=1e-12)
    x_hat = (x + 0.1 * torch.randn_like(x)).clamp(0, 1).requires_grad_(True)
    terms = reconstruction_loss(x_hat, x, perceptual_weight=1.0, vgg=vgg)
    assert float(terms["perceptual"].detach()) > 0.0
    terms["reconstruction"].backward()
    assert x_hat.grad is not None and float(x_hat.grad.abs().sum()) > 0.0
    assert all(p.grad is None for p in vgg.parameters())  # frozen
    crit = VQVAELoss(vgg16_weights=path, perceptual_weight=2.0)
    assert crit.perceptual_used
    m = _model("vqvae")
    m.train()
    out = m(x)
    total = crit(out, x)
    rec = reconstruction_loss(out.x_hat, x, perceptual_weight=2.0, vgg=crit.vgg)
    assert "perceptual" in crit.last
    assert torch.allclose(total, rec["reconstruction"] + out.losses["codebook"])


def test_a_file_that_is_not_vgg16_is_a_one_line_error(tmp_path):
    missing = tmp_path / "nope.pth"
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file at all")
    wrong = tmp_path / "wrong.safetensors"
    state = _random_vgg_state()
    state["features.10.weight"] = torch.zeros(3, 3, 3, 3)
    save_file(state, str(wrong))
    partial = tmp_path / "partial.safetensors"
    save_file({"features.0.weight": torch.zeros(64, 3, 3, 3)}, str(partial))
    for path in (missing, garbage, wrong, partial):
        with pytest.raises(ConfigError) as exc:
            VQVAELoss(vgg16_weights=path)
        msg = str(exc.value)
        assert "\n" not in msg and str(path) in msg and "VGG16" in msg


# ----------------------------------------------------------------------------- usage statistics and saving


def test_codebook_usage_in_bits():
    uniform = torch.arange(16).repeat(4)
    assert codebook_usage(uniform, 16) == {"index_entropy_bits": pytest.approx(4.0), "used_codewords": 16}
    single = torch.zeros(64, dtype=torch.long)
    assert codebook_usage(single, 16) == {"index_entropy_bits": pytest.approx(0.0), "used_codewords": 1}
    two = torch.tensor([0, 0, 0, 5])
    h = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    assert codebook_usage(two, 16)["index_entropy_bits"] == pytest.approx(h)
    with pytest.raises(ConfigError):
        codebook_usage(torch.tensor([16]), 16)
    m = _model()
    m.train()
    x = _frames(4)
    m(x)
    m.eval()
    stats = m.usage(x)
    assert 0.0 <= stats["index_entropy_bits"] <= 4.0 + 1e-9 and 1 <= stats["used_codewords"] <= 16
    assert stats == m.usage(m.indices(x))


def test_save_autoencoder_round_trip(tmp_path):
    from safetensors import safe_open

    from semcom.models.weights import save_autoencoder

    m = _model("vqvae+channel")
    m.train()
    x = _frames(2)
    m(x)
    m.eval()
    path = save_autoencoder(m, tmp_path / "vq.safetensors", half=False)
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    assert meta["J"] == "16" and meta["variant"] == "vqvae+channel" and meta["d"] == "8"
    m2 = CodebookVQVAE(n=int(meta["n"]), d=int(meta["d"]), J=int(meta["J"]), variant=meta["variant"])
    m2.load_state_dict(tensors)
    m2.eval()
    idx = m.indices(x)
    assert torch.equal(m2.indices(x), idx)
    assert torch.allclose(m2.decode_indices(idx), m.decode_indices(idx))
