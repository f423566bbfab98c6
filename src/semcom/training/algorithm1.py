"""Algorithm 1 of the Hopfield paper: joint training of encoder, decoder and tau under the Lagrangian (7).

A batch is ``B`` short clips of ``T`` frames. Each clip streams through a
memory of prototypes that starts empty (as every clip does on the link), with
the hard decisions of the link and a soft relaxation for the gradients:

* encode ``z_t = f_theta(x_t)``, ``||z_t|| = 1`` (Algorithm 1, line 5); with the
  beta-VAE encoder, a reparameterised sample (:mod:`semcom.training.beta_vae`);
* best prototype ``j* = argmax_j <z_t, mu_j>`` over the clip's memory
  ``M_{t-1}`` (eq. 1); prototypes are detached, so gradients reach ``z_t``
  through the score ``s_t = <z_t, mu_j*>`` only;
* soft hit (line 6, Section III-D)::

      H~_t = sigmoid(alpha (s_t - tau))          (0 while the memory is empty)

* soft reconstruction (line 7, eq. 2 relaxed), with a straight-through ``Q``::

      z^_t = normalize(H~_t mu_j* + (1 - H~_t) Q_ste(z_t)),  Q_ste(z) = z + sg[Q(z) - z]

* decode ``x^_t = g_phi(z^_t)`` (line 8); distortion ``D = mean_t MSE(x^_t, x_t)``;
* expected bits, eq. (3) with the relaxation and ``b_res = 0``, *normalised by*
  ``b_new = 8 d``::

      b~_t = (H~_t ceil(log2 M_{t-1}) + (1 - H~_t) 8 d) / (8 d)   in [0, 1]

* the Lagrangian (7) (line 9)::

      L = mean_t b~_t + lambda (D - D0)   [+ beta_kl KL / (3 H W) for the beta-VAE]

* Adam on (theta, phi) (lines 10-11); tau by a gradient step
  ``tau <- clip(tau - eta_tau dL/dtau, (eps, 1 - eps))`` or by a grid search
  once per epoch (line 12, ``tau_mode``);
* memory update with the hard decision (line 13): on a miss,
  ``H_t = 1{s_t >= tau} = 0``, store ``Q(z_t)`` (detached), as the link does:
  the receiver only ever has ``Q(z_t)``;
* once per epoch the dual step (8), :func:`dual_step`, on the epoch's mean
  distortion ``D_bar`` (line 15).

Bits are normalised by ``8 d`` because the raw bits per frame (up to 512 at
d = 64) and the MSE (about 1e-2) differ by four orders of magnitude: with the
normalisation the bit term lies in [0, 1] and ``lambda`` is "fractions of a
new latent per unit of MSE". Every choice the paper leaves open is listed in
``docs/training.md``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from semcom.errors import ConfigError
from semcom.models.autoencoder import SphericalAutoencoder
from semcom.sources import REGIMES, regime_clip
from semcom.training.beta_vae import BetaVAE, kl_divergence
from semcom.training.distributed import DistContext

#: The default tau grid of ``tau_mode="grid"``: denser near 1, where neighbouring frames' latents lie.
TAU_GRID = (0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.985, 0.99, 0.993, 0.995, 0.997, 0.998, 0.999)
#: ``D0`` by default: this many dB below the reference model's every-frame-a-miss PSNR on the probe clips
#: (the matched-fidelity target of ``semcom reproduce hopfield-table1``).
D0_BELOW_CEILING_DB = 0.5
TAU_EPS = 1e-4


class Algorithm1Config(BaseModel):
    """Hyper-parameters of :func:`train_algorithm1` (validated at the door)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # model (ignored when starting from ``init`` weights, whose hyper-parameters win)
    d: int = Field(64, ge=1, le=4096)
    height: int = Field(64, ge=16, le=1024)
    width: int = Field(64, ge=16, le=1024)
    base: int = Field(32, ge=4, le=256)
    encoder: Literal["autoencoder", "beta-vae"] = "autoencoder"
    beta_kl: float = Field(0.01, ge=0.0, description="KL weight per pixel value (beta-VAE encoder only)")
    # schedule
    epochs: int = Field(10, ge=1)
    steps_per_epoch: int = Field(40, ge=1)
    clips_per_batch: int = Field(4, ge=1)
    clip_frames: int = Field(16, ge=2, le=4096)
    lr: float = Field(3e-4, gt=0)
    seed: int = 0
    # the relaxation and the Lagrangian
    alpha: float = Field(100.0, gt=0, description="sharpness of the soft hit sigmoid(alpha (s - tau))")
    tau_init: float = Field(0.9, gt=0.0, lt=1.0)
    tau_mode: Literal["gradient", "grid"] = "gradient"
    eta_tau: float = Field(1e-3, ge=0.0)
    tau_grid: tuple[float, ...] = TAU_GRID
    lambda_init: float = Field(100.0, ge=0.0)
    eta_lambda: float = Field(3e4, ge=0.0)
    d0: float | None = Field(None, gt=0.0, description="target MSE D0; None: 0.5 dB below the reference ceiling")
    dual_distortion: Literal["relaxed", "hard"] = "relaxed"
    m_max: int = Field(256, ge=1)
    latent_bits: Literal[8] = 8
    # data
    source: Literal["regimes", "crops"] = "regimes"
    regimes: tuple[str, ...] = REGIMES
    train_seed: int = Field(1000, ge=1, description="first regime seed (evaluation uses seed 0)")
    pool_seeds: int = Field(3, ge=1, description="rendered clips per regime")
    pool_frames: int | None = Field(None, ge=2, description="frames per rendered clip (default per regime)")
    probe_clips: int = Field(32, ge=1, description="fixed clips for D0 and the tau grid search")
    min_crop: float = Field(0.12, gt=0, le=1)
    max_crop: float = Field(0.8, gt=0, le=1)

    @model_validator(mode="after")
    def _consistent(self):
        if self.height % 16 or self.width % 16:
            raise ValueError("height and width must be multiples of 16 (the autoencoder downsamples by 16)")
        unknown = [r for r in self.regimes if r not in REGIMES]
        if unknown or not self.regimes:
            raise ValueError(f"unknown regimes {unknown}; choose from {', '.join(REGIMES)}")
        if self.pool_frames is not None and self.pool_frames < self.clip_frames:
            raise ValueError(f"pool_frames={self.pool_frames} is shorter than clip_frames={self.clip_frames}")
        if not self.tau_grid or not all(0.0 < t < 1.0 for t in self.tau_grid):
            raise ValueError("tau_grid must hold values in (0, 1)")
        if self.min_crop > self.max_crop:
            raise ValueError(f"min_crop={self.min_crop} exceeds max_crop={self.max_crop}")
        return self


