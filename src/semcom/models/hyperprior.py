"""A spatial-latent learned image codec with a scale hyperprior and conditional (inter) coding.

The architecture is Ballé, Minnen, Singh, Hwang, Johnston, "Variational image compression with a
scale hyperprior" (ICLR 2018), sized for small frames and two CPU cores, with two additions:

* **Quality levels from one model** (gain units, Cui et al., "Asymmetric gained deep image
  compression with continuous rate adaptation", CVPR 2021): the latent is scaled per channel by
  ``gain[q]`` before rounding and by ``inv_gain[q]`` before synthesis, and training samples the
  rate–distortion weight ``lambda_q`` per image, so one set of weights serves every quality.
* **Conditional coding against a reference** both ends hold (a prototype of the shared memory, or
  the previous frame): the symbols sent are ``r^ = round(y - y_ref)`` and the receiver decodes
  ``y^ = y_ref + r^``. The hyper-synthesis sees ``y_ref`` too, so the predicted scales shrink
  where the reference already explains the frame. With ``y_ref = 0`` this is the intra codec.

Per frame of ``H x W``: ``y`` is ``(c, H/8, W/8)``, the hyper-latent ``z`` is ``(c_z, H/16, W/16)``.
Rate (bits) is ``-log2 p(r^ | sigma(z^, y_ref)) - log2 p(z^)``, the two terms of Ballé et al.'s rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from semcom.models.entropy import FactorizedLaplace, GaussianConditional, bits
from semcom.models.gdn import GDN

DOWNSAMPLING = 16  # frames must be multiples of this (the hyper-latent's stride)
#: Rate–distortion weights per quality (lambda on 255^2 MSE), geometric, below CompressAI's range at the
#: bottom because a 64x64 frame at its lowest quality is meant to cost tens of bits.
DEFAULT_LAMBDAS = (0.0003, 0.0006, 0.0013, 0.0027, 0.0056, 0.0117, 0.024, 0.05)


def _conv(cin: int, cout: int, k: int = 5, stride: int = 2) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


def _deconv(cin: int, cout: int, k: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, k, stride=stride, padding=k // 2, output_padding=stride - 1)


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    """Rounding with the straight-through gradient."""
    return x + (torch.round(x) - x).detach()


def _noisy(x: torch.Tensor, u: torch.Tensor | None = None) -> torch.Tensor:
    """The additive-uniform-noise proxy of rounding (Ballé et al. 2017); ``u``: that noise, drawn by the caller."""
    return x + (torch.empty_like(x).uniform_(-0.5, 0.5) if u is None else u.to(x.device))


@dataclass
class CodecOutput:
    """What :meth:`SpatialHyperprior.forward` returns for a batch: the reconstruction, the rate in bits per
    image (y and z) and the decoded latent ``y^``."""

    x_hat: torch.Tensor
    bits_y: torch.Tensor
    bits_z: torch.Tensor
    y_hat: torch.Tensor


class SpatialHyperprior(nn.Module):
    """``g_a``, ``g_s``, ``h_a``, ``h_s`` and the gain units (see the module docstring)."""

    #: What ``--device`` moves (:mod:`semcom.models.device`): the heavy transforms; ``h_a``, ``h_s``, the gains and
    #: the entropy models, which decide symbols and scale indexes at both ends, stay on the CPU.
    DEVICE_PARTS = ("g_a", "g_s")

    def __init__(self, n: int = 96, c: int = 64, cz: int = 32, qualities: int = 8,
                 height: int = 64, width: int = 64):
        super().__init__()
        self.hparams = {"n": n, "c": c, "cz": cz, "qualities": qualities, "height": height, "width": width}
        self.g_a = nn.Sequential(_conv(3, n), GDN(n), _conv(n, n), GDN(n), _conv(n, c))
        self.g_s = nn.Sequential(_deconv(c, n), GDN(n, inverse=True), _deconv(n, n), GDN(n, inverse=True),
                                 _deconv(n, 3))
        self.h_a = nn.Sequential(_conv(2 * c, n, 3, 1), nn.LeakyReLU(), _conv(n, cz, 5, 2))
        self.h_s_z = _deconv(cz, n, 5, 2)
        self.h_s_ref = _conv(c, n, 3, 1)
        self.h_s_out = nn.Sequential(nn.LeakyReLU(), _conv(n, n, 3, 1), nn.LeakyReLU(), _conv(n, c, 3, 1))
        self.log_gain = nn.Parameter(torch.linspace(-1.5, 1.0, qualities)[:, None].repeat(1, c))
        self.log_inv_gain = nn.Parameter(-self.log_gain.detach().clone())
        self.gaussian = GaussianConditional()
        self.z_prior = FactorizedLaplace(cz)

    @property
    def qualities(self) -> int:
        return self.hparams["qualities"]

    def rd_lambda(self, quality: int) -> float:
        """The rate–distortion weight the model was trained with at ``quality`` (1-based): from its weights'
        metadata, else :data:`DEFAULT_LAMBDAS` (stretched geometrically for another number of qualities)."""
        import json

        try:
            lambdas = tuple(json.loads(getattr(self, "metadata", {})["config"])["lambdas"])
        except (KeyError, TypeError, ValueError):
            lambdas = ()
        if len(lambdas) != self.qualities:
            lo, hi, n = DEFAULT_LAMBDAS[0], DEFAULT_LAMBDAS[-1], self.qualities
            lambdas = tuple(lo * (hi / lo) ** (i / max(n - 1, 1)) for i in range(n))
        return float(lambdas[quality - 1])

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        h, w = self.hparams["height"], self.hparams["width"]
        return self.hparams["c"], h // 8, w // 8

    def gain(self, q: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.log_gain[q])[:, :, None, None]

    def inv_gain(self, q: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.log_inv_gain[q])[:, :, None, None]

    def analysis(self, x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """``y = g_a(x) * gain[q]`` for frames in [0, 1]."""
        return self.g_a(x * 2.0 - 1.0) * self.gain(q)

    def synthesis(self, y_hat: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """``x^ = g_s(y^ * inv_gain[q])``, clamped to [0, 1] outside training."""
        x = self.g_s(y_hat * self.inv_gain(q)) * 0.5 + 0.5
        return x if self.training else x.clamp(0.0, 1.0)

    def scales(self, z_hat: torch.Tensor, y_ref: torch.Tensor) -> torch.Tensor:
        """``sigma = h_s(z^, y_ref)``: the Gaussian scale of every residual symbol."""
        h = self.h_s_z(z_hat) + self.h_s_ref(y_ref)
        return F.softplus(self.h_s_out(h))

    def hyper_analysis(self, r: torch.Tensor, y_ref: torch.Tensor) -> torch.Tensor:
        return self.h_a(torch.cat([r, y_ref], dim=1))

    def forward(self, x: torch.Tensor, q: torch.Tensor, y_ref: torch.Tensor | None = None,
                noise: tuple[torch.Tensor, torch.Tensor] | None = None) -> CodecOutput:
        """Training pass: noisy latents for the rate, straight-through rounding for the reconstruction.
        ``noise``: the uniform noise ``(u_z, u_r)`` of ``z`` and ``r`` (default: drawn here, ``z``'s first), so that
        a data-parallel trainer can draw it for the global batch and pass each rank its slice."""
        y = self.analysis(x, q)
        y_ref = torch.zeros_like(y) if y_ref is None else y_ref
        r = y - y_ref
        z = self.hyper_analysis(r, y_ref)
        u_z, u_r = noise if noise is not None else (None, None)
        z_tilde = _noisy(z, u_z) if self.training else torch.round(z)
        sigma = self.scales(_round_ste(z) if self.training else z_tilde, y_ref)
        r_tilde = _noisy(r, u_r) if self.training else torch.round(r)
        y_hat = y_ref + (_round_ste(r) if self.training else torch.round(r))
        return CodecOutput(self.synthesis(y_hat, q), bits(self.gaussian.likelihood(r_tilde, sigma)),
                           bits(self.z_prior.likelihood(z_tilde)), y_hat)
