"""Training of the learned codecs of the zoo (:mod:`semcom.models.hyperprior`) on photos split by photo.

The loss is CompressAI's rate–distortion Lagrangian per image, ``R / (H W) + lambda_q * 255^2 * MSE``
(bits per pixel plus weighted distortion), with the quality ``q`` drawn per image so that the gain
units of one model learn every quality level. A fraction ``inter_fraction`` of each batch is coded
*conditionally*: the reference is the rounded latent of a second view of the same crop, moved by a
few pixels and re-lit, as consecutive frames and memory prototypes are; the rest is intra.

Data: crops of :data:`~semcom.sources.photos.TRAIN_PHOTOS` (none of them used by a content regime) at
scales drawn log-uniformly from native resolution to the whole photo, flipped and rotated, with colour
augmentation (chroma of a random colour photo given to grey ones, hue rotation, saturation, gain and
gamma). Validation is on fixed views of :data:`~semcom.sources.photos.VALIDATION_PHOTOS`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from semcom.models.hyperprior import DEFAULT_LAMBDAS, SpatialHyperprior
from semcom.training.distributed import DistContext

PAD = 8  # pixels of margin around a training crop, for the moved reference view


class CodecTrainConfig(BaseModel):
    """Hyper-parameters of :func:`train_codec`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n: int = Field(96, ge=8, le=512)
    c: int = Field(64, ge=4, le=512)
    cz: int = Field(32, ge=4, le=512)
    lambdas: tuple[float, ...] = DEFAULT_LAMBDAS
    size: int = Field(64, ge=16, le=512)
    steps: int = Field(12000, ge=1)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(5e-4, gt=0)
    seed: int = 0
    pool: int = Field(12000, ge=16)
    inter_fraction: float = Field(0.5, ge=0.0, le=1.0)
    max_shift: int = Field(6, ge=0, le=PAD)


def _as_float(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(img, copy=True)).permute(2, 0, 1).float().div(255.0)


