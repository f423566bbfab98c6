"""Patch masking of the masked VQ-VAE: MAE's random sampling and the robust paper's noise-aware masking.

Section III-A2 of the robust paper: the image is cut into ``N`` non-overlapping patches, a subset is kept and the
rest are masked and removed; the masking ratio (0.5 in Section V-A) is the fraction removed, the "reserving ratio"
of Fig. 7 is ``1 - mask_ratio``. MAE's "random sampling" masks every patch with the same probability; the paper
instead "increase[s] the masking probability of the patches affected severely by the semantic noise based on its
statistics", because semantic noise "appears in the patches related to the objectives more frequently".

**Our reading of the noise-aware strategy** (the paper gives no formula). The statistics are a per-patch average of
the semantic-noise magnitude, ``s_n = mean |Delta s|`` over the pixels and channels of patch ``n`` and over every
noisy sample seen so far (:meth:`PatchMasking.update`, fed with ``Delta s = s' - s`` from the attacks during
adversarial training, or with the input-gradient magnitude ``|grad_s L|`` that drives them). Each patch is then
masked with a probability proportional to

    ``w_n = (1 - lambda) / N + lambda * s_n / sum_m s_m``        (``lambda`` = ``noise_weight`` in [0, 1])

and the ``N - T`` masked patches are drawn **without replacement** in proportion to ``w`` (Gumbel-top-k: the
``N - T`` largest ``log w_n + g_n``, ``g_n`` i.i.d. standard Gumbel, which is exactly successive sampling without
replacement proportional to ``w``). ``lambda = 0``, or no statistics yet, is MAE's uniform random masking; the
more a patch carries semantic noise, the more often it is removed before the encoder sees it, while every patch
keeps a non-zero chance of being kept when ``lambda < 1``. Kept positions are returned in ascending order.

``T = round(N (1 - mask_ratio))`` (at least 1). A masking ratio outside [0, 1) is a one-line ConfigError naming
the masking ratio.
"""

from __future__ import annotations

import torch
from torch import nn

from semcom.errors import ConfigError
from semcom.robust.config import check_mask_ratio
from semcom.robust.vit import pad_images

__all__ = ["PatchMasking", "keep_count", "patch_energy", "sample_keep"]


def keep_count(num_patches: int, mask_ratio: float) -> int:
    """``T = round(N (1 - mask_ratio))``, at least 1: how many patches the encoder sees."""
    mask_ratio = check_mask_ratio(mask_ratio)
    if isinstance(num_patches, bool) or not isinstance(num_patches, int) or num_patches < 1:
        raise ConfigError(f"invalid num_patches={num_patches!r}: must be a positive integer")
    return max(1, int(round(num_patches * (1.0 - mask_ratio))))


def sample_keep(weights: torch.Tensor, batch_size: int, num_keep: int,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Kept patch positions ``[B, T]`` (int64, ascending in each row): the ``N - T`` masked patches of each row
    are drawn without replacement with probabilities proportional to ``weights`` (``[N]``, non-negative, not all
    zero) by Gumbel-top-k; uniform ``weights`` give MAE's random masking."""
    n = weights.numel()
    if not 1 <= num_keep <= n:
        raise ConfigError(f"invalid num_keep={num_keep}: must be in 1..{n}")
    u = torch.rand(batch_size, n, generator=generator).to(weights.device).clamp(1e-12, 1.0 - 1e-7)
    gumbel = -torch.log(-torch.log(u))
    scores = torch.log(weights.clamp_min(1e-30)).to(gumbel.dtype) + gumbel
    order = scores.argsort(dim=1, descending=True)  # most likely to be masked first
    return order[:, n - num_keep:].sort(dim=1).values


def patch_energy(delta: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Mean ``|delta|`` in each ``P x P`` patch, averaged over the batch and the channels: ``[B, C, H, W] -> [N]``
    (row-major over the patch grid, as :class:`semcom.robust.vit.PatchEmbed` orders patches)."""
    if delta.dim() != 4 or delta.shape[-1] % patch_size or delta.shape[-2] % patch_size:
        raise ConfigError(f"invalid delta: expected [B, C, H, W] with sides multiples of {patch_size}, "
                          f"got {tuple(delta.shape)}")
    pooled = torch.nn.functional.avg_pool2d(delta.detach().abs().float(), patch_size)  # [B, C, h, w]
    return pooled.mean(dim=(0, 1)).flatten()


class PatchMasking(nn.Module):
    """Draws the kept patches of a batch (see the module docstring for the noise-aware rule).

    ``num_patches`` ``N``, ``mask_ratio`` in [0, 1), ``mode`` ``"random"`` or ``"noise-aware"``,
    ``noise_weight`` the ``lambda`` of the masking probabilities, ``patch_size`` (and ``pad_to``, the side the
    encoder pads images to, 0: none) to pool noise maps in :meth:`update`. The running noise statistics are
    buffers (``noise_sum``, ``noise_count``), so they travel with the weights and both ends of a link use the same
    masking distribution."""

    def __init__(self, num_patches: int, mask_ratio: float = 0.5, mode: str = "noise-aware",
                 noise_weight: float = 1.0, patch_size: int = 4, pad_to: int = 0):
        super().__init__()
        self.num_keep = keep_count(num_patches, mask_ratio)
        if mode not in ("random", "noise-aware"):
            raise ConfigError(f"invalid masking={mode!r}: choose 'random' or 'noise-aware'")
        if not 0.0 <= float(noise_weight) <= 1.0:
            raise ConfigError(f"invalid noise_weight={noise_weight!r}: must be in [0, 1]")
        self.num_patches, self.mask_ratio, self.mode = num_patches, float(mask_ratio), mode
        self.noise_weight, self.patch_size, self.pad_to = float(noise_weight), patch_size, pad_to
        self.register_buffer("noise_sum", torch.zeros(num_patches))
        self.register_buffer("noise_count", torch.zeros(()))

    def noise_statistics(self) -> torch.Tensor:
        """``s_n``: the mean semantic-noise magnitude of each patch so far (zeros before any update)."""
        return self.noise_sum / self.noise_count.clamp_min(1.0)

    def masking_weights(self) -> torch.Tensor:
        """``w_n``, summing to 1: proportional to the probability that patch ``n`` is masked first."""
        n = self.num_patches
        uniform = torch.full((n,), 1.0 / n, device=self.noise_sum.device)
        s = self.noise_statistics()
        if self.mode == "random" or self.noise_weight == 0.0 or float(s.sum()) <= 0.0:
            return uniform
        return (1.0 - self.noise_weight) * uniform + self.noise_weight * s / s.sum()

    @torch.no_grad()
    def update(self, delta: torch.Tensor) -> None:
        """Fold a batch of semantic noise ``delta = s' - s`` (``[B, C, H, W]``, or any per-pixel noise map such as
        ``|grad_s L|``) into the per-patch statistics (a running mean over samples); with ``pad_to`` the map is
        zero-padded as the encoder pads the images."""
        b = delta.shape[0]
        delta = pad_images(delta, self.pad_to)
        self.noise_sum += patch_energy(delta, self.patch_size).to(self.noise_sum.device) * b
        self.noise_count += b

    def forward(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Kept positions ``[batch_size, T]`` (int64, ascending)."""
        return sample_keep(self.masking_weights(), batch_size, self.num_keep, generator)
