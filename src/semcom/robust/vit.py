"""A small vision Transformer encoder on plain ``torch.nn`` (the robust paper's ViT blocks, Section III-A1).

No torchvision or timm (they do not import beside the CPU build of torch). The encoder of a masked autoencoder:
it cuts the image into non-overlapping ``P x P`` patches, embeds each with a linear map (a stride-``P``
convolution), adds a learned position embedding, **drops the masked patches** and runs only the kept ones through
``depth`` pre-norm Transformer blocks (MAE's asymmetric design: the encoder processes only the unmasked patches).
The paper's encoder has 14 layers and 12 heads on 224x224 images with 14x14 patches; ours defaults to 2 layers,
4 heads, width 64 so that it trains on two CPU cores.
"""

from __future__ import annotations

import torch
from torch import nn

from semcom.errors import ConfigError
from semcom.robust.config import check_pad_to, check_patch_size

__all__ = ["PatchEmbed", "ViTEncoder", "gather_tokens", "pad_images"]


def pad_images(x: torch.Tensor, pad_to: int) -> torch.Tensor:
    """Zero-pad ``[B, C, H, W]`` images, centred (the odd pixel at the bottom / right), to ``pad_to x pad_to``;
    ``pad_to = 0`` (or the images' own size) returns them unchanged. Differentiable: the gradient of the padded
    ring is dropped, so an attack on the padded model perturbs the image only."""
    if not pad_to:
        return x
    h, w = x.shape[-2:]
    top, left = (pad_to - h) // 2, (pad_to - w) // 2
    if top == left == 0 and h == w == pad_to:
        return x
    return torch.nn.functional.pad(x, (left, pad_to - w - left, top, pad_to - h - top))


def gather_tokens(tokens: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``tokens[b, keep[b, t]]``: the kept tokens ``[B, T, C]`` of ``tokens`` ``[B, N, C]`` at the patch
    positions ``keep`` ``[B, T]`` (int64)."""
    return torch.gather(tokens, 1, keep.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))


class PatchEmbed(nn.Module):
    """Non-overlapping ``P x P`` patches to ``embed_dim``-vectors, row-major over the ``(H/P) x (W/P)`` grid:
    ``[B, C, H, W] -> [B, N, embed_dim]``; with ``pad_to`` the image is first zero-padded, centred, to
    ``pad_to x pad_to`` (:func:`pad_images`) and the grid is that of the padded image. A patch size that does not
    divide both (padded) sides is a one-line :class:`ConfigError`."""

    def __init__(self, height: int, width: int, patch_size: int, channels: int, embed_dim: int, pad_to: int = 0):
        super().__init__()
        self.pad_to = check_pad_to(pad_to, height, width)
        ph, pw = (pad_to, pad_to) if pad_to else (height, width)
        self.patch_size = check_patch_size(patch_size, ph, pw)
        self.height, self.width, self.channels = height, width, channels
        self.grid = (ph // patch_size, pw // patch_size)
        self.proj = nn.Conv2d(channels, embed_dim, kernel_size=patch_size, stride=patch_size)

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != (self.channels, self.height, self.width):
            raise ConfigError(f"invalid images: expected [B, {self.channels}, {self.height}, {self.width}], "
                              f"got {tuple(x.shape)}")
        return self.proj(pad_images(x, self.pad_to)).flatten(2).transpose(1, 2)


class ViTEncoder(nn.Module):
    """Patch embedding + learned position embedding + ``depth`` pre-norm Transformer blocks + a final LayerNorm.

    ``forward(x, keep)`` embeds every patch, keeps those at positions ``keep`` (``[B, T]`` int64, each row
    ascending; ``None`` keeps all ``N``) and returns their features ``[B, T, embed_dim]``. Each block is a
    ``nn.TransformerEncoderLayer`` with ``norm_first=True`` (pre-norm), GELU and no dropout. ``pad_to``: see
    :class:`PatchEmbed`."""

    def __init__(self, height: int = 32, width: int = 32, patch_size: int = 4, channels: int = 3,
                 embed_dim: int = 64, depth: int = 2, heads: int = 4, mlp_ratio: float = 2.0, pad_to: int = 0):
        super().__init__()
        if embed_dim % heads:
            raise ConfigError(f"invalid heads={heads}: must divide embed_dim={embed_dim}")
        self.patch_embed = PatchEmbed(height, width, patch_size, channels, embed_dim, pad_to)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches, embed_dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(embed_dim, heads, dim_feedforward=int(embed_dim * mlp_ratio), dropout=0.0,
                                       activation="gelu", batch_first=True, norm_first=True)
            for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim)

    @property
    def num_patches(self) -> int:
        return self.patch_embed.num_patches

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        tokens = self.patch_embed(x) + self.pos_embed
        if keep is not None:
            tokens = gather_tokens(tokens, keep)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)
