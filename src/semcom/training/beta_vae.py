"""The beta-VAE variant of the encoder (Hopfield paper, Section IV: "a beta-VAE or a shallow CNN autoencoder").

The encoder keeps the convolutional trunk and the linear ``project`` layer of
:class:`~semcom.models.autoencoder.SphericalEncoder`, which now outputs the
*mean* ``m(x)`` of a diagonal Gaussian, and adds a second linear head
``logvar`` for its log-variance. During training the latent is a
reparameterised sample projected on the unit sphere::

    u = m(x) + exp(logvar(x) / 2) * eps,   eps ~ N(0, I),   z = u / ||u||_2        (V1)

and the loss is the beta-VAE objective with the KL divergence of
``N(m, diag exp(logvar))`` from the prior ``N(0, I)``, counted per frame
(nats, summed over the d dimensions) and divided by the number of pixel
values ``3 H W`` so that ``beta_kl`` sits on the scale of the per-value MSE::

    KL(x) = 1/2 sum_i (m_i^2 + exp(logvar_i) - 1 - logvar_i)  >= 0               (V2)
    L = MSE(g_phi(z), x) + beta_kl * mean_x KL(x) / (3 H W)                       (V3)

With a Gaussian decoder of variance ``sigma_x^2`` per value, the beta-VAE loss
``SSE / (2 sigma_x^2) + beta KL`` divided by ``3 H W / (2 sigma_x^2)`` is (V3) with
``beta_kl = 2 sigma_x^2 beta``: the default ``beta_kl = 0.01`` is ``beta = 1`` at
``sigma_x^2 = 0.005``, about the shipped autoencoder's MSE.

At inference the encoder is deterministic, ``z = m(x) / ||m(x)||``: exactly
:class:`SphericalEncoder` with the mean head as its ``project`` layer. So
:meth:`BetaVAE.to_autoencoder` drops the ``logvar`` head and the result is
saved and loaded as a plain autoencoder (same hyper-parameters and tensor
names; :func:`semcom.models.load_autoencoder` reads it unchanged).
:meth:`BetaVAE.from_autoencoder` starts a beta-VAE from existing autoencoder
weights (the mean head from ``project``, the log-variance head at a constant
``logvar_init``).

The Gaussian is sampled before the projection on the sphere (a von
Mises-Fisher posterior would sample on the sphere directly); the paper does
not say which, and (V1) is the common choice for "a beta-VAE whose latents
are normalised to unit norm".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from semcom.models.autoencoder import SphericalAutoencoder, SphericalEncoder
from semcom.training.autoencoder import TrainConfig, _as_tensors, random_crops
from semcom.training.distributed import DistContext

LOGVAR_RANGE = (-30.0, 20.0)


class BetaVAEEncoder(SphericalEncoder):
    """``f_theta`` of a beta-VAE: the mean head is ``project``, the log-variance head ``logvar``."""

    def __init__(self, d: int = 64, height: int = 64, width: int = 64, base: int = 32,
                 logvar_init: float = -6.0):
        super().__init__(d, height, width, base)
        self.logvar = nn.Linear(self.project.in_features, d)
        nn.init.zeros_(self.logvar.weight)
        nn.init.constant_(self.logvar.bias, logvar_init)

    def moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance (B, d) of the Gaussian posterior of (B, 3, H, W) frames in [0, 1]."""
        h = self.features(x * 2.0 - 1.0).flatten(1)
        return self.project(h), self.logvar(h).clamp(*LOGVAR_RANGE)

    def sample(self, x: torch.Tensor, generator: torch.Generator | None = None, eps: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(V1): a reparameterised sample on the sphere, with the mean and log-variance it came from. ``eps``: the
        standard normal draws (default: drawn here from ``generator``, on the CPU like every training draw)."""
        mean, logvar = self.moments(x)
        if eps is None:
            eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
        eps = eps.to(mean.device, mean.dtype)
        return F.normalize(mean + torch.exp(0.5 * logvar) * eps, dim=1), mean, logvar

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic encoder: the normalised mean, as :class:`SphericalEncoder` computes it."""
        return F.normalize(self.moments(x)[0], dim=1)


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """(V2): ``KL(N(mean, diag exp(logvar)) || N(0, I))`` per row (B,), in nats; never negative."""
    return 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).sum(dim=-1)