# --------------------------------------------------------------------------- the paper's pieces


def dual_step(lam: float, d_bar: float, d0: float, eta_lambda: float) -> float:
    """Eq. (8): ``lambda <- max(0, lambda + eta_lambda (D_bar - D0))``."""
    return max(0.0, lam + eta_lambda * (d_bar - d0))


def soft_hit(score: torch.Tensor, tau: torch.Tensor | float, alpha: float) -> torch.Tensor:
    """Section III-D's relaxation of eq. (6b): ``H~ = sigmoid(alpha (<z, mu_j*> - tau))``."""
    return torch.sigmoid(alpha * (score - tau))


def quantize_torch(z: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Eq. (2)'s ``Q(z)`` in torch (batched, same values as :func:`semcom.quantization.Q`): the uniform
    ``bits``-bit scalar quantiser on [-1, 1] followed by normalisation; no gradient."""
    levels = (1 << bits) - 1
    z64 = z.detach().to(torch.float64).clamp(-1.0, 1.0)
    deq = torch.round((z64 + 1.0) * 0.5 * levels) / levels * 2.0 - 1.0
    return F.normalize(deq, dim=-1).to(z.dtype)


def quantize_ste(z: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Straight-through ``Q``: the value of ``Q(z)``, the gradient of the identity."""
    return z + (quantize_torch(z, bits) - z).detach()


def index_bits_tensor(memory_size: torch.Tensor) -> torch.Tensor:
    """``ceil(log2 M)`` per element (0 for M <= 1), as :func:`semcom.metrics.bits.index_bits`."""
    m = memory_size.to(torch.float64).clamp_min(1.0)
    return torch.ceil(torch.log2(m)).to(torch.float32)


@dataclass
class RelaxedPass:
    """One batch through the relaxed system; tensors with gradients where the Lagrangian needs them."""

    soft_hits: torch.Tensor       # (B, T) H~_t
    hard_hits: torch.Tensor       # (B, T) bool, H_t = 1{s_t >= tau} with a non-empty memory
    scores: torch.Tensor          # (B, T) s_t (-inf while the memory is empty)
    bits_norm: torch.Tensor       # scalar, mean_t b~_t (eq. 3 relaxed, / 8d)
    bits_hard: torch.Tensor       # scalar, mean eq. (3) bits per frame with the hard decisions
    distortion: torch.Tensor      # scalar, MSE of the soft reconstruction
    distortion_hard: torch.Tensor  # scalar, MSE with the hard decisions (no gradient)
    kl: torch.Tensor              # scalar, mean KL per frame in nats (0 for the plain encoder)
    memory_size: torch.Tensor     # (B,) prototypes per clip at the end


def relaxed_pass(model: SphericalAutoencoder, x: torch.Tensor, tau: torch.Tensor | float, alpha: float,
                 m_max: int = 256, latent_bits: int = 8, sample: bool = True,
                 generator: torch.Generator | None = None, hard_distortion: bool = True,
                 eps: torch.Tensor | None = None) -> RelaxedPass:
    """Lines 5-8 of Algorithm 1 on clips ``x`` (B, T, 3, H, W) in [0, 1]; a fresh memory per clip. ``eps``: the
    beta-VAE's standard normal draws (B T, d) (default: drawn from ``generator``)."""
    b, t_len = x.shape[:2]
    dev = x.device
    tau_value = float(tau.detach()) if isinstance(tau, torch.Tensor) else float(tau)
    flat = x.flatten(0, 1)
    kl = x.new_zeros(())
    if isinstance(model, BetaVAE) and sample:
        z, mean, logvar = model.encoder.sample(flat, generator, eps)
        kl = kl_divergence(mean, logvar).mean()
    elif isinstance(model, BetaVAE):
        mean, logvar = model.encoder.moments(flat)
        z, kl = F.normalize(mean, dim=1), kl_divergence(mean, logvar).mean()
    else:
        z = model.encoder(flat)
    d = z.shape[-1]
    b_new = float(latent_bits * d)
    z = z.view(b, t_len, d)
    rows = torch.arange(b, device=dev)
    protos: list[torch.Tensor] = []   # per frame s: Q(z_s) (B, d), detached
    stored: list[torch.Tensor] = []   # per frame s: whether clip b stored it (B,)
    n = torch.zeros(b, dtype=torch.long, device=dev)
    soft_l, hard_l, score_l, bits_l, bits_hard_l, zhat_l, zhard_l = [], [], [], [], [], [], []
    for t in range(t_len):
        zt = z[:, t]
        qt = quantize_torch(zt, latent_bits)
        if protos:
            mem = torch.stack(protos, 1)                        # (B, t, d)
            s = torch.einsum("bjd,bd->bj", mem, zt).masked_fill(~torch.stack(stored, 1), float("-inf"))
            score, j = s.max(dim=1)
            has = n > 0
            proto = mem[rows, j]
        else:
            score = torch.full((b,), float("-inf"), device=dev)
            has = torch.zeros(b, dtype=torch.bool, device=dev)
            proto = torch.zeros_like(zt)
        safe = torch.where(has, score, torch.zeros_like(score))
        h_soft = torch.where(has, soft_hit(safe, tau, alpha), torch.zeros_like(safe))
        h_hard = has & (score.detach() >= tau_value)
        b_id = index_bits_tensor(n)
        bits_l.append((h_soft * b_id + (1.0 - h_soft) * b_new) / b_new)
        bits_hard_l.append(torch.where(h_hard, b_id, torch.full_like(b_id, b_new)))
        hs = h_soft[:, None]
        zhat_l.append(F.normalize(hs * proto + (1.0 - hs) * quantize_ste(zt, latent_bits), dim=-1))
        zhard_l.append(torch.where(h_hard[:, None], proto, qt))
        # line 13: the misses enter the memory (Q(z_t), as the receiver can rebuild it), up to m_max
        store = ~h_hard & (n < m_max)
        protos.append(qt)
        stored.append(store)
        n = n + store.long()
        soft_l.append(h_soft)
        hard_l.append(h_hard)
        score_l.append(score.detach())
    zhat = torch.stack(zhat_l, 1).flatten(0, 1)
    distortion = F.mse_loss(model.decoder(zhat), flat)
    if hard_distortion:
        with torch.no_grad():
            distortion_hard = F.mse_loss(model.decoder(torch.stack(zhard_l, 1).flatten(0, 1)), flat)
    else:
        distortion_hard = torch.tensor(float("nan"), device=dev)
    return RelaxedPass(torch.stack(soft_l, 1), torch.stack(hard_l, 1), torch.stack(score_l, 1),
                       torch.stack(bits_l, 1).mean(), torch.stack(bits_hard_l, 1).mean(), distortion,
                       distortion_hard, kl, n)


def lagrangian(p: RelaxedPass, lam: float, d0: float, beta_kl: float = 0.0,
               height: int = 64, width: int = 64) -> torch.Tensor:
    """Eq. (7) with normalised bits: ``mean b~ + lambda (D - D0)`` (+ the beta-VAE's KL term, (V3))."""
    loss = p.bits_norm + lam * (p.distortion - d0)
    if beta_kl:
        loss = loss + beta_kl * p.kl / (3 * height * width)
    return loss


# --------------------------------------------------------------------------- training clips


class ClipSampler:
    """Random training clips (B, T, 3, H, W) in [0, 1].

    ``regimes``: windows of ``T`` frames from the eight content regimes rendered with seeds
    ``train_seed .. train_seed + pool_seeds - 1`` (evaluation renders seed 0).
    ``crops``: a crop of a random photo drifting at a random velocity (0-3 output pixels per frame)
    with a gain ramp, rendered per batch (works on any images, e.g. ``semcom train --images``).
    """

    def __init__(self, cfg: Algorithm1Config, height: int, width: int, images: Sequence[np.ndarray] = ()):
        self.cfg, self.height, self.width = cfg, height, width
        if cfg.source == "regimes":
            self.pool = [regime_clip(r, seed=cfg.train_seed + k, frames=cfg.pool_frames, height=height, width=width)
                         for r in cfg.regimes for k in range(cfg.pool_seeds)]
            short = [len(c) for c in self.pool if len(c) < cfg.clip_frames]
            if short:
                raise ConfigError(f"clip_frames={cfg.clip_frames} exceeds a rendered clip of {min(short)} frames")
        else:
            if not images:
                raise ConfigError("source='crops' needs images")
            self.images = [torch.from_numpy(np.array(im, copy=True)).permute(2, 0, 1).float().div(255.0)
                           for im in images]

    def sample(self, n: int, gen: torch.Generator) -> torch.Tensor:
        if self.cfg.source == "regimes":
            t = self.cfg.clip_frames
            out = []
            for _ in range(n):
                clip = self.pool[int(torch.randint(len(self.pool), (1,), generator=gen))]
                s = int(torch.randint(len(clip) - t + 1, (1,), generator=gen))
                out.append(torch.from_numpy(clip[s : s + t]).permute(0, 3, 1, 2).float().div(255.0))
            return torch.stack(out)
        return torch.stack([self._drifting_crop(gen) for _ in range(n)])

    def _drifting_crop(self, gen: torch.Generator) -> torch.Tensor:
        cfg, h_out, w_out, t = self.cfg, self.height, self.width, self.cfg.clip_frames
        im = self.images[int(torch.randint(len(self.images), (1,), generator=gen))]
        u = torch.rand(8, generator=gen)
        _, h, w = im.shape
        frac = cfg.min_crop + (cfg.max_crop - cfg.min_crop) * float(u[0])
        ch = max(8, int(min(h, w) * frac))
        cw = min(w, max(8, int(ch * w_out / h_out)))
        scale = h_out / ch                                    # output pixels per photo pixel
        speed = 3.0 * float(u[1]) / scale                      # photo pixels per frame
        angle = 2 * math.pi * float(u[2])
        vx, vy = speed * math.cos(angle), speed * math.sin(angle)
        span_x, span_y = abs(vx) * (t - 1), abs(vy) * (t - 1)
        rw, rh = min(w, int(cw + span_x) + 2), min(h, int(ch + span_y) + 2)
        x0 = int(float(u[3]) * (w - rw + 1))
        y0 = int(float(u[4]) * (h - rh + 1))
        region = im[:, y0 : y0 + rh, x0 : x0 + rw].unsqueeze(0)
        big = (max(h_out, round(rh * scale)), max(w_out, round(rw * scale)))
        region = F.interpolate(region, size=big, mode="bilinear", antialias=True, align_corners=False)
        # per-frame window origin in the resampled region (output pixels), moving at (vx, vy) * scale
        room_x, room_y = big[1] - w_out, big[0] - h_out
        sx = 0.0 if vx >= 0 else room_x
        sy = 0.0 if vy >= 0 else room_y
        steps = torch.arange(t, dtype=torch.float32)
        ox = (sx + vx * scale * steps).clamp(0, room_x)
        oy = (sy + vy * scale * steps).clamp(0, room_y)
        ys = torch.arange(h_out, dtype=torch.float32)
        xs = torch.arange(w_out, dtype=torch.float32)
        gx = (xs[None, None, :] + ox[:, None, None]) / max(big[1] - 1, 1) * 2 - 1
        gy = (ys[None, :, None] + oy[:, None, None]) / max(big[0] - 1, 1) * 2 - 1
        grid = torch.stack(torch.broadcast_tensors(gx, gy), -1)           # (T, H, W, 2)
        frames = F.grid_sample(region.expand(t, -1, -1, -1), grid, mode="bilinear", align_corners=True)
        g0, g1 = 0.6 + 0.8 * float(u[5]), 0.6 + 0.8 * float(u[6])
        gain = torch.linspace(g0, g1, t).view(t, 1, 1, 1)
        noise = torch.randn(frames.shape, generator=gen) / 255.0
        return torch.round(((frames * gain).clamp(0, 1) + noise).clamp(0, 1) * 255.0) / 255.0


# --------------------------------------------------------------------------- the loop


@dataclass
class Algorithm1Result:
    """The trained model (eval mode), the learned tau, D0, and the per-epoch trajectories."""

    model: SphericalAutoencoder
    tau: float
    lam: float
    d0: float
    history: list[dict]

    def export(self) -> SphericalAutoencoder:
        """The deterministic autoencoder to save and stream with (the beta-VAE's mean head)."""
        return self.model.to_autoencoder() if isinstance(self.model, BetaVAE) else self.model


def ceiling_mse(model: SphericalAutoencoder, clips: torch.Tensor) -> float:
    """MSE when every frame is a miss (decoded from ``Q(z)``): the best the link can do."""
    flat = clips.flatten(0, 1)
    with torch.no_grad():
        return float(F.mse_loss(model.decoder(quantize_torch(model.encoder(flat))), flat))


def default_d0(reference: SphericalAutoencoder, probe: torch.Tensor) -> float:
    """``D0``: ``D0_BELOW_CEILING_DB`` dB below the reference model's ceiling PSNR on the probe clips."""
    return ceiling_mse(reference, probe) * 10 ** (D0_BELOW_CEILING_DB / 10)


def grid_search_tau(model: SphericalAutoencoder, probe: torch.Tensor, cfg: Algorithm1Config, lam: float,
                    d0: float) -> tuple[float, list[float]]:
    """Line 12's alternative: the tau of ``cfg.tau_grid`` that minimises L on the probe clips."""
    values = []
    with torch.no_grad():
        for tau in cfg.tau_grid:
            p = relaxed_pass(model, probe, tau, cfg.alpha, cfg.m_max, cfg.latent_bits, sample=False,
                             hard_distortion=False)
            values.append(float(lagrangian(p, lam, d0, cfg.beta_kl if cfg.encoder == "beta-vae" else 0.0,
                                           model.hparams["height"], model.hparams["width"])))
    return float(cfg.tau_grid[int(np.argmin(values))]), values


def build_model(cfg: Algorithm1Config, init: SphericalAutoencoder | None) -> SphericalAutoencoder:
    if init is not None:
        hp = init.hparams
        if cfg.encoder == "beta-vae":
            model = BetaVAE.from_autoencoder(init)
        else:
            model = SphericalAutoencoder(**hp)
            model.load_state_dict(init.state_dict())
    elif cfg.encoder == "beta-vae":
        model = BetaVAE(cfg.d, cfg.height, cfg.width, cfg.base)
    else:
        model = SphericalAutoencoder(cfg.d, cfg.height, cfg.width, cfg.base)
    return model.train().requires_grad_(True)


def train_algorithm1(cfg: Algorithm1Config = Algorithm1Config(), init: SphericalAutoencoder | None = None,
                     images: Sequence[np.ndarray] = (), reference: SphericalAutoencoder | None = None,
                     progress: Callable[[int, int, dict], None] | None = None,
                     dist: DistContext | None = None) -> Algorithm1Result:
    """Algorithm 1: (theta, phi) by Adam, tau by gradient or grid, lambda by (8) once per epoch.

    ``init``: weights to start from (a fine-tuning stage; their hyper-parameters win over ``cfg``'s).
    ``reference``: the model whose ceiling sets the default ``D0`` (default ``init``); needed when
    ``cfg.d0`` is None. ``images``: photos for ``source="crops"``.
    ``progress(epoch, step, stats)`` is called after every step (on rank 0).

    ``dist`` (:mod:`semcom.training.distributed`): the device and, under torchrun, this rank's clips of each
    global batch of ``clips_per_batch``. Each clip streams through its own memory and every term of (7) is a mean
    over clips of equal length, so the ranks' averaged gradients (DDP for the weights, :meth:`DistContext.mean_grad`
    for ``tau``) are the single-process ones; the epoch means of the dual step (8) and the hit counts are averaged
    over the ranks too, so every rank takes the same ``lambda`` and ``tau`` steps. The grid search and ``D0`` use
    the same probe clips and the same weights on every rank. The model comes back on the CPU.
    """
    dist = dist or DistContext()
    dev, part = dist.device, dist.shard(cfg.clips_per_batch)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = build_model(cfg, init).to(dev)
    net = dist.wrap(_RelaxedStep(model, cfg))
    hp = model.hparams
    sampler = ClipSampler(cfg, hp["height"], hp["width"], images)
    probe = sampler.sample(cfg.probe_clips, torch.Generator().manual_seed(cfg.seed + 1)).to(dev)
    if cfg.d0 is not None:
        d0 = cfg.d0
    else:
        reference = reference if reference is not None else init
        if reference is None:
            raise ConfigError("d0 is needed when training from scratch (pass --d0, or --init weights)")
        d0 = default_d0(reference, probe.cpu())
    beta_kl = cfg.beta_kl if cfg.encoder == "beta-vae" else 0.0
    tau = torch.tensor(float(cfg.tau_init), dtype=torch.float64, requires_grad=cfg.tau_mode == "gradient")
    lam = float(cfg.lambda_init)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    total = cfg.epochs * cfg.steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    history: list[dict] = []
    for epoch in range(cfg.epochs):
        acc = {k: 0.0 for k in ("loss", "distortion", "distortion_hard", "bits_norm", "bits_hard", "kl")}
        hits = frames = 0
        for step in range(cfg.steps_per_epoch):
            x = sampler.sample(cfg.clips_per_batch, gen)
            eps = None
            if isinstance(model, BetaVAE):  # the draws of the global batch, clip-major as relaxed_pass flattens
                eps = torch.randn((cfg.clips_per_batch, x.shape[1], hp["d"]), generator=gen)[part].flatten(0, 1)
            p = net(x[part].to(dev), tau, eps)
            loss = lagrangian(p, lam, d0, beta_kl, hp["height"], hp["width"])
            opt.zero_grad(set_to_none=True)
            tau.grad = None
            loss.backward()
            dist.mean_grad(tau)
            opt.step()
            sched.step()
            if cfg.tau_mode == "gradient" and tau.grad is not None:
                with torch.no_grad():
                    tau -= cfg.eta_tau * tau.grad
                    tau.clamp_(TAU_EPS, 1.0 - TAU_EPS)
            values = dist.mean([loss.detach(), p.distortion.detach(), p.distortion_hard, p.bits_norm.detach(),
                                p.bits_hard, p.kl.detach(), p.hard_hits.sum()]).tolist()
            stats = dict(zip(("loss", "distortion", "distortion_hard", "bits_norm", "bits_hard", "kl"), values))
            for k, v in stats.items():
                acc[k] += v
            hits += round(values[-1] * dist.world_size)
            frames += p.hard_hits.numel() * dist.world_size
            if progress is not None and dist.is_main:
                progress(epoch, step, stats | {"tau": float(tau.detach()), "lambda": lam})
        mean = {k: v / cfg.steps_per_epoch for k, v in acc.items()}
        grid = None
        if cfg.tau_mode == "grid":
            model.eval()
            best, grid = grid_search_tau(model, probe, cfg, lam, d0)
            model.train()
            with torch.no_grad():
                tau.fill_(best)
        d_bar = mean["distortion"] if cfg.dual_distortion == "relaxed" else mean["distortion_hard"]
        lam_next = dual_step(lam, d_bar, d0, cfg.eta_lambda)
        b_new = cfg.latent_bits * hp["d"]
        history.append({
            "epoch": epoch + 1, "lambda": lam, "lambda_next": lam_next, "d_bar": d_bar, "d0": d0,
            "distortion": mean["distortion"], "distortion_hard": mean["distortion_hard"],
            "psnr_hard_db": float(10 * np.log10(1.0 / max(mean["distortion_hard"], 1e-12))),
            "bits_norm": mean["bits_norm"], "bits_per_frame_expected": mean["bits_norm"] * b_new,
            "bits_per_frame": mean["bits_hard"], "tau": float(tau.detach()), "hit_rate": hits / frames,
            "loss": mean["loss"], "kl": mean["kl"], "tau_grid_loss": grid,
        })
        lam = lam_next
    return Algorithm1Result(model.cpu().eval().requires_grad_(False), float(tau.detach()), lam, d0, history)


class _RelaxedStep(nn.Module):
    """:func:`relaxed_pass` in training (sampling) mode as a module's forward, what DistributedDataParallel wraps;
    its parameters are the model's."""

    def __init__(self, model: SphericalAutoencoder, cfg: Algorithm1Config):
        super().__init__()
        self.model, self.cfg = model, cfg

    def forward(self, x: torch.Tensor, tau: torch.Tensor, eps: torch.Tensor | None) -> RelaxedPass:
        cfg = self.cfg
        return relaxed_pass(self.model, x, tau, cfg.alpha, cfg.m_max, cfg.latent_bits, sample=True, eps=eps)


# --------------------------------------------------------------------------- the run's record


def write_trajectories(result: Algorithm1Result, out_dir: str | Path, config: dict | None = None) -> dict[str, Path]:
    """``trajectories.json`` (every per-epoch number) and ``trajectories.png`` (lambda, D, bits, tau)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"config": config, "d0": result.d0, "tau": result.tau, "lambda": result.lam, "epochs": result.history}
    js = out / "trajectories.json"
    js.write_text(json.dumps(doc, indent=2))
    return {"json": js, "png": plot_trajectories(result.history, out / "trajectories.png")}


def plot_trajectories(history: list[dict], path: str | Path) -> Path:
    """Four panels against epoch: lambda (eq. 8), distortion (with D0), bits per frame, tau (and hit rate)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, axes = plt.subplots(2, 2, figsize=(9, 6))
    ax = axes[0, 0]
    ax.plot([0, *ep], [history[0]["lambda"], *[h["lambda_next"] for h in history]], "o-", color="#9467bd")
    ax.set_title("lambda (dual step, eq. 8)")
    ax = axes[0, 1]
    ax.plot(ep, [h["distortion"] for h in history], "o-", label="D (relaxed)")
    ax.plot(ep, [h["distortion_hard"] for h in history], "s--", label="D (hard decisions)")
    ax.axhline(history[0]["d0"], color="black", lw=0.8, ls=":", label="D0")
    ax.set_title("distortion (MSE)")
    ax.legend(fontsize=8)
    ax = axes[1, 0]
    ax.plot(ep, [h["bits_per_frame_expected"] for h in history], "o-", label="expected (relaxed eq. 3)")
    ax.plot(ep, [h["bits_per_frame"] for h in history], "s--", label="eq. 3, hard decisions")
    ax.set_title("bits per frame")
    ax.legend(fontsize=8)
    ax = axes[1, 1]
    ax.plot(ep, [h["tau"] for h in history], "o-", color="#d62728", label="tau")
    ax.set_title("tau and hit rate")
    ax.set_ylabel("tau")
    ax2 = ax.twinx()
    ax2.plot(ep, [h["hit_rate"] for h in history], "s--", color="#2ca02c", label="hit rate")
    ax2.set_ylabel("hit rate")
    ax.legend(handles=ax.get_lines() + ax2.get_lines(), fontsize=8, loc="best")
    for a in axes.flat:
        a.set_xlabel("epoch")
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def save_trained(model: SphericalAutoencoder, path: str | Path, **metadata: str) -> Path:
    """:func:`semcom.models.save_autoencoder` plus provenance metadata (``kind``, ``algorithm``, ``tau``),
    which :func:`load_autoencoder` ignores."""
    from semcom.models import save_autoencoder

    return save_autoencoder(model, path, **metadata)
