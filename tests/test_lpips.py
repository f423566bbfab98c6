"""LPIPS-VGG16 from local weight files (semcom.metrics.lpips), cross-checked against its formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from semcom.errors import ConfigError
from semcom.metrics.lpips import LPIPS, LPIPS_LAYERS
from semcom.training.vqvae_loss import VGG16Features

CHANNELS = (64, 128, 256, 512, 512)


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    torch.manual_seed(0)
    net = VGG16Features(LPIPS_LAYERS)
    path = tmp_path_factory.mktemp("lpips") / "vgg16.safetensors"
    save_file({f"features.{k}": v.clone() for k, v in net.features.state_dict().items()}, str(path))
    return path


def _frames(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_zero_for_identical_images_and_growing_with_noise(vgg_file):
    metric = LPIPS(vgg_file)
    x = _frames(3)
    assert metric.variant == "vgg-baseline"
    assert torch.allclose(metric(x, x), torch.zeros(3))
    small = metric(x, (x + 0.02 * torch.randn_like(x)).clamp(0, 1))
    large = metric(x, (x + 0.3 * torch.randn_like(x)).clamp(0, 1))
    assert (small > 0).all() and (large > small).all()


def test_the_formula_by_hand(vgg_file):
    """sum over layers of the spatial mean of the channel sum of squared differences of unit features."""
    metric = LPIPS(vgg_file)
    x, y = _frames(2, 1), _frames(2, 2)
    expected = torch.zeros(2)
    for fx, fy in zip(metric.net(x), metric.net(y)):
        ux = fx / fx.norm(dim=1, keepdim=True)
        uy = fy / fy.norm(dim=1, keepdim=True)
        expected += ((ux - uy) ** 2).sum(1).mean((1, 2))
    assert torch.allclose(metric(x, y), expected, rtol=1e-5)


def test_linear_weights_from_the_lpips_file_layout(vgg_file, tmp_path):
    lin = {f"lin{i}.model.1.weight": torch.full((1, c, 1, 1), 0.5) for i, c in enumerate(CHANNELS)}
    torch.save(lin, tmp_path / "vgg.pth")
    x, y = _frames(2, 3), _frames(2, 4)
    weighted = LPIPS(vgg_file, tmp_path / "vgg.pth")
    assert weighted.variant == "vgg-lin"
    assert torch.allclose(weighted(x, y), 0.5 * LPIPS(vgg_file)(x, y), rtol=1e-5)


def test_bad_files_are_one_line_errors(vgg_file, tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        LPIPS(vgg_file, tmp_path / "none.pth")
    torch.save({"lin0.model.1.weight": torch.ones(1, 3, 1, 1)}, tmp_path / "bad.pth")
    with pytest.raises(ConfigError, match="lin0"):
        LPIPS(vgg_file, tmp_path / "bad.pth")
    with pytest.raises(ConfigError, match="VGG16"):
        LPIPS(tmp_path / "none.safetensors")


def test_score_on_uint8_clips(vgg_file):
    a = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    assert LPIPS(vgg_file).score(a, a) == pytest.approx(0.0, abs=1e-6)