class BetaVAE(SphericalAutoencoder):
    """:class:`SphericalAutoencoder` whose encoder is a :class:`BetaVAEEncoder`; same ``hparams``."""

    def __init__(self, d: int = 64, height: int = 64, width: int = 64, base: int = 32,
                 logvar_init: float = -6.0):
        super().__init__(d, height, width, base)
        self.encoder = BetaVAEEncoder(d, height, width, base, logvar_init)

    @classmethod
    def from_autoencoder(cls, ae: SphericalAutoencoder, logvar_init: float = -6.0) -> BetaVAE:
        """A beta-VAE whose mean head, trunk and decoder are copies of ``ae``'s."""
        vae = cls(**ae.hparams, logvar_init=logvar_init)
        missing, unexpected = vae.load_state_dict(ae.state_dict(), strict=False)
        assert not unexpected and set(missing) == {"encoder.logvar.weight", "encoder.logvar.bias"}, missing
        return vae

    def to_autoencoder(self) -> SphericalAutoencoder:
        """The deterministic autoencoder for inference and for saving: the ``logvar`` head dropped."""
        ae = SphericalAutoencoder(**self.hparams)
        ae.load_state_dict({k: v for k, v in self.state_dict().items() if not k.startswith("encoder.logvar.")})
        return ae.eval()


def kl_per_value(kl: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The batch-mean KL divided by the ``3 H W`` values of a frame, as it enters (V3)."""
    return kl.mean() / (3 * height * width)


class BetaVAEConfig(TrainConfig):
    """Hyper-parameters of :func:`train_beta_vae`: the data and schedule of :class:`TrainConfig`, plus the KL."""

    beta_kl: float = Field(0.01, ge=0, description="weight of the KL term per pixel value, (V3)")
    logvar_init: float = Field(-6.0, ge=LOGVAR_RANGE[0], le=LOGVAR_RANGE[1])


def train_beta_vae(images: Sequence[np.ndarray], cfg: BetaVAEConfig = BetaVAEConfig(),
                   init: SphericalAutoencoder | None = None,
                   progress: Callable[[int, dict], None] | None = None,
                   dist: DistContext | None = None) -> tuple[BetaVAE, list[dict]]:
    """Train a :class:`BetaVAE` with (V3) on random re-lit crops (as :func:`train_autoencoder`).

    ``init``: start from these autoencoder weights (their hyper-parameters win over ``cfg``'s).
    Returns the model (eval mode, on the CPU) and per-step ``{"loss", "mse", "kl"}`` (``kl``: nats per frame).
    ``dist``: the device and, under torchrun, this rank's slice of each global batch; the crops and the
    reparameterisation draws ``eps`` are made for the global batch (:mod:`semcom.training.distributed`).
    """
    dist = dist or DistContext()
    dev, part = dist.device, dist.shard(cfg.batch_size)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    data = _as_tensors(images)
    if init is not None:
        model = BetaVAE.from_autoencoder(init, cfg.logvar_init)
    else:
        model = BetaVAE(cfg.d, cfg.height, cfg.width, cfg.base, cfg.logvar_init)
    hp = model.hparams
    crop_cfg = cfg.model_copy(update={"height": hp["height"], "width": hp["width"]})
    model.to(dev).train().requires_grad_(True)
    net = dist.wrap(_SampledPass(model))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / cfg.steps)))
    log: list[dict] = []
    for step in range(cfg.steps):
        x = random_crops(data, cfg.batch_size, crop_cfg, gen)
        eps = torch.randn((cfg.batch_size, hp["d"]), generator=gen)
        x = x[part].to(dev)
        mse, kl = net(x, eps[part])
        loss = mse + cfg.beta_kl * kl_per_value(kl, hp["height"], hp["width"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        values = dist.mean([loss.detach(), mse.detach(), kl.detach().mean()]).tolist()
        log.append(dict(zip(("loss", "mse", "kl"), values)))
        if progress is not None and dist.is_main:
            progress(step, log[-1])
    return model.cpu().eval().requires_grad_(False), log


class _SampledPass(nn.Module):
    """One training pass of (V1)-(V3) as a module's forward (what DistributedDataParallel wraps): the MSE of the
    decoded sample and the per-frame KL, for frames ``x`` and their draws ``eps``."""

    def __init__(self, vae: BetaVAE):
        super().__init__()
        self.vae = vae

    def forward(self, x: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z, mean, logvar = self.vae.encoder.sample(x, eps=eps)
        return F.mse_loss(self.vae.decoder(z), x), kl_divergence(mean, logvar)
