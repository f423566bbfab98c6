"""Training of the grounded codebook paper's VQ-VAE (:mod:`semcom.models.vqvae`), issue 10 item 5.

The loss is eq. (25): the reconstruction term (24) of :class:`semcom.training.vqvae_loss.VQVAELoss` (pixel MSE
and ``1 - MS-SSIM``, plus the VGG16 Gram term when the user gives a local VGG16 file) plus the codebook loss
(23) of the variant. Data are crops of :data:`~semcom.sources.photos.TRAIN_PHOTOS` (or of ``--images``), with the
colour and geometric augmentation of the codec trainer (:mod:`semcom.training.codec`); validation is on fixed
views of :data:`~semcom.sources.photos.VALIDATION_PHOTOS`, photos the training never sees.

Adam with a linear warm-up and a cosine decay; the codebook is initialised by k-means on the first batch (the
library's ``kmeans_init``), and a dead codeword is reset to an encoder output of the current batch.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from semcom.errors import ConfigError
from semcom.models.vqvae import DEFAULT_P, VARIANT_PATTERN, CodebookVQVAE
from semcom.quantization.codebook import J_MAX, J_MIN
from semcom.training.codec import PAD, colour_augment, geometric_augment, training_data, warmup_cosine
from semcom.training.distributed import DistContext
from semcom.training.vqvae_loss import VQVAELoss

__all__ = ["NOT_DISTRIBUTED", "VQVAETrainConfig", "evaluate_vqvae", "train_vqvae", "save_vqvae"]

#: Why the codebook trainer refuses torchrun: its losses and updates are statistics of the whole batch, not means
#: of per-frame terms, so slices of a batch on several processes cannot add up to the one-process step.
NOT_DISTRIBUTED = ("the k-means initialisation, the dead-code reset and the index entropy of eq. (11) are "
                   "statistics of the whole batch")


class VQVAETrainConfig(BaseModel):
    """Hyper-parameters of :func:`train_vqvae` (model size, variant, loss weights, optimiser, data)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    variant: str = Field("proposed", pattern=VARIANT_PATTERN)
    J: int = Field(256, ge=J_MIN, le=J_MAX)
    n: int = Field(64, ge=8, le=512)
    d: int = Field(32, ge=1, le=512)
    p: float = Field(DEFAULT_P, ge=0.0, le=0.5)
    lambda_h: float | None = Field(None, ge=0.0)
    lambda_ch: float | None = Field(None, ge=0.0)
    beta: float = Field(0.25, ge=0.0)
    temperature: float = Field(0.01, gt=0.0)
    mse_weight: float = Field(1.0, ge=0.0)
    ms_ssim_weight: float = Field(0.1, ge=0.0)
    perceptual_weight: float = Field(1.0, ge=0.0)
    size: int = Field(64, ge=16, le=512, multiple_of=8)
    steps: int = Field(3000, ge=1)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(5e-4, gt=0)
    seed: int = Field(0, ge=0)
    pool: int = Field(8000, ge=16)


def _model(cfg: VQVAETrainConfig) -> CodebookVQVAE:
    return CodebookVQVAE(cfg.n, cfg.d, cfg.J, cfg.variant, lambda_h=cfg.lambda_h, lambda_ch=cfg.lambda_ch, p=cfg.p,
                         beta=cfg.beta, temperature=cfg.temperature, height=cfg.size, width=cfg.size)


@torch.no_grad()
def evaluate_vqvae(model: CodebookVQVAE, frames: torch.Tensor) -> dict:
    """Error-free PSNR (dB, mean over frames) of ``frames`` through the indices, with the codebook's
    ``index_entropy_bits`` and ``used_codewords`` on them."""
    idx = model.indices(frames)
    x_hat = model.decode_indices(idx)
    mse = (x_hat - frames).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return {"psnr_db": float((10 * torch.log10(1 / mse)).mean())} | model.usage(idx)


