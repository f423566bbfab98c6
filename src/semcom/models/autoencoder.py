"""The light convolutional autoencoder of the Hopfield paper, Section II-A.

``f_theta : R^{H x W x 3} -> S^{d-1}`` maps a frame to a unit-norm latent and
``g_phi : S^{d-1} -> R^{H x W x 3}`` maps a latent back to a frame. Four
stride-2 convolutions take the frame down by 16 in each direction; a linear
layer makes the d-dimensional latent, which is projected on the unit sphere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DOWNSAMPLING = 16


def _widths(base: int) -> list[int]:
    return [3, base, 2 * base, 4 * base, 4 * base]


class SphericalEncoder(nn.Module):
    """``f_theta``: (B, 3, H, W) in [0, 1] -> (B, d) with ``||z||_2 = 1``."""

    def __init__(self, d: int = 64, height: int = 64, width: int = 64, base: int = 32):
        super().__init__()
        w = _widths(base)
        layers: list[nn.Module] = []
        for cin, cout in zip(w[:-1], w[1:]):
            layers += [nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.GELU()]
        self.features = nn.Sequential(*layers)
        self.grid = (height // DOWNSAMPLING, width // DOWNSAMPLING)
        self.project = nn.Linear(w[-1] * self.grid[0] * self.grid[1], d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x * 2.0 - 1.0)
        return F.normalize(self.project(h.flatten(1)), dim=1)


class SphericalDecoder(nn.Module):
    """``g_phi``: (B, d) -> (B, 3, H, W) in [0, 1]."""

    def __init__(self, d: int = 64, height: int = 64, width: int = 64, base: int = 32):
        super().__init__()
        w = _widths(base)[::-1]
        self.grid = (height // DOWNSAMPLING, width // DOWNSAMPLING)
        self.channels = w[0]
        self.expand = nn.Linear(d, w[0] * self.grid[0] * self.grid[1])
        layers: list[nn.Module] = []
        for i, (cin, cout) in enumerate(zip(w[:-1], w[1:])):
            layers.append(nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1))
            if i < len(w) - 2:
                layers.append(nn.GELU())
        self.synthesis = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.expand(z)).view(-1, self.channels, *self.grid)
        return torch.sigmoid(self.synthesis(h))


class SphericalAutoencoder(nn.Module):
    """Encoder and decoder pair; the hyper-parameters travel with the weights."""

    #: What ``--device`` moves (:mod:`semcom.models.device`): both networks; the link decides on the CPU.
    DEVICE_PARTS = ("encoder", "decoder")

    def __init__(self, d: int = 64, height: int = 64, width: int = 64, base: int = 32):
        super().__init__()
        self.hparams = {"d": d, "height": height, "width": width, "base": base}
        self.encoder = SphericalEncoder(d, height, width, base)
        self.decoder = SphericalDecoder(d, height, width, base)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))
