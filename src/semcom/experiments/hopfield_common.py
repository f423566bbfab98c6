"""What the Hopfield-paper reproductions share: config, clips per scenario, pooled evaluation at a tau."""

from __future__ import annotations

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from semcom.config import DEFAULT_BETA, FullPolicy, LinkConfig, RuleName, validated
from semcom.experiments.semantic_link import clip_metrics, encode_clip, stream_latents, summarise
from semcom.frames import to_uint8
from semcom.metrics import mse, raw_bits_per_frame
from semcom.models import SphericalAutoencoder
from semcom.quantization import Q
from semcom.sources import SCENARIOS

#: Table I of the Hopfield paper, as published ("nearest" is the paper's VQ row).
PAPER_TABLE1 = {
    ("STABLE", "hopfield"): {"bits_per_frame": 9.51, "hit_rate": 0.978, "reasoning_capacity": 14.26},
    ("STABLE", "nearest"): {"bits_per_frame": 9.51, "hit_rate": 0.978, "reasoning_capacity": 14.26},
    ("GRADUAL_DRIFT", "hopfield"): {"bits_per_frame": 68.66, "hit_rate": 0.825, "reasoning_capacity": 14.26},
    ("GRADUAL_DRIFT", "nearest"): {"bits_per_frame": 228.53, "hit_rate": 0.408, "reasoning_capacity": 9.04},
    ("MODERATE", "hopfield"): {"bits_per_frame": 9.51, "hit_rate": 0.978, "reasoning_capacity": 14.26},
    ("MODERATE", "nearest"): {"bits_per_frame": 9.51, "hit_rate": 0.978, "reasoning_capacity": 14.26},
}
#: The paper's headline claims: about 14 % average and 70 % gradual-drift bit savings of Hopfield over VQ.
PAPER_SAVINGS = {"average": 0.14, "GRADUAL_DRIFT": 0.70}


class ReproConfig(BaseModel):
    """Configuration shared by ``semcom reproduce hopfield-*``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: tuple[RuleName, ...] = ("nearest", "hopfield", "paper")
    beta: float = Field(DEFAULT_BETA, gt=0.0, le=1e6)
    m_max: int = Field(256, ge=1)
    full_policy: FullPolicy = "lru"
    top_k: int = Field(4, ge=1, le=64)
    seed: int = 0
    frames: int | None = Field(None, ge=1, le=100000)
    below_ceiling_db: float = Field(0.5, ge=0.0, description="target PSNR = ceiling of the scenario minus this")
    tol_db: float = Field(0.2, gt=0.0)
    tau_lo: float = Field(0.5, gt=0.0, lt=1.0)
    tau_hi: float = Field(0.9999, gt=0.0, lt=1.0)
    iters: int = Field(18, ge=1, le=60)
    taus: tuple[float, ...] = (0.9, 0.95, 0.97, 0.98, 0.985, 0.99, 0.993, 0.995, 0.997, 0.999)
    residual_bits: int = Field(2, ge=1, le=8, description="b_res per dimension of the +res systems")
    refine_fraction: float = Field(0.75, gt=0.0, lt=1.0)
    codecs: tuple[str, ...] = ("jpeg", "webp", "h264", "hevc", "av1")
    quick: bool = False

    @classmethod
    def quick_version(cls, **kw) -> ReproConfig:
        """Fewer frames and bisection steps, every row kept."""
        return validated(cls, **{"frames": 36, "iters": 10, "taus": (0.95, 0.98, 0.99, 0.995, 0.999),
                                 "quick": True, **kw})


Clips = dict[str, dict[str, tuple[np.ndarray, torch.Tensor]]]


def scenario_clips(model: SphericalAutoencoder, cfg: ReproConfig) -> Clips:
    """Frames and latents of every regime, grouped by scenario (scene_change on its own)."""
    return {sc: {r: encode_clip(model, r, cfg.seed, cfg.frames) for r in regimes} for sc, regimes in SCENARIOS.items()}


def link_for(cfg: ReproConfig, rule: str, tau: float, model: SphericalAutoencoder,
             coding: str = "fixed", residual: bool = False) -> LinkConfig:
    """The link of ``rule`` at ``tau``; with ``residual``, hits in the lower ``refine_fraction`` of
    ``[tau, 1)`` carry ``residual_bits`` per dimension (``tau_refine = tau + refine_fraction (1 - tau)``)."""
    hp = model.hparams
    extra = {}
    if residual:
        extra = {"residual_bits": cfg.residual_bits, "tau_refine": tau + cfg.refine_fraction * (1 - tau)}
    return validated(LinkConfig, rule=rule, tau=tau, beta=cfg.beta, m_max=cfg.m_max, full_policy=cfg.full_policy,
                     coding=coding, top_k=cfg.top_k, d=hp["d"], height=hp["height"], width=hp["width"], **extra)


def evaluate(model: SphericalAutoencoder, clips: dict, link: LinkConfig, scenario: str,
             with_ssim: bool = False) -> tuple[dict, list[dict]]:
    """Stream every clip of a scenario at ``link``; returns the pooled summary and the per-regime rows."""
    hp = model.hparams
    b_raw = raw_bits_per_frame(hp["height"], hp["width"])
    rows = []
    for regime, (frames, latents) in clips.items():
        result = stream_latents(latents, link, model)
        rows.append({"scenario": scenario, "regime": regime, "rule": link.rule, "tau": link.tau, "beta": link.beta,
                     **clip_metrics(frames, result, b_raw, with_ssim=with_ssim)})
    return summarise(rows)[0], rows


def ceiling_psnr(model: SphericalAutoencoder, clips: dict) -> float:
    """PSNR when every frame is a miss (every latent sent as Q(z)): the best any rule can do."""
    total, frames_n = 0.0, 0
    for frames, latents in clips.values():
        with torch.no_grad():
            decoded = to_uint8(model.decoder(Q(latents)))
        total += mse(frames, decoded) * len(frames)
        frames_n += len(frames)
    return float(10 * np.log10(1.0 / (total / frames_n)))