def train_vqvae(images: Sequence[np.ndarray], cfg: VQVAETrainConfig = VQVAETrainConfig(),
                validation: Sequence[np.ndarray] = (), vgg16_weights: str | Path | None = None,
                progress: Callable[[int, dict], None] | None = None,
                checkpoint: Callable[[CodebookVQVAE, int, list], None] | None = None,
                checkpoint_every: int = 500, dist: DistContext | None = None) -> tuple[CodebookVQVAE, list[dict]]:
    """Train one variant; returns ``(model, log)``. ``log`` has one record per step (the loss terms of eqs.
    (23)-(25)) and, every ``checkpoint_every`` steps and at the end, a ``validation`` record
    (:func:`evaluate_vqvae` on the held-out photos); ``checkpoint(model, step, log)`` is called then too.

    ``dist``: the device (the model comes back on the CPU). This trainer runs on one process only
    (:data:`NOT_DISTRIBUTED` says why)."""
    dist = dist or DistContext()
    if dist.enabled:
        raise ConfigError(f"--algorithm codebook cannot train on {dist.world_size} processes ({NOT_DISTRIBUTED}); "
                          "run it as one process")
    dev = dist.device
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    pool, donors, val = training_data(images, validation, min(cfg.pool, cfg.steps * cfg.batch_size), cfg.size, gen)
    model = _model(cfg).to(dev)
    loss_fn = VQVAELoss(mse_weight=cfg.mse_weight, ms_ssim_weight=cfg.ms_ssim_weight,
                        perceptual_weight=cfg.perceptual_weight, vgg16_weights=vgg16_weights).to(dev)
    val = val.to(dev) if val is not None else None
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = warmup_cosine(opt, cfg.steps, 200)
    log: list[dict] = []
    model.train()
    t0 = time.perf_counter()
    for step in range(cfg.steps):
        crops = pool[torch.randint(len(pool), (cfg.batch_size,), generator=gen)].float().div(255.0)
        crops = geometric_augment(colour_augment(crops, donors, gen), gen)
        x = crops[:, :, PAD:PAD + cfg.size, PAD:PAD + cfg.size].contiguous().to(dev)
        out = model(x)
        loss = loss_fn(out, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        rec = {"step": step, **{k: round(v, 6) for k, v in loss_fn.last.items()},
               "seconds": round(time.perf_counter() - t0, 1)}
        last = step + 1 == cfg.steps
        if val is not None and ((step + 1) % checkpoint_every == 0 or last):
            model.eval()
            rec["validation"] = evaluate_vqvae(model, val)
            model.train()
        log.append(rec)
        if progress is not None:
            progress(step, rec)
        if checkpoint is not None and ((step + 1) % checkpoint_every == 0 or last):
            checkpoint(model, step + 1, log)
    return model.cpu().eval().requires_grad_(False), log


def save_vqvae(model: CodebookVQVAE, path: str | Path, cfg: VQVAETrainConfig, train_photos: Sequence[str],
               validation_photos: Sequence[str], log: Sequence[dict] = (), perceptual: bool = False) -> Path:
    """Save the weights (float16 safetensors; the codebook in float32, so that both ends quantise and look up
    the same codewords) with their provenance: the training config, the photo split, the training time, the
    reconstruction term used and the last validation record."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for k, v in model.state_dict().items():
        keep = k.startswith("vq.") or not v.is_floating_point()
        v = v.detach().cpu()
        tensors[k] = v.contiguous() if keep else v.to(torch.float16).contiguous()
    validation = next((r["validation"] for r in reversed(log) if "validation" in r), None)
    meta = {"kind": "codebook-vqvae", "hparams": json.dumps(model.hparams), "config": json.dumps(cfg.model_dump()),
            "train_photos": ",".join(train_photos), "validation_photos": ",".join(validation_photos),
            "steps": str(len(log)), "train_seconds": str(log[-1]["seconds"] if log else None),
            "reconstruction": "mse+ms-ssim+vgg16-gram" if perceptual else "mse+ms-ssim (no VGG16 weights given)",
            "validation": json.dumps(validation)}
    save_file(tensors, str(path), metadata=meta)
    return path
