"""A small CPU training loop for the robust masked VQ-VAE and its JSCC anchor, for ``semcom train`` to call.

:func:`train_masked_vqvae` trains every part at once on the loss of :mod:`semcom.robust.losses` (task heads,
eq. (12)'s codebook and commitment terms, the orthogonality term, the FIM's eq. (15) and optionally eq. (17)): the
single-stage form of the paper's Algorithm 3, whose steps 3-5 (masking, codebook with eq. (12), FIM with (16)+(17))
here share one optimiser step. Step 2, adversarial training (Algorithm 2), plugs in through ``perturb``: a function
``perturb(classifier, images, labels) -> noisy images`` (e.g. the iterative FGSM of eq. (7) from
``semcom.attacks``) applied to every batch; the semantic noise it adds also feeds the noise-aware masking
statistics (:meth:`semcom.robust.masking.PatchMasking.update`). Weight perturbation (eq. 10b) belongs to the
attacks package's trainer.

Seeded: the same config, data, steps and seed give the same weights (on one thread; CPU kernels may reorder sums
across thread counts).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from semcom.errors import ConfigError
from semcom.robust.config import RobustConfig, robust_config
from semcom.robust.losses import robust_loss
from semcom.robust.model import MaskedVQVAE, ViTJSCC, awgn_channel, build_model

__all__ = ["TrainResult", "accuracy", "recall_at_1", "train_masked_vqvae"]

Perturb = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class TrainResult:
    """The trained ``model`` (eval mode), the ``history`` of logged loss terms (one dict per logged step, with
    ``step``), and ``seconds`` of wall time."""

    model: MaskedVQVAE | ViTJSCC
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def _as_images(images, config: RobustConfig) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if not x.is_floating_point():
        raise ConfigError(f"invalid images: expected floats in [0, 1], got {x.dtype}")
    x = x.float()
    shape = (config.channels, config.height, config.width)
    if x.dim() != 4 or tuple(x.shape[1:]) != shape or x.shape[0] < 1:
        raise ConfigError(f"invalid images: expected [N, {shape[0]}, {shape[1]}, {shape[2]}], got {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()) or float(x.min()) < 0.0 or float(x.max()) > 1.0:
        raise ConfigError("invalid images: values must be finite and in [0, 1]")
    return x


def _as_labels(labels, n: int, config: RobustConfig) -> torch.Tensor | None:
    if labels is None:
        return None
    y = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels)
    if y.is_floating_point() or y.dim() != 1 or y.shape[0] != n:
        raise ConfigError(f"invalid labels: expected {n} integer labels, got {y.dtype} {tuple(y.shape)}")
    y = y.long()
    if int(y.min()) < 0 or int(y.max()) >= config.n_classes:
        raise ConfigError(f"invalid labels: must be in 0..{config.n_classes - 1} (config.n_classes)")
    return y


def _noise_map(model: MaskedVQVAE | ViTJSCC, x: torch.Tensor, x_noisy: torch.Tensor, y: torch.Tensor,
               snr: float) -> torch.Tensor:
    """What the noise-aware masking statistics are fed for one noisy batch (``config.noise_statistic``): the
    perturbation ``s' - s``, or the magnitude of the loss gradient at ``s'`` with **every** patch kept (a masked
    patch has no gradient, so gradients under masking would bias the statistics against the patches already masked
    most), each sample normalised to sum 1 so that every sample weighs the same."""
    if model.config.noise_statistic == "perturbation" or "classification" not in model.config.tasks:
        return x_noisy - x
    xg = x_noisy.clone().requires_grad_(True)
    every = torch.arange(model.config.num_patches)
    loss = torch.nn.functional.cross_entropy(model(xg, snr_db=snr, keep=every).logits, y)
    (grad,) = torch.autograd.grad(loss, xg)
    g = grad.abs()
    return g / g.flatten(1).sum(dim=1).clamp_min(1e-30).reshape(-1, 1, 1, 1)


def train_masked_vqvae(config: RobustConfig | dict, images, labels=None, steps: int = 300, seed: int = 0, *,
                       batch_size: int = 64, lr: float = 2e-3, snr_db: float | tuple[float, float] | None = None,
                       channel: Callable[[float], Callable] | None = None, perturb: Perturb | None = None,
                       log_every: int = 50) -> TrainResult:
    """Train the model ``config`` describes (a :class:`RobustConfig` or a dict of its fields) for ``steps`` AdamW
    steps on ``images`` (``[N, C, H, W]`` floats in [0, 1]) and ``labels`` (``[N]`` ints; needed for the
    classification and retrieval heads and the FIM), minibatches of ``batch_size`` drawn without replacement
    epoch by epoch, learning rate ``lr`` with a cosine decay, seeded by ``seed``.

    ``snr_db`` is the training SNR fed to the FIM and to ``channel``: a number (default ``config.train_snr_db``,
    3 dB in the paper) or a ``(low, high)`` range drawn uniformly per batch, so the FIM can learn how the SNR
    matters. ``channel(snr_db)`` returns the channel of a batch (an index channel for the masked VQ-VAE, a latent
    channel for the JSCC); by default the masked VQ-VAE trains on the noiseless index link and the JSCC on AWGN at
    ``snr_db``. ``perturb`` turns a batch into its semantically noisy version (adversarial training)."""
    if isinstance(config, dict):
        config = robust_config(**config)
    for name, v, lo in (("steps", steps, 1), ("batch_size", batch_size, 1), ("log_every", log_every, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ConfigError(f"invalid {name}={v!r}: must be a positive integer")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (math.isfinite(lr) and lr > 0):
        raise ConfigError(f"invalid lr={lr!r}: must be a positive number")
    x_all = _as_images(images, config)
    y_all = _as_labels(labels, x_all.shape[0], config)
    if snr_db is None:
        snr_db = config.train_snr_db
    snr_range = tuple(float(v) for v in snr_db) if isinstance(snr_db, (tuple, list)) else (float(snr_db),) * 2
    if len(snr_range) != 2 or not all(math.isfinite(v) for v in snr_range) or snr_range[0] > snr_range[1]:
        raise ConfigError(f"invalid snr_db={snr_db!r}: a finite number or a (low, high) range")

    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        model = build_model(config)
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / max(1, steps // 20)) * 0.5 * (1 + math.cos(math.pi * s / steps)))
        n = x_all.shape[0]
        order, cursor = torch.randperm(n, generator=gen), 0
        history: list[dict[str, float]] = []
        for step in range(steps):
            if cursor + batch_size > n:
                order, cursor = torch.randperm(n, generator=gen), 0
            sel = order[cursor:cursor + batch_size]
            cursor += batch_size
            x = x_all[sel]
            y = None if y_all is None else y_all[sel]
            snr = snr_range[0] + (snr_range[1] - snr_range[0]) * float(torch.rand((), generator=gen))
            if perturb is not None:
                if y is None:
                    raise ConfigError("adversarial training (perturb) needs labels")
                x_noisy = perturb(model.classifier(snr), x, y).detach()
                model.masking.update(_noise_map(model, x, x_noisy, y, snr))
                x = x_noisy
            if channel is not None:
                ch = channel(snr)
            elif isinstance(model, ViTJSCC):
                ch = awgn_channel(snr, gen)
            else:
                ch = None
            out = model(x, snr_db=snr, channel=ch)
            loss, terms = robust_loss(out, x, y, config)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            if step % log_every == 0 or step == steps - 1:
                logged = {k: float(v.detach()) for k, v in terms.items()}
                history.append({"step": step, "loss": float(loss.detach())} | logged)
    model.eval()
    return TrainResult(model, history, time.perf_counter() - t0)


@torch.no_grad()
def accuracy(model: MaskedVQVAE | ViTJSCC, images, labels, snr_db=None, channel=None,
             batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` (put in eval mode) on ``images`` and ``labels``."""
    model.eval()
    x = _as_images(images, model.config)
    y = _as_labels(labels, x.shape[0], model.config)
    correct = 0
    for i in range(0, x.shape[0], batch_size):
        logits = model.logits(x[i:i + batch_size], snr_db, channel)
        correct += int((logits.argmax(dim=1) == y[i:i + batch_size]).sum())
    return correct / x.shape[0]


def recall_at_1(embeddings: torch.Tensor, labels: torch.Tensor) -> float:
    """Recall@1 (Fig. 11a): the fraction of queries whose nearest other embedding (cosine) has their label."""
    e = torch.nn.functional.normalize(torch.as_tensor(embeddings).float(), dim=1)
    labels = torch.as_tensor(labels)
    if e.shape[0] < 2 or labels.shape != (e.shape[0],):
        raise ConfigError("invalid embeddings: need at least two, with one label each")
    sim = e @ e.transpose(0, 1)
    sim.fill_diagonal_(float("-inf"))
    return float((labels[sim.argmax(dim=1)] == labels).float().mean())
