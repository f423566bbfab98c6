"""Generalised divisive normalisation (GDN), the non-linearity of learned image codecs.

Ballé, Laparra, Simoncelli, "Density modeling of images using a generalized normalization
transformation" (ICLR 2016), in the simplified form used by their 2018 hyperprior codec:
``y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2)``; the inverse (IGDN) multiplies instead.
``beta`` and ``gamma`` are kept non-negative by a lower bound on their parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GDN(nn.Module):
    """GDN over the channels of a (B, C, H, W) tensor; ``inverse=True`` gives IGDN."""

    def __init__(self, channels: int, inverse: bool = False, gamma_init: float = 0.1):
        super().__init__()
        self.inverse = inverse
        self.beta = nn.Parameter(torch.ones(channels))
        self.gamma = nn.Parameter(gamma_init * torch.eye(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta = self.beta.clamp_min(1e-6)
        gamma = self.gamma.clamp_min(0.0)
        norm = torch.sqrt(F.conv2d(x * x, gamma[:, :, None, None], beta))
        return x * norm if self.inverse else x / norm
