"""The robust masked VQ-VAE (semcom.robust, issue 11 item 3): ViT encoder, masking, codebook with the orthogonality
loss and deduplication (Sections III-IV of the robust paper), FIM with the SNR, the JSCC anchor, weights, and a tiny
seeded training run on scikit-learn's digits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from semcom.errors import ConfigError, WeightsError
from semcom.robust.codebook import VectorQuantizer, codeword_similarity, dedup_decode, dedup_encode, orthogonality_loss
from semcom.robust.config import robust_config
from semcom.robust.fim import FeatureImportance
from semcom.robust.losses import robust_loss, similarity_loss, supervised_contrastive_loss
from semcom.robust.masking import PatchMasking, keep_count
from semcom.robust.model import MaskedVQVAE, ViTJSCC, awgn_channel, symmetric_index_channel
from semcom.robust.train import accuracy, recall_at_1, train_masked_vqvae
from semcom.robust.vit import ViTEncoder
from semcom.robust.weights import load_robust, save_robust

SMALL = {"height": 16, "width": 16, "channels": 1, "patch_size": 4, "embed_dim": 32, "depth": 1, "heads": 2,
         "code_dim": 8, "J": 64, "head_hidden": 32, "fim_hidden": 16}
ALL_TASKS = ("classification", "retrieval", "reconstruction")


def _images(b: int = 6, c: int = 1, side: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, c, side, side, generator=torch.Generator().manual_seed(seed))


def _model(cls=MaskedVQVAE, seed: int = 0, **kw):
    torch.manual_seed(seed)
    return cls(**(SMALL | kw)).eval()


# ----------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("patch,tokens", [(4, 64), (8, 16), (16, 4)])
def test_vit_patch_sizes(patch, tokens):
    enc = ViTEncoder(32, 32, patch, 3, embed_dim=32, depth=1, heads=4)
    x = torch.rand(2, 3, 32, 32)
    assert enc.num_patches == tokens
    assert enc(x).shape == (2, tokens, 32)
    keep = torch.tensor([[0, 2], [1, 3]])
    assert enc(x, keep).shape == (2, 2, 32)


def test_masked_vqvae_shapes():
    model = _model(tasks=ALL_TASKS, retrieval_dim=12)
    x = _images()
    with torch.no_grad():
        out = model(x)
    assert out.logits.shape == (6, 10)
    assert out.embedding.shape == (6, 12)
    assert torch.allclose(out.embedding.norm(dim=1), torch.ones(6), atol=1e-5)
    assert out.reconstruction.shape == x.shape and 0 <= float(out.reconstruction.min()) <= float(
        out.reconstruction.max()) <= 1
    n, t = 16, 8
    assert out.keep.shape == (6, t) and out.sent.shape == (6, n)
    assert out.features.shape == (6, t, 8)
    assert (out.indices_sent == t).all()  # no FIM threshold, no deduplication: every kept token is sent
    assert int(out.sent.max()) < 64 and set(out.losses) == {"codebook", "commitment", "orthogonality"}
    # the transmitted positions are exactly the kept ones
    assert torch.equal((out.sent >= 0).nonzero()[:, 1].reshape(6, t), out.keep)


def test_jscc_shapes_and_power():
    model = _model(ViTJSCC, tasks=ALL_TASKS, mask_ratio=0.25)
    out = model(_images())
    assert out.logits.shape == (6, 10) and out.reconstruction.shape == (6, 1, 16, 16)
    assert out.sent is None and (out.indices_sent == 12).all()
    power = out.features.pow(2).flatten(1).mean(dim=1)
    assert torch.allclose(power, torch.full((6,), 0.5), atol=1e-5)  # unit energy per complex symbol
    z = torch.zeros(4000, 2)
    noisy = awgn_channel(10.0, torch.Generator().manual_seed(0))(z)
    assert noisy.pow(2).mean().item() == pytest.approx(0.1 / 2, rel=0.1)


def test_eval_mask_is_deterministic_and_training_mask_is_random():
    model = _model()
    x = _images()
    assert torch.equal(model(x).keep, model(x).keep)
    assert torch.equal(model(x).logits, model(x).logits)
    model.train()
    torch.manual_seed(1)
    a = model.draw_keep(6)
    assert not torch.equal(a, model.draw_keep(6))


@pytest.mark.parametrize("cls,kw", [(MaskedVQVAE, {"use_fim": True, "tasks": ALL_TASKS}),
                                    (ViTJSCC, {"tasks": ALL_TASKS})])
def test_eval_outputs_of_an_image_do_not_depend_on_its_batch(cls, kw):
    """Eval mode: one mask for every image (drawn from mask_seed), so an image's outputs are the same in a batch
    of 1, 7 or 64, at any row."""
    model = _model(cls, **kw)
    model.masking.update(_images(4, seed=3))  # noise-aware statistics, so the mask is not uniform
    x = _images(64, seed=5)
    with torch.no_grad():
        full = model(x, snr_db=3.0)
        assert (full.keep == full.keep[0]).all()
        assert torch.equal(full.keep[0], model.eval_keep())
        for size in (1, 7):
            for start in (0, 20, 64 - size):
                part = model(x[start:start + size], snr_db=3.0)
                assert torch.equal(part.keep, full.keep[start:start + size])
                if full.sent is not None:
                    assert torch.equal(part.sent, full.sent[start:start + size])
                for a, b in ((part.logits, full.logits), (part.embedding, full.embedding),
                             (part.reconstruction, full.reconstruction), (part.features, full.features)):
                    torch.testing.assert_close(a, b[start:start + size], rtol=0, atol=1e-5)
        # the one image alone, at row 5 of 64, is the same function
        assert torch.equal(model(x[5:6], snr_db=3.0).logits.argmax(1), full.logits[5:6].argmax(1))


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("side,patch", [(28, 8), (28, 16), (32, 5), (30, 4)])
def test_patch_size_that_does_not_divide_is_one_line_error(side, patch):
    with pytest.raises(ConfigError, match="patch_size") as exc:
        robust_config(height=side, width=side, patch_size=patch)
    assert "\n" not in str(exc.value)
    with pytest.raises(ConfigError, match="patch_size"):
        ViTEncoder(side, side, patch, 1)


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5, float("nan"), float("inf"), "half", True])
def test_masking_ratio_outside_unit_interval_is_one_line_error(ratio):
    with pytest.raises(ConfigError, match="masking ratio") as exc:
        robust_config(mask_ratio=ratio)
    assert "\n" not in str(exc.value)
    with pytest.raises(ConfigError, match="masking ratio"):
        PatchMasking(16, ratio)


@pytest.mark.parametrize("kw,field", [({"J": 100}, "J"), ({"heads": 3}, "heads"), ({"tasks": ()}, "tasks"),
                                      ({"kind": "jpeg"}, "kind"), ({"dedup_threshold": 1.5}, "dedup_threshold")])
def test_config_errors_name_the_field(kw, field):
    with pytest.raises(ConfigError, match=field) as exc:
        robust_config(**kw)
    assert "\n" not in str(exc.value)


def test_table1_symbols():
    # Section V-B: 224 x 224, patch 16, J = 256, masking ratio 0.5, 16-QAM -> 196 symbols; patch 8 -> 784
    assert robust_config(height=224, width=224, patch_size=16).symbols_per_image(4) == 196
    assert robust_config(height=224, width=224, patch_size=8).symbols_per_image(4) == 784
    assert robust_config(height=224, width=224, patch_size=16).symbols_per_image(4, code_rate=0.5) == 392


@pytest.mark.parametrize("ratio", [0.0, 0.25, 0.5, 0.75, 0.9])
def test_fraction_masked(ratio):
    n = 64
    masking = PatchMasking(n, ratio, mode="random")
    keep = masking(50, torch.Generator().manual_seed(0))
    t = keep_count(n, ratio)
    assert t == max(1, round(n * (1 - ratio)))
    assert keep.shape == (50, t)
    assert (keep[:, 1:] > keep[:, :-1]).all()  # distinct, ascending
    assert 1 - keep.shape[1] / n == pytest.approx(ratio, abs=1 / n)


def test_noise_aware_masking_masks_noisy_patches_more_often():
    masking = PatchMasking(16, 0.5, mode="noise-aware", noise_weight=0.8, patch_size=4)
    delta = torch.zeros(3, 1, 16, 16)
    delta[:, :, :, :8] = 0.016  # semantic noise in the left half of the image only
    masking.update(delta)
    left = torch.tensor([c < 2 for r in range(4) for c in range(4)])
    stats = masking.noise_statistics()
    assert torch.allclose(stats[left], torch.full((8,), 0.016)) and (stats[~left] == 0).all()
    keep = masking(2000, torch.Generator().manual_seed(0))
    kept = torch.zeros(16).index_add_(0, keep.flatten(), torch.ones(keep.numel())) / 2000
    assert kept[left].mean() < 0.25 < 0.75 < kept[~left].mean()
    uniform = PatchMasking(16, 0.5, mode="random")
    uniform.update(delta)
    keep = uniform(2000, torch.Generator().manual_seed(0))
    kept = torch.zeros(16).index_add_(0, keep.flatten(), torch.ones(keep.numel())) / 2000
    assert (kept - 0.5).abs().max() < 0.05


# ----------------------------------------------------------------------------- codebook


def test_orthogonality_loss_matches_the_formula():
    g = torch.Generator().manual_seed(0)
    E = torch.randn(12, 5, generator=g, dtype=torch.float64)
    En = E / E.norm(dim=1, keepdim=True)
    expected = sum((float(En[i] @ En[j]) - (i == j)) ** 2 for i in range(12) for j in range(12))
    assert orthogonality_loss(E).item() == pytest.approx(expected, rel=1e-10)
    assert orthogonality_loss(E, "mean").item() == pytest.approx(expected / 144, rel=1e-10)
    raw = sum((float(E[i] @ E[j]) - (i == j)) ** 2 for i in range(12) for j in range(12))
    assert orthogonality_loss(E, normalize=False).item() == pytest.approx(raw, rel=1e-10)
    # J > D: bounded below by the tight frame's J^2 / D - J
    assert orthogonality_loss(E).item() >= 12 ** 2 / 5 - 12 - 1e-9


def test_orthogonality_loss_is_zero_for_orthonormal_codewords():
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    assert orthogonality_loss(q[:10]).item() == pytest.approx(0.0, abs=1e-20)
    assert orthogonality_loss(q[:10] * 7.0).item() == pytest.approx(0.0, abs=1e-20)  # normalised first
    assert orthogonality_loss(q[:10], normalize=False).item() == pytest.approx(0.0, abs=1e-20)
    assert orthogonality_loss(torch.ones(4, 3)).item() == pytest.approx(12.0)  # all parallel: off-diagonals 1


def test_orthogonality_loss_agrees_with_vector_quantize_pytorch():
    from vector_quantize_pytorch.vector_quantize_pytorch import orthogonal_loss_fn

    E = torch.randn(32, 8, generator=torch.Generator().manual_seed(2))
    assert orthogonality_loss(E, "mean").item() == pytest.approx(orthogonal_loss_fn(E[None]).item(), abs=1e-6)


def test_quantizer_straight_through_and_losses():
    vq = VectorQuantizer(J=16, code_dim=4).eval()
    z = torch.randn(3, 5, 4, requires_grad=True)
    z_q, idx, losses = vq(z)
    assert torch.allclose(z_q, vq.codebook[idx], atol=1e-6)  # forward: the nearest codewords
    d = torch.cdist(z.detach().reshape(-1, 4), vq.codebook.detach())
    assert torch.equal(idx.flatten(), d.argmin(dim=1))  # eq. (11)
    z_q.sum().backward()
    assert torch.allclose(z.grad, torch.ones_like(z))  # backward: the identity, in eval mode too
    expected = (z.detach() - vq.codebook.detach()[idx]).pow(2).sum(-1).mean()
    assert losses["codebook"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert losses["commitment"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_quantizer_mean_reduction_divides_the_vq_terms_by_D_and_keeps_the_forward():
    torch.manual_seed(0)
    summed = VectorQuantizer(J=16, code_dim=4).eval()
    mean = VectorQuantizer(J=16, code_dim=4, loss_reduction="mean").eval()
    mean.load_state_dict(summed.state_dict())
    z = torch.randn(3, 5, 4)
    (zq_s, idx_s, loss_s), (zq_m, idx_m, loss_m) = summed(z), mean(z)
    assert torch.equal(zq_s, zq_m) and torch.equal(idx_s, idx_m)  # training-time only: same forward
    for term in ("codebook", "commitment"):
        assert loss_m[term].item() == pytest.approx(loss_s[term].item() / 4, rel=1e-6)
    assert robust_config().vq_loss_reduction == "sum"  # the shipped recipe is unchanged
    assert MaskedVQVAE(**SMALL, vq_loss_reduction="mean").quantizer.loss_reduction == "mean"
    with pytest.raises(ConfigError, match="loss_reduction"):
        VectorQuantizer(J=16, code_dim=4, loss_reduction="max")
    with pytest.raises(ConfigError, match="vq_loss_reduction"):
        robust_config(vq_loss_reduction="max")


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), J=st.sampled_from([4, 8, 16]), D=st.integers(2, 6),
       n=st.integers(1, 24), delta=st.floats(-1.0, 1.0), data=st.data())
def test_dedup_round_trip(seed, J, D, n, delta, data):
    codebook = torch.randn(J, D, generator=torch.Generator().manual_seed(seed))
    positions = sorted(data.draw(st.sets(st.integers(0, n - 1), min_size=0, max_size=n)))
    indices = data.draw(st.lists(st.integers(0, J - 1), min_size=len(positions), max_size=len(positions)))
    msg = dedup_encode(torch.tensor(indices, dtype=torch.long), torch.tensor(positions, dtype=torch.long),
                       codebook, delta, n)
    grid = dedup_decode(msg)
    sim = codeword_similarity(codebook)
    sent = [p for p in positions if grid[p] >= 0]
    assert grid.shape == (n,)
    assert all(grid[p] == -1 for p in range(n) if p not in positions)  # nothing appears where nothing was kept
    for p, i in zip(positions, indices):
        if grid[p] >= 0:
            assert grid[p] == i  # a sent index arrives unchanged at its own position
        else:  # a dropped index is more than delta similar to one sent before it
            assert any(q < p and sim[i, grid[q]] > delta for q in sent)
    for a in sent:  # the sent indices are pairwise at most delta similar
        assert all(sim[grid[a], grid[b]] <= delta for b in sent if b != a)
    assert msg.bits() == n + msg.indices.numel() * int(math.log2(J))
    if delta == 1.0:
        assert [int(grid[p]) for p in positions] == indices  # delta = 1: lossless
    elif len(set(indices)) < len(indices):
        assert msg.indices.numel() <= len(set(indices))  # a repeated index is sent once at most


def test_dedup_in_the_model_drops_repeated_indices():
    model = _model(dedup_threshold=0.999)
    out = model(_images(b=8))
    for row in out.sent:
        sent = row[row >= 0]
        assert sent.numel() == torch.unique(sent).numel() >= 1
    assert (out.indices_sent <= 8).all()


# ----------------------------------------------------------------------------- FIM


def test_fim_weights_depend_on_the_snr():
    model = _model(tasks=ALL_TASKS)
    x = _images(b=16)
    w_low = model(x, snr_db=-9.0).fim_weights
    w_high = model(x, snr_db=18.0).fim_weights
    assert w_low.shape == (16, 8)
    assert torch.allclose(w_low.mean(dim=1), torch.ones(16), atol=1e-5)  # scaled softmax: mean 1
    assert not torch.allclose(w_low, w_high, atol=1e-4)
    per_image = torch.tensor([-9.0, 18.0] * 8)
    assert model(x, snr_db=per_image).fim_weights.shape == (16, 8)
    with pytest.raises(ConfigError, match="snr_db"):
        model(x, snr_db=float("nan"))


def test_fim_weights_are_the_mean_jacobian_of_eq14():
    torch.manual_seed(0)
    fim = FeatureImportance(num_positions=6, n_out=4, hidden=8)
    feats = torch.randn(1, 3, 5)
    pos = torch.tensor([[0, 2, 5]])
    f_hat = fim.activation_map(feats, pos, 3.0)
    assert f_hat[0, 0].item() == pytest.approx(0.3)  # mu = SNR in dB / 10
    assert torch.allclose(f_hat[0, 1:], torch.tensor([feats[0, 0].mean(), 0, feats[0, 1].mean(), 0, 0,
                                                      feats[0, 2].mean()]))  # eq. (13) at the positions
    w_hat, _ = fim.importance(f_hat)
    jac = torch.autograd.functional.jacobian(lambda f: fim.fc2(torch.relu(fim.fc1(f))), f_hat[0])  # W(f^), C x N+1
    assert torch.allclose(w_hat[0], jac.mean(dim=0)[1:], atol=1e-6)  # eq. (14)
    fim.threshold = 1.0
    out = fim(feats, pos, 3.0)
    assert out.keep.any(dim=1).all() and torch.equal(out.keep, (out.weights >= 1.0) | (
        out.weights == out.weights.max(dim=1, keepdim=True).values))


def test_fim_threshold_reduces_sent_indices():
    model = _model(fim_threshold=1.0)
    out = model(_images(b=8))
    assert (out.indices_sent >= 1).all() and (out.indices_sent <= 8).all()
    assert torch.equal(out.indices_sent, (out.fim_weights >= 1.0).sum(dim=1).clamp_min(1))


# ----------------------------------------------------------------------------- link seam, gradients


def test_receiver_sees_only_the_indices():
    model = _model(tasks=ALL_TASKS)
    x = _images()
    with torch.no_grad():
        out = model(x)
        alone = model.decode_indices(out.sent)  # the receiver from the index grid alone
    assert torch.allclose(out.logits, alone.logits, atol=1e-5)
    assert torch.allclose(out.reconstruction, alone.reconstruction, atol=1e-5)
    with torch.no_grad():
        same = model(x, channel=lambda grid: grid.clone())
        noisy = model(x, channel=symmetric_index_channel(1.0, 64, torch.Generator().manual_seed(0)))
    assert torch.allclose(same.logits, out.logits)
    assert torch.equal(noisy.received < 0, out.sent < 0)  # positions survive, indices do not
    assert (noisy.received != out.sent).any() and not torch.allclose(noisy.logits, out.logits)
    clean = symmetric_index_channel(0.0, 64)(out.sent)
    assert torch.equal(clean, out.sent)
    with pytest.raises(ConfigError, match="received"):
        model.decode_indices(torch.full((2, 16), 64))


@pytest.mark.parametrize("cls", [MaskedVQVAE, ViTJSCC])
def test_logits_are_differentiable_in_eval_mode(cls):
    model = _model(cls)
    x = _images().requires_grad_(True)
    clf = model.classifier(snr_db=3.0)
    loss = torch.nn.functional.cross_entropy(clf(x), torch.arange(6) % 10)
    (grad,) = torch.autograd.grad(loss, x)
    assert grad.abs().sum() > 0  # the straight-through estimator carries the attack's gradient


# ----------------------------------------------------------------------------- losses


def test_loss_terms():
    same = torch.ones(2, 5, 3)
    assert similarity_loss(same).item() == pytest.approx(-1.0)  # eq. (17), all features alike
    eye = torch.eye(4).expand(2, 4, 4)
    assert similarity_loss(eye).item() == pytest.approx(-1 / 4)  # mutually orthogonal: only the diagonal
    labels = torch.tensor([0, 0, 1, 1])
    clustered = torch.tensor([[1.0, 0], [1, 0], [0, 1], [0, 1]])
    mixed = torch.tensor([[1.0, 0], [0, 1], [1, 0], [0, 1]])
    assert supervised_contrastive_loss(clustered, labels) < supervised_contrastive_loss(mixed, labels)
    assert supervised_contrastive_loss(clustered, torch.arange(4)).item() == 0.0  # no positives
    model = _model(tasks=ALL_TASKS, lambda_sim=0.1)
    x = _images(b=4)
    out = model(x)
    total, terms = robust_loss(out, x, labels, model.config)
    assert set(terms) == {"classification", "retrieval", "reconstruction", "codebook", "commitment",
                          "orthogonality", "fim", "similarity"}
    c = model.config
    expected = (terms["classification"] + terms["retrieval"] + terms["reconstruction"] + terms["codebook"]
                + c.beta * terms["commitment"] + c.lambda_orth * terms["orthogonality"] + c.lambda_fim * terms["fim"]
                + c.lambda_sim * terms["similarity"])
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    with pytest.raises(ConfigError, match="labels"):
        robust_loss(out, x, None, model.config)


# ----------------------------------------------------------------------------- weights


@pytest.mark.parametrize("cls", [MaskedVQVAE, ViTJSCC])
def test_save_load_round_trip(tmp_path, cls):
    model = _model(cls, tasks=ALL_TASKS)
    model.masking.update(torch.rand(2, 1, 16, 16))
    path = save_robust(model, tmp_path / "m.safetensors", steps=3, data="digits")
    loaded = load_robust(path)
    x = _images()
    with torch.no_grad():
        assert torch.allclose(model(x).logits, loaded(x).logits, atol=1e-6)
    assert loaded.config == model.config and loaded.metadata["data"] == "digits"
    assert torch.equal(loaded.masking.noise_statistics(), model.masking.noise_statistics())
    tensors = load_file(str(path))
    tensors.pop(next(iter(tensors)))
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata={"kind": "robust-masked-vqvae",
                                                                    "config": model.config.model_dump_json()})
    with pytest.raises(WeightsError, match="do not fit|kind"):
        load_robust(tmp_path / "bad.safetensors")
    with pytest.raises(WeightsError, match="not found"):
        load_robust(tmp_path / "missing.safetensors")


# ----------------------------------------------------------------------------- training


def _digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0
    x = torch.nn.functional.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False).clamp(0, 1)
    perm = torch.randperm(len(d.target), generator=torch.Generator().manual_seed(0))
    y = torch.tensor(d.target)
    return x[perm[:1400]], y[perm[:1400]], x[perm[1400:]], y[perm[1400:]]


def test_tiny_training_beats_chance():
    x_tr, y_tr, x_te, y_te = _digits()
    cfg = {"height": 16, "width": 16, "channels": 1, "patch_size": 4, "embed_dim": 64, "depth": 2, "heads": 4,
           "code_dim": 16, "head_hidden": 128}
    result = train_masked_vqvae(cfg, x_tr, y_tr, steps=200, seed=0)
    acc = accuracy(result.model, x_te, y_te)  # digits the training never saw; chance is 0.1
    assert acc > 0.6
    assert not result.model.training and result.history[-1]["step"] == 199
    assert {"classification", "codebook", "commitment", "orthogonality", "fim"} <= set(result.history[-1])


def test_training_is_seeded():
    x_tr, y_tr, _, _ = _digits()
    a, b, c = (train_masked_vqvae(SMALL, x_tr[:64], y_tr[:64], steps=4, seed=s, batch_size=16).model.state_dict()
               for s in (3, 3, 4))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_training_other_tasks_and_bad_input():
    x_tr, y_tr, x_te, y_te = _digits()
    cfg = SMALL | {"tasks": ("retrieval", "reconstruction"), "use_fim": False}
    result = train_masked_vqvae(cfg, x_tr[:256], y_tr[:256], steps=20, seed=0, batch_size=32)
    with torch.no_grad():
        out = result.model(x_te[:100])
    assert out.logits is None and out.reconstruction.shape == (100, 1, 16, 16)
    assert 0.0 <= recall_at_1(out.embedding, y_te[:100]) <= 1.0
    for statistic in ("gradient", "perturbation"):  # adversarial training feeds the noise-aware masking
        noisy = train_masked_vqvae(SMALL | {"noise_statistic": statistic}, x_tr[:64], y_tr[:64], steps=2, seed=0,
                                   batch_size=32, perturb=lambda clf, x, y: (x + 0.01 + 0 * clf(x).sum()).clamp(0, 1))
        assert noisy.model.masking.noise_count.item() == 64 and noisy.model.masking.noise_statistics().sum() > 0
    jscc = train_masked_vqvae(SMALL | {"kind": "jscc"}, x_tr[:64], y_tr[:64], steps=3, seed=0, snr_db=(-9, 18))
    assert isinstance(jscc.model, ViTJSCC)
    with pytest.raises(ConfigError, match="images"):
        train_masked_vqvae(SMALL, np.zeros((4, 3, 16, 16), dtype=np.float32), [0, 1, 2, 3], steps=1)
    with pytest.raises(ConfigError, match="labels"):
        train_masked_vqvae(SMALL, x_tr[:4], [0, 1, 2, 10], steps=1)
    with pytest.raises(ConfigError, match="masking ratio"):
        train_masked_vqvae(SMALL | {"mask_ratio": 1.0}, x_tr[:4], y_tr[:4], steps=1)


@pytest.mark.parametrize("name,base_name,limit,recall,margin_db", [
    ("masked-vqvae-tasks", "masked-vqvae", 250, 0.5, 2.0),
    ("masked-vqvae-tasks+at", "masked-vqvae+at", 100, 0.4, 1.0),
])
def test_shipped_tasks_models_retrieve_and_reuse_their_base(name, base_name, limit, recall, margin_db):
    """The task models' heads sit on a frozen base (same indices and logits), retrieve held-out test digits far
    above chance (0.1) and reconstruct them better than the mean image; the +at one is a small file whose heads
    were trained adversarially."""
    import torch

    from semcom.robust.zoo import VARIANTS, load_variant, psnr_of, recall_of, weights_path
    from semcom.sources.labelled import load_labelled

    test = load_labelled("mnist5k", "test", seed=0, limit=limit)
    tasks, base = load_variant(name), load_variant(base_name)
    assert set(tasks.config.tasks) == {"classification", "retrieval", "reconstruction"}
    if VARIANTS[name].at:
        assert weights_path(name).stat().st_size < 1_500_000
        assert "iterative FGSM" in tasks.metadata["adversarial_training"]
    assert recall_of(tasks, test.images, test.labels) > recall
    mean_image = test.images.mean(0, keepdim=True).expand_as(test.images)
    psnr_mean = float(10 * torch.log10(1.0 / (mean_image - test.images).pow(2).mean()))
    assert psnr_of(tasks, test.images) > psnr_mean + margin_db
    with torch.no_grad():
        x = test.images[:32]
        assert torch.equal(tasks.transmit(x)["indices"], base.transmit(x)["indices"])
        assert torch.equal(tasks.logits(x), base.logits(x))


def test_select_mask_seed_keeps_the_best_training_accuracy():
    """select_mask_seed tries each seed's one eval mask and keeps the best (first on a tie); the weights and the
    other config fields do not change."""
    from semcom.robust.zoo import select_mask_seed

    torch.manual_seed(0)
    model = MaskedVQVAE(height=8, width=8, channels=1, patch_size=4, embed_dim=16, depth=1, heads=2, mask_ratio=0.5,
                        n_classes=3, J=8, code_dim=4).eval()
    x, y = torch.rand(40, 1, 8, 8), torch.randint(0, 3, (40,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    scores = select_mask_seed(model, x, y, seeds=[3, 1, 7])
    assert len(scores) == 3 and model.config.mask_seed == [3, 1, 7][int(np.argmax(scores))]
    assert accuracy(model, x, y) == max(scores)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.config.embed_dim == 16 and model.config.mask_ratio == 0.5
