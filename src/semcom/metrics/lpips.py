"""LPIPS (Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric", CVPR 2018),
VGG16 version, from weight files the user has: the grounded codebook paper's Fig. 3 metric.

Neither the VGG16 backbone nor LPIPS's linear calibration layers can be downloaded here, so both come from
local files:

* ``vgg16``: a torchvision ``vgg16`` state dict (``.pth`` or safetensors), read by
  :func:`semcom.training.vqvae_loss.load_vgg16_features`;
* ``lin`` (optional): the ``lpips`` package's ``weights/v0.1/vgg.pth`` (keys ``lin0.model.1.weight`` ...
  ``lin4.model.1.weight``, shapes ``[1, C_l, 1, 1]``). Without it the metric is Zhang et al.'s *baseline*
  (every channel weighted 1), which the results name ``lpips_variant = "vgg-baseline"``.

``d(x, y) = sum_l mean_hw sum_c w_lc (f^_lc(x) - f^_lc(y))^2`` over the ReLU outputs relu1_2, relu2_2,
relu3_3, relu4_3 and relu5_3, where ``f^`` is the feature unit-normalised over channels (eq. 1 of the paper).
LPIPS scales inputs to [-1, 1] and then by its own shift and scale, which equal ImageNet's mean and standard
deviation on [0, 1] inputs, as :class:`~semcom.training.vqvae_loss.VGG16Features` applies them. Lower is
better; 0 for identical images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from semcom.errors import ConfigError

__all__ = ["LPIPS", "LPIPS_LAYERS"]

#: ReLU outputs of torchvision's ``vgg16.features`` that LPIPS compares: relu1_2 .. relu5_3.
LPIPS_LAYERS = (3, 8, 15, 22, 29)
_CHANNELS = (64, 128, 256, 512, 512)


def _load_lin(path: Path) -> list[torch.Tensor]:
    from semcom.training.vqvae_loss import read_state_dict

    state = read_state_dict(path, "LPIPS linear weights")
    out = []
    for i, c in enumerate(_CHANNELS):
        w = state.get(f"lin{i}.model.1.weight") if isinstance(state, dict) else None
        if not isinstance(w, torch.Tensor) or tuple(w.shape) != (1, c, 1, 1) or not bool(torch.isfinite(w).all()):
            raise ConfigError(f"invalid LPIPS linear weights: {path} has no finite lin{i}.model.1.weight of shape "
                              f"(1, {c}, 1, 1): not the lpips package's vgg.pth")
        out.append(w.reshape(c).float())
    return out


class LPIPS(nn.Module):
    """LPIPS-VGG16 from a local VGG16 file and, optionally, the lpips package's linear weights (module
    docstring). ``forward(x, y)`` takes frames ``[B, 3, H, W]`` in [0, 1] and returns ``[B]`` distances;
    :meth:`score` takes uint8 clips ``[T, H, W, 3]`` and returns the mean."""

    def __init__(self, vgg16: str | Path, lin: str | Path | None = None):
        super().__init__()
        from semcom.training.vqvae_loss import load_vgg16_features

        self.net = load_vgg16_features(vgg16, layers=LPIPS_LAYERS)
        weights = _load_lin(Path(lin)) if lin is not None else [torch.ones(c) for c in _CHANNELS]
        for i, w in enumerate(weights):
            self.register_buffer(f"w{i}", w)
        self.variant = "vgg-lin" if lin is not None else "vgg-baseline"
        self.requires_grad_(False)
        self.eval()

    @staticmethod
    def _unit(f: torch.Tensor) -> torch.Tensor:
        return f / (f.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape or x.dim() != 4 or x.shape[1] != 3:
            raise ConfigError(f"invalid frames: expected two [B, 3, H, W] batches of one shape, got "
                              f"{tuple(x.shape)} and {tuple(y.shape)}")
        total = torch.zeros(x.shape[0])
        for i, (fx, fy) in enumerate(zip(self.net(x), self.net(y))):
            d = (self._unit(fx) - self._unit(fy)).pow(2)
            total = total + (d * getattr(self, f"w{i}").view(1, -1, 1, 1)).sum(1).mean((1, 2))
        return total

    def score(self, a: np.ndarray, b: np.ndarray) -> float:
        """Mean LPIPS of two uint8 clips ``[T, H, W, 3]``."""
        from semcom.frames import to_tensor

        x, y = to_tensor(a), to_tensor(b)
        return float(torch.cat([self(x[i:i + 32], y[i:i + 32]) for i in range(0, len(x), 32)]).mean())
