"""Training of the spherical autoencoder on random crops of real photographs.

The loss is the pixel MSE (what PSNR measures). Crops are taken at random
scales and positions, flipped, and re-lit (gain and gamma), so that the
latent space covers the motions and lighting changes of the content regimes.
``semcom train`` with the default :class:`TrainConfig` reproduces the shipped
weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from semcom.models.autoencoder import SphericalAutoencoder
from semcom.training.distributed import DistContext


class TrainConfig(BaseModel):
    """Hyper-parameters of :func:`train_autoencoder`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    d: int = Field(64, ge=1, le=4096)
    height: int = Field(64, ge=16, le=1024)
    width: int = Field(64, ge=16, le=1024)
    base: int = Field(32, ge=4, le=256)
    steps: int = Field(4000, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(2e-3, gt=0)
    seed: int = 0
    min_crop: float = Field(0.12, gt=0, le=1)
    max_crop: float = Field(0.8, gt=0, le=1)


def _as_tensors(images: Sequence[np.ndarray]) -> list[torch.Tensor]:
    return [torch.from_numpy(np.array(im, copy=True)).permute(2, 0, 1).float().div(255.0) for im in images]


def random_crops(images: list[torch.Tensor], n: int, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """``n`` random re-lit crops of ``images``, resized to (height, width), in [0, 1]."""
    out = torch.empty(n, 3, cfg.height, cfg.width)
    which = torch.randint(len(images), (n,), generator=gen)
    u = torch.rand(n, 6, generator=gen)
    for i in range(n):
        im = images[int(which[i])]
        _, h, w = im.shape
        side = min(h, w)
        frac = cfg.min_crop + (cfg.max_crop - cfg.min_crop) * float(u[i, 0])
        ch = max(8, int(side * frac))
        cw = min(w, max(8, int(ch * cfg.width / cfg.height)))
        y = int(float(u[i, 1]) * (h - ch + 1))
        x = int(float(u[i, 2]) * (w - cw + 1))
        crop = im[:, y : y + ch, x : x + cw].unsqueeze(0)
        out[i] = F.interpolate(crop, size=(cfg.height, cfg.width), mode="bilinear",
                               antialias=True, align_corners=False)[0]
    flip = u[:, 3] < 0.5
    out[flip] = out[flip].flip(-1)
    gain = (0.6 + 0.8 * u[:, 4]).view(n, 1, 1, 1)
    gamma = (0.7 + 0.6 * u[:, 5]).view(n, 1, 1, 1)
    return (out.clamp_min(1e-6) ** gamma * gain).clamp(0.0, 1.0)


def train_autoencoder(images: Sequence[np.ndarray], cfg: TrainConfig = TrainConfig(),
                      progress: Callable[[int, float], None] | None = None,
                      dist: DistContext | None = None) -> tuple[SphericalAutoencoder, list[float]]:
    """Train :class:`SphericalAutoencoder` with Adam and a cosine schedule; returns (model, losses).

    ``dist``: the device and, under torchrun, this rank's slice of each global batch (every rank draws the whole
    batch, so the ranks' averaged gradient is the single-process one; :mod:`semcom.training.distributed`); the
    losses are averaged over the ranks, ``progress`` runs on rank 0; the model comes back on the CPU."""
    dist = dist or DistContext()
    dev, part = dist.device, dist.shard(cfg.batch_size)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    data = _as_tensors(images)
    model = SphericalAutoencoder(cfg.d, cfg.height, cfg.width, cfg.base).to(dev)
    net = dist.wrap(model)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / cfg.steps)))
    losses: list[float] = []
    model.train()
    for step in range(cfg.steps):
        x = random_crops(data, cfg.batch_size, cfg, gen)[part].to(dev)
        loss = F.mse_loss(net(x), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(dist.mean([loss.detach()])[0]))
        if progress is not None and dist.is_main:
            progress(step, losses[-1])
    return model.cpu().eval().requires_grad_(False), losses
