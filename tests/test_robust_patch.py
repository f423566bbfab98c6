"""Patch sizes 4, 8 and 16 on 28x28 digits zero-padded to 32x32 (issue 11, item 3: "patch sizes 4 and 8, and 16
where the image allows"): ``RobustConfig.pad_to`` and the ``robust-patch`` reproduction."""

from __future__ import annotations

import json

import pytest
import torch

from semcom.errors import ConfigError
from semcom.experiments import robust_paper as rp
from semcom.experiments.registry import REPRODUCTIONS
from semcom.robust.config import robust_config
from semcom.robust.model import MaskedVQVAE, ViTJSCC
from semcom.robust.vit import pad_images

DIGIT = {"height": 28, "width": 28, "channels": 1, "embed_dim": 32, "depth": 1, "heads": 2, "code_dim": 8,
         "J": 64, "head_hidden": 32, "fim_hidden": 16}


@pytest.mark.parametrize("patch,patches", [(4, 64), (8, 16), (16, 4)])
def test_pad_to_allows_patch_sizes_that_do_not_divide_28(patch, patches):
    with pytest.raises(ConfigError, match="pad_to"):
        robust_config(**DIGIT, patch_size=patch if patch != 4 else 8)  # 8 and 16 do not divide 28
    cfg = robust_config(**DIGIT, patch_size=patch, pad_to=32)
    assert cfg.num_patches == patches and cfg.num_keep == patches // 2 and cfg.padded == (32, 32)
    assert cfg.symbols_per_image(4, 0.5) == patches // 2 * 6 / 2  # J = 64: 6 bits per index


@pytest.mark.parametrize("bad", [-1, 20, 27, 1.5, True])
def test_bad_pad_to_is_one_line_error(bad):
    with pytest.raises(ConfigError, match="pad_to") as err:
        robust_config(**DIGIT, patch_size=4, pad_to=bad)
    assert "\n" not in str(err.value)


def test_pad_images_is_centred_zero_padding_and_passes_gradients_to_the_image_only():
    x = torch.rand(2, 1, 28, 28, requires_grad=True)
    y = pad_images(x, 32)
    assert y.shape == (2, 1, 32, 32)
    assert torch.equal(y[:, :, 2:30, 2:30], x.detach())
    ring = y.detach().clone()
    ring[:, :, 2:30, 2:30] = 0
    assert float(ring.abs().sum()) == 0.0
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))
    assert pad_images(x, 0) is x and pad_images(x, 28) is x
    assert pad_images(torch.rand(1, 1, 27, 29), 32).shape == (1, 1, 32, 32)


@pytest.mark.parametrize("cls", [MaskedVQVAE, ViTJSCC])
@pytest.mark.parametrize("patch", [8, 16])
def test_padded_models_take_and_give_28x28_images(cls, patch):
    torch.manual_seed(0)
    model = cls(**DIGIT, patch_size=patch, pad_to=32, tasks=("classification", "reconstruction")).eval()
    x = torch.rand(5, 1, 28, 28)
    out = model(x)
    n = (32 // patch) ** 2
    assert out.logits.shape == (5, 10) and out.reconstruction.shape == (5, 1, 28, 28)
    assert out.keep.shape == (5, n // 2)
    if out.sent is not None:
        assert out.sent.shape == (5, n) and (out.indices_sent == n // 2).all()
    # the noise statistics are pooled on the padded grid; the ring of zeros carries none
    model.masking.update(torch.ones(5, 1, 28, 28))
    s = model.masking.noise_statistics()
    assert s.shape == (n,) and bool((s > 0).all())
    # an image's outputs do not depend on its batch (one eval mask)
    torch.testing.assert_close(model(x[3:4]).logits, model(x).logits[3:4], rtol=0, atol=1e-5)


def test_patch_reproduction_registered_and_quick_rows(tmp_path, monkeypatch):
    assert REPRODUCTIONS["robust-patch"].options == ("snr",)
    real = rp.run_patch

    def tiny(quick, progress=None, snrs=None, seed=0):
        return real(quick, progress, snrs=[18.0], seed=seed, samples=20, steps=3)
    monkeypatch.setattr(rp, "run_patch", tiny)
    ticks = []
    out = rp.outcome("patch", True, ticks.append, tmp_path)
    assert len(ticks) == rp.steps("patch", True) == 6
    assert rp.steps("patch", False) == 12  # full: patch 4, 8, 16 padded and 4 unpadded, three settings
    assert [p.name for p in out.figures] == ["robust_patch.png"]
    res = out.results
    rows = {r["patch_size"]: r for r in res["rows"] if r["code_dim"] == 8}
    assert set(rows) == {4, 8, 16} and len(res["rows"]) == 6
    # T = N / 2 indices of 8 bits, 16-QAM, LDPC 1/2: 32, 8 and 2 indices
    assert [rows[p]["symbols_per_image"] for p in (4, 8, 16)] == [128.0, 32.0, 8.0]
    for r in res["rows"]:
        assert r["pad_to"] == 32 and r["side"] == 32 and r["snr_db"] == 18.0 and r["samples"] == 20
        assert (r["code_dim"], r["vq_loss_reduction"]) in {(8, "sum"), (32, "mean")}  # --quick's two settings
        assert 1 <= r["codewords_used"] <= 256
        assert 0.0 <= r["accuracy"] <= 1.0 and 0.0 <= r["accuracy_noiseless"] <= 1.0
    json.dumps(res)


def test_code_dim_32_patch_16_does_not_collapse_with_mean_vq_losses():
    """The shipped recipe at ``code_dim`` 32 with patch 16 on padded digits (two tokens per image): summed over the
    32 coordinates, the commitment term's pull on the encoder outweighs the classifier's at initialisation and every
    token collapses onto one codeword (2 codewords, accuracy 0.115 after these 100 steps). Averaged over them
    (``vq_loss_reduction="mean"``, what ``robust-patch`` trains with), it trains."""
    from semcom.robust.train import accuracy
    from semcom.sources.labelled import load_labelled

    train = load_labelled(rp.DATASET, "train", seed=0)
    data = rp.held_out_split(True, 200)
    model = rp._train_small({"patch_size": 16, "pad_to": 32, "code_dim": 32, "vq_loss_reduction": "mean"}, 100, 0,
                            train).model
    with torch.no_grad():
        used = model.transmit(data.images)["indices"].unique().numel()
    assert used >= 4
    assert accuracy(model, data.images, data.labels) >= 0.25  # chance is 0.1