def crop_pool(images: Sequence[np.ndarray], n: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` random crops of side ``size + 2 PAD`` (uint8), each from a window whose side is drawn
    log-uniformly between the output side (native resolution) and the photo's shorter side."""
    data = [_as_float(im) for im in images]
    out = torch.empty(n, 3, size + 2 * PAD, size + 2 * PAD, dtype=torch.uint8)
    side_out = size + 2 * PAD
    which = torch.randint(len(data), (n,), generator=gen)
    u = torch.rand(n, 3, generator=gen)
    for i in range(n):
        im = data[int(which[i])]
        _, h, w = im.shape
        lo, hi = math.log(min(side_out, h, w)), math.log(min(h, w))
        side = int(round(math.exp(lo + (hi - lo) * float(u[i, 0]))))
        y, x = int(float(u[i, 1]) * (h - side + 1)), int(float(u[i, 2]) * (w - side + 1))
        crop = im[None, :, y : y + side, x : x + side]
        if side != side_out:
            crop = F.interpolate(crop, size=(side_out, side_out), mode="bilinear", antialias=True,
                                 align_corners=False)
        out[i] = crop[0].mul(255).round().clamp(0, 255).to(torch.uint8)
    return out


_TO_YCC = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
_FROM_YCC = torch.linalg.inv(_TO_YCC)


def _ycc(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", m, x)


def colour_augment(x: torch.Tensor, donors: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Colour augmentation of a batch in [0, 1]: grey crops get the chroma of a colour donor crop (with
    probability 0.7); then a random hue rotation, saturation in [0.4, 1.5], gain in [0.55, 1.3] and
    gamma in [0.75, 1.35]. ``donors`` is a batch of colour crops of the same size."""
    b = x.shape[0]
    ycc = _ycc(x, _TO_YCC)
    grey = ycc[:, 1:].abs().amax(dim=(1, 2, 3)) < 0.02
    u = torch.rand(b, 6, generator=gen)
    take = grey & (u[:, 0] < 0.7)
    if take.any():
        d = donors[torch.randint(len(donors), (int(take.sum()),), generator=gen)]
        ycc[take, 1:] = _ycc(d, _TO_YCC)[:, 1:]
    angle = (u[:, 1] - 0.5) * 2 * math.pi * (u[:, 2] < 0.5)
    sat = 0.4 + 1.1 * u[:, 3]
    cos, sin = torch.cos(angle) * sat, torch.sin(angle) * sat
    cb, cr = ycc[:, 1], ycc[:, 2]
    ycc = torch.stack([ycc[:, 0], cos[:, None, None] * cb - sin[:, None, None] * cr,
                       sin[:, None, None] * cb + cos[:, None, None] * cr], dim=1)
    rgb = _ycc(ycc, _FROM_YCC).clamp(0, 1)
    gain = (0.55 + 0.75 * u[:, 4]).view(b, 1, 1, 1)
    gamma = (0.75 + 0.6 * u[:, 5]).view(b, 1, 1, 1)
    return (rgb.clamp_min(1e-6) ** gamma * gain).clamp(0, 1)


def geometric_augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and rotation by a multiple of 90 degrees (one draw per batch for speed)."""
    k = int(torch.randint(4, (1,), generator=gen))
    x = torch.rot90(x, k, dims=(2, 3))
    return x.flip(-1) if bool(torch.rand(1, generator=gen) < 0.5) else x


def views(crops: torch.Tensor, size: int, max_shift: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The frame (the centre window) and a reference view moved by up to ``max_shift`` pixels, with a
    small gain change and sensor noise (sigma 1 grey level), as a neighbouring frame would be."""
    b = crops.shape[0]
    x = crops[:, :, PAD : PAD + size, PAD : PAD + size]
    ref = torch.empty_like(x)
    shifts = torch.randint(-max_shift, max_shift + 1, (b, 2), generator=gen)
    still = torch.rand(b, generator=gen) < 0.3
    shifts[still] = 0
    for i in range(b):
        dy, dx = PAD + int(shifts[i, 0]), PAD + int(shifts[i, 1])
        ref[i] = crops[i, :, dy : dy + size, dx : dx + size]
    gain = 1.0 + 0.15 * (torch.rand(b, 1, 1, 1, generator=gen) - 0.5)
    noise = torch.randn(ref.shape, generator=gen) / 255.0
    return x, (ref * gain + noise).clamp(0, 1)


def validation_views(images: Sequence[np.ndarray], n: int, size: int, seed: int = 1234) -> torch.Tensor:
    """``n`` fixed views (float, [0, 1]) of the validation photos, deterministic for a seed."""
    gen = torch.Generator().manual_seed(seed)
    crops = crop_pool(images, n, size, gen).float().div(255.0)
    return crops[:, :, PAD : PAD + size, PAD : PAD + size]


def training_data(images: Sequence[np.ndarray], validation: Sequence[np.ndarray], pool: int, size: int,
                  gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """What every learned model of the project trains on, drawn from ``gen`` in this order: ``pool`` crops of
    ``images`` (uint8, :func:`crop_pool`), 512 colour donor crops for :func:`colour_augment` (float), and 48
    fixed views of the ``validation`` photos (None without any)."""
    crops = crop_pool(images, pool, size, gen)
    colour = [im for im in images if np.ptp(im.astype(np.int16)[..., :3] - im[..., :1].astype(np.int16)) > 8]
    donors = crop_pool(colour or images, 512, size, gen).float().div(255.0)
    val = validation_views(validation, 48, size) if len(validation) else None
    return crops, donors, val


def warmup_cosine(opt: torch.optim.Optimizer, steps: int, warmup: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A linear warm-up over ``min(warmup, steps // 10 + 1)`` steps, then a cosine decay to 0 at ``steps``."""
    warm = min(warmup, steps // 10 + 1)
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))


@torch.no_grad()
def evaluate(model: SpatialHyperprior, frames: torch.Tensor) -> list[dict]:
    """Intra PSNR (dB, mean over frames) and rate (bits per frame, from the rounded latents' likelihoods)
    at every quality."""
    was = model.training
    model.eval()
    rows = []
    for q in range(model.qualities):
        out = model(frames, torch.full((len(frames),), q, device=frames.device))
        mse = (out.x_hat - frames).pow(2).flatten(1).mean(1).clamp_min(1e-10)
        rows.append({"quality": q + 1, "psnr_db": float((10 * torch.log10(1 / mse)).mean()),
                     "bits_per_frame": float((out.bits_y + out.bits_z).mean())})
    model.train(was)
    return rows


def train_codec(images: Sequence[np.ndarray], cfg: CodecTrainConfig = CodecTrainConfig(),
                validation: Sequence[np.ndarray] = (), progress: Callable[[int, dict], None] | None = None,
                checkpoint: Callable[[SpatialHyperprior, int, list], None] | None = None,
                checkpoint_every: int = 1000, dist: DistContext | None = None) -> tuple[SpatialHyperprior, list[dict]]:
    """Train :class:`SpatialHyperprior` with Adam and a cosine schedule; returns (model, log).

    ``log`` has one record per step (``loss``, ``bpp``, ``mse``) and, every ``checkpoint_every`` steps,
    a ``validation`` record per quality; ``checkpoint(model, step, log)`` is called then too.

    ``dist`` (:mod:`semcom.training.distributed`): the device, and on many processes this rank's slice of every
    global batch of ``batch_size`` (all random draws are made for the global batch on the CPU, so the ranks
    together compute the single-process gradient); the model comes back on the CPU. Validation, ``progress`` and
    ``checkpoint`` run on rank 0 only, with the losses averaged over the ranks.
    """
    dist = dist or DistContext()
    dev, part = dist.device, dist.shard(cfg.batch_size)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    pool, donors, val = training_data(images, validation, min(cfg.pool, cfg.steps * cfg.batch_size), cfg.size, gen)
    model = SpatialHyperprior(cfg.n, cfg.c, cfg.cz, len(cfg.lambdas), cfg.size, cfg.size).to(dev)
    net = dist.wrap(model)
    lambdas = torch.tensor(cfg.lambdas)
    y_shape = (cfg.batch_size, cfg.c, cfg.size // 8, cfg.size // 8)
    z_shape = (cfg.batch_size, cfg.cz, cfg.size // 16, cfg.size // 16)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = warmup_cosine(opt, cfg.steps, 500)
    log: list[dict] = []
    model.train()
    pixels = cfg.size * cfg.size
    t0 = time.perf_counter()
    for step in range(cfg.steps):
        crops = pool[torch.randint(len(pool), (cfg.batch_size,), generator=gen)].float().div(255.0)
        crops = geometric_augment(colour_augment(crops, donors, gen), gen)
        x, x_ref = views(crops, cfg.size, cfg.max_shift, gen)
        q = torch.randint(len(cfg.lambdas), (cfg.batch_size,), generator=gen)
        inter = torch.rand(cfg.batch_size, generator=gen) < cfg.inter_fraction
        # the rounding noise of the global batch, from the global CPU generator in the order forward draws it
        noise = (torch.empty(z_shape).uniform_(-0.5, 0.5)[part].to(dev),
                 torch.empty(y_shape).uniform_(-0.5, 0.5)[part].to(dev))
        x, x_ref, q, inter = x[part].to(dev), x_ref[part].to(dev), q[part].to(dev), inter[part].to(dev)
        y_ref = torch.zeros(len(x), cfg.c, cfg.size // 8, cfg.size // 8, device=dev)
        if inter.any():
            with torch.no_grad():
                y_ref[inter] = torch.round(model.analysis(x_ref[inter], q[inter]))
        out = net(x, q, y_ref, noise)
        mse = (out.x_hat - x).pow(2).flatten(1).mean(1)
        bpp = (out.bits_y + out.bits_z) / pixels
        loss = (bpp + lambdas.to(dev)[q] * 255.0**2 * mse).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        loss_v, bpp_v, mse_v = dist.mean([loss.detach(), bpp.detach().mean(), mse.detach().mean()]).tolist()
        if not dist.is_main:
            continue
        rec = {"step": step, "loss": loss_v, "bpp": bpp_v, "mse": mse_v,
               "seconds": round(time.perf_counter() - t0, 1)}
        if val is not None and ((step + 1) % checkpoint_every == 0 or step + 1 == cfg.steps):
            rec["validation"] = evaluate(model, val.to(dev))
        log.append(rec)
        if progress is not None:
            progress(step, rec)
        if checkpoint is not None and ((step + 1) % checkpoint_every == 0 or step + 1 == cfg.steps):
            checkpoint(model, step + 1, log)
    return model.cpu().eval().requires_grad_(False), log


def save_codec(model: SpatialHyperprior, path: str | Path, cfg: CodecTrainConfig, train_photos: Sequence[str],
               validation_photos: Sequence[str], log: Sequence[dict] = ()) -> Path:
    """Save the weights (float16 safetensors) with their provenance: the training config, the photo split,
    the training time and the last validation record."""
    import json

    from semcom.models.weights import save_autoencoder

    validation = next((r["validation"] for r in reversed(log) if "validation" in r), None)
    seconds = log[-1]["seconds"] if log else None
    return save_autoencoder(model, path, half=True, algorithm="rate-distortion (semcom.training.codec)",
                            config=json.dumps(cfg.model_dump()), train_photos=",".join(train_photos),
                            validation_photos=",".join(validation_photos), steps=len(log),
                            train_seconds=seconds, validation=json.dumps(validation))
