"""Algorithm 1 of the Hopfield paper (Lagrangian (7), soft hits, dual step (8)) and the beta-VAE encoder."""

from __future__ import annotations

import json
import math

import pytest
import torch

from semcom.cli import main
from semcom.errors import ConfigError
from semcom.metrics.bits import index_bits
from semcom.models import SphericalAutoencoder, load_autoencoder, save_autoencoder
from semcom.quantization import Q
from semcom.threads import torch_threads
from semcom.training.algorithm1 import (
    Algorithm1Config,
    ClipSampler,
    dual_step,
    index_bits_tensor,
    lagrangian,
    quantize_ste,
    quantize_torch,
    relaxed_pass,
    soft_hit,
    train_algorithm1,
)
from semcom.training.beta_vae import BetaVAE, kl_divergence

TINY = {"d": 8, "height": 32, "width": 32, "base": 8}
#: Two short regimes, one rendered clip each: the data of every tiny run below.
TINY_DATA = {"regimes": ("cam_shake", "static"), "pool_seeds": 1, "pool_frames": 10, "probe_clips": 2,
             "clip_frames": 6, "clips_per_batch": 2}


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models gain nothing from threads, and on a busy 2-core machine thread contention makes them
    50x slower; restore the setting afterwards."""
    with torch_threads(1):
        yield


def tiny_cfg(**kw) -> Algorithm1Config:
    return Algorithm1Config(**(TINY | TINY_DATA | {"epochs": 2, "steps_per_epoch": 2, "d0": 0.02} | kw))


def tiny_clips(seed: int = 0) -> torch.Tensor:
    return ClipSampler(tiny_cfg(), 32, 32).sample(2, torch.Generator().manual_seed(seed))


def tiny_model(cls=SphericalAutoencoder) -> SphericalAutoencoder:
    torch.manual_seed(0)
    return cls(**TINY).train()


def test_dual_step_is_eq8_exactly():
    assert dual_step(1.0, 0.03, 0.02, 50.0) == 1.0 + 50.0 * (0.03 - 0.02)        # violation: lambda grows
    assert dual_step(1.0, 0.01, 0.02, 50.0) == 1.0 + 50.0 * (0.01 - 0.02)        # slack: lambda shrinks
    assert dual_step(0.2, 0.01, 0.02, 50.0) == 0.0                               # projected on lambda >= 0
    assert dual_step(3.0, 0.5, 0.02, 0.0) == 3.0


def test_soft_hit_is_the_sigmoid_and_tends_to_the_hard_test():
    s = torch.tensor([0.5, 0.9, 0.95, 0.99])
    assert torch.equal(soft_hit(s, 0.95, 20.0), torch.sigmoid(20.0 * (s - 0.95)))
    assert float(soft_hit(torch.tensor(0.95), 0.95, 7.0)) == 0.5
    hard = soft_hit(s, 0.93, 1e5)
    assert hard.tolist() == [0.0, 0.0, 1.0, 1.0]


def test_quantiser_matches_the_links_Q_and_passes_gradients_straight_through():
    z = torch.nn.functional.normalize(torch.randn(20, 8, generator=torch.Generator().manual_seed(1)), dim=1)
    assert torch.equal(quantize_torch(z), Q(z))
    zz = z.clone().requires_grad_(True)
    quantize_ste(zz).sum().backward()
    assert torch.equal(zz.grad, torch.ones_like(z))
    assert [float(b) for b in index_bits_tensor(torch.tensor([0, 1, 2, 3, 4, 5, 256, 257]))] == \
        [index_bits(m) for m in (0, 1, 2, 3, 4, 5, 256, 257)]


def test_relaxed_pass_follows_the_memory_and_eq3():
    model, x = tiny_model(), tiny_clips()
    tau, alpha = 0.9, 30.0
    p = relaxed_pass(model, x, tau, alpha)
    # the first frame of every clip is a miss against an empty memory, H~ = 0
    assert not p.hard_hits[:, 0].any() and torch.all(p.soft_hits[:, 0] == 0)
    # elsewhere H~ is the sigmoid of the recorded best score, and the hard hit is the threshold test
    s = p.scores[:, 1:]
    assert torch.allclose(p.soft_hits[:, 1:], torch.sigmoid(alpha * (s - tau)))
    assert torch.equal(p.hard_hits[:, 1:], s >= tau)
    # memory grows by the misses only (every frame of a clip is either a hit or stored)
    assert torch.equal(p.memory_size, (~p.hard_hits).sum(1))
    # eq. (3) relaxed and normalised by 8d, recomputed from the recorded hits and memory sizes
    b_new = 8 * TINY["d"]
    expected = []
    for b in range(x.shape[0]):
        m = 0
        for t in range(x.shape[1]):
            h = float(p.soft_hits[b, t].detach())
            expected.append((h * index_bits(m) + (1 - h) * b_new) / b_new)
            m += int(not p.hard_hits[b, t])
    assert float(p.bits_norm.detach()) == pytest.approx(sum(expected) / len(expected), rel=1e-5)
    assert 0.0 <= float(p.bits_norm.detach()) <= 1.0


def test_gradients_reach_encoder_decoder_and_tau():
    model, x = tiny_model(), tiny_clips()
    tau = torch.tensor(0.5, requires_grad=True)
    p = relaxed_pass(model, x, tau, alpha=10.0)
    loss = lagrangian(p, lam=50.0, d0=0.01)
    assert torch.isfinite(loss)
    loss.backward()
    for name, part in (("encoder", model.encoder), ("decoder", model.decoder)):
        grads = [q.grad for q in part.parameters()]
        assert all(g is not None for g in grads), name
        assert sum(float(g.abs().sum()) for g in grads) > 0, name
    assert tau.grad is not None and float(tau.grad) != 0.0
    # lowering tau makes hits likelier: fewer expected bits, so the bit term pulls tau down (dL/dtau > 0 here)
    model.zero_grad()
    tau.grad = None
    relaxed_pass(model, x, tau, alpha=10.0).bits_norm.backward()
    assert float(tau.grad) > 0


def test_training_records_trajectories_keeps_tau_in_range_and_applies_eq8():
    cfg = tiny_cfg(epochs=3, eta_tau=0.05, lambda_init=5.0, eta_lambda=2000.0)
    result = train_algorithm1(cfg)
    h = result.history
    assert [e["epoch"] for e in h] == [1, 2, 3]
    for e in h:
        assert math.isfinite(e["loss"]) and math.isfinite(e["distortion"]) and e["bits_per_frame"] > 0
        assert 0.0 < e["tau"] < 1.0 and 0.0 <= e["hit_rate"] <= 1.0
        assert e["lambda_next"] == dual_step(e["lambda"], e["distortion"], cfg.d0, cfg.eta_lambda)
    assert [e["lambda"] for e in h[1:]] == [e["lambda_next"] for e in h[:-1]]
    assert result.lam == h[-1]["lambda_next"] and result.tau == h[-1]["tau"]
    assert not any(p.requires_grad for p in result.model.parameters())


def test_tau_is_clamped_and_grid_search_picks_from_the_grid():
    r = train_algorithm1(tiny_cfg(epochs=1, eta_tau=1e6, lambda_init=0.0))   # a huge step: only the clamp holds it
    assert 0.0 < r.tau < 1.0
    grid = (0.3, 0.8, 0.97)
    r = train_algorithm1(tiny_cfg(epochs=1, tau_mode="grid", tau_grid=grid))
    assert r.tau in grid and len(r.history[0]["tau_grid_loss"]) == 3


def test_d0_defaults_to_the_reference_ceiling_and_is_needed_from_scratch():
    with pytest.raises(ConfigError, match="d0"):
        train_algorithm1(tiny_cfg(d0=None, epochs=1, steps_per_epoch=1))
    ref = tiny_model().eval()
    r = train_algorithm1(tiny_cfg(d0=None, epochs=1, steps_per_epoch=1), init=ref)
    assert r.d0 > 0 and r.history[0]["d0"] == r.d0


def test_config_is_validated():
    from semcom.config import validated

    with pytest.raises(ConfigError, match="alpha"):
        validated(Algorithm1Config, alpha=0)
    with pytest.raises(ConfigError, match="pool_frames"):
        validated(Algorithm1Config, pool_frames=4, clip_frames=8)
    with pytest.raises(ConfigError, match="train_seed"):
        validated(Algorithm1Config, train_seed=0)


def test_crops_source_renders_drifting_clips():
    photos = [torch.rand(120, 160, 3).mul(255).byte().numpy()]
    cfg = tiny_cfg(source="crops", clip_frames=5)
    x = ClipSampler(cfg, 32, 32, photos).sample(3, torch.Generator().manual_seed(0))
    assert x.shape == (3, 5, 3, 32, 32) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_beta_vae_kl_is_nonnegative_and_latents_lie_on_the_sphere():
    vae = tiny_model(BetaVAE)
    x = tiny_clips().flatten(0, 1)
    z, mean, logvar = vae.encoder.sample(x, torch.Generator().manual_seed(0))
    assert torch.allclose(z.norm(dim=1), torch.ones(len(z)), atol=1e-5)
    kl = kl_divergence(mean, logvar)
    assert kl.shape == (len(x),) and bool((kl >= 0).all())
    assert float(kl_divergence(torch.zeros(3, 4), torch.zeros(3, 4)).abs().max()) == 0.0   # KL(N(0,I)||N(0,I))
    wide = kl_divergence(torch.randn(50, 4), torch.randn(50, 4) * 3)
    assert bool((wide >= 0).all())
    # deterministic encoder = normalised mean; the exported autoencoder encodes the same
    det = vae.encoder(x)
    assert torch.allclose(det, torch.nn.functional.normalize(mean, dim=1))
    assert torch.allclose(vae.to_autoencoder().encoder(x), det, atol=1e-6)


def test_beta_vae_under_algorithm1_adds_the_kl_term():
    r = train_algorithm1(tiny_cfg(encoder="beta-vae", beta_kl=1.0, epochs=1))
    assert isinstance(r.model, BetaVAE) and r.history[0]["kl"] >= 0
    ae = r.export()
    assert type(ae) is SphericalAutoencoder and set(ae.state_dict()) == set(SphericalAutoencoder(**TINY).state_dict())


def test_cli_algorithm1_writes_loadable_weights_and_the_plot(tmp_path, capsys):
    init = save_autoencoder(tiny_model(), tmp_path / "init.safetensors")
    out, run = tmp_path / "a1.safetensors", tmp_path / "run"
    argv = ["train", "--algorithm", "algorithm1", "--init", str(init), "--epochs", "2", "--steps", "1",
            "--batch-size", "1", "--clip-frames", "4", "--regimes", "static", "--pool-seeds", "1",
            "--train-seed", "7", "-o", str(out), "--out", str(run), "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["algorithm"] == "algorithm1" and 0 < report["tau"] < 1 and report["d0"] > 0
    model = load_autoencoder(out)
    assert model.hparams == TINY
    traj = json.loads((run / "trajectories.json").read_text())
    assert len(traj["epochs"]) == 2
    assert {"lambda", "distortion", "bits_per_frame", "tau", "hit_rate"} <= set(traj["epochs"][0])
    assert (run / "trajectories.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((run / "config.json").read_text())["algorithm"] == "algorithm1"


def test_cli_beta_vae_and_option_checks(tmp_path, capsys):
    init = save_autoencoder(tiny_model(), tmp_path / "init.safetensors")
    out = tmp_path / "vae.safetensors"
    assert main(["train", "--algorithm", "beta-vae", "--init", str(init), "--steps", "2", "--batch-size", "2",
                 "--beta-kl", "0.5", "-o", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["config"]["beta_kl"] == 0.5 and report["final_kl"] >= 0
    assert load_autoencoder(out).hparams == TINY
    assert main(["train", "--epochs", "3"]) == 2                           # autoencoder takes no --epochs
    assert "--epochs applies to --algorithm algorithm1" in capsys.readouterr().err
