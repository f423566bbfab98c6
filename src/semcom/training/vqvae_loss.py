"""The grounded codebook paper's end-to-end loss, eqs. (24)-(25) (issue 10, item 1).

``L = L_rec(x, x^) + L_codebook`` (25), where ``L_codebook`` is eq. (23),
``L_q - lambda_H H + lambda_ch L_ch``, as :meth:`semcom.models.vqvae.CodebookVQVAE.forward` returns it, and the
reconstruction term (24) is

* the paper's perceptual loss, the distance between Gram matrices of VGG16 features of ``x`` and ``x^``, when
  the user passes a local VGG16 weight file (pretrained weights cannot be downloaded here), plus
* pixel MSE and ``1 - MS-SSIM`` (torchmetrics, three scales at 64x64 with the renormalised first three weights
  :data:`semcom.metrics.image.MS_SSIM_BETAS`), always: without VGG16 weights these two are the whole of (24).

The VGG16 feature stack (:class:`VGG16Features`) is written in plain ``torch.nn`` (torchvision is not importable
here) with torchvision's layout and key names (``features.0.weight`` ... ``features.28.bias``), so a
``vgg16`` state dict saved by torchvision (a ``.pth`` read with ``weights_only=True``, or a safetensors file;
``classifier.*`` keys are ignored) loads as it is. Gram matrices are taken after ``relu1_2``, ``relu2_2``,
``relu3_3`` and ``relu4_3`` (Gatys et al.'s style layers; the paper does not list its layers), each
``G = F F^T / (C H W)``, and the perceptual term is the sum over those layers of the mean squared difference of
the Gram matrices. Inputs in [0, 1] are normalised with the ImageNet mean and standard deviation.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

from semcom.errors import ConfigError
from semcom.metrics.image import MS_SSIM_BETAS

__all__ = ["VGG16_CFG", "GRAM_LAYERS", "VGG16Features", "VQVAELoss", "gram_matrix", "load_vgg16_features",
           "ms_ssim_loss", "read_state_dict", "reconstruction_loss"]

#: torchvision's ``vgg16`` ``features`` configuration: output channels of each 3x3 conv, ``"M"`` a 2x2 max-pool.
VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
#: Indices in ``features`` of the ReLUs whose outputs give the Gram matrices: relu1_2, relu2_2, relu3_3, relu4_3.
GRAM_LAYERS = (3, 8, 15, 22)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class VGG16Features(nn.Module):
    """VGG16's convolutional ``features`` up to the deepest of ``layers``, torchvision's module indices (so its
    state-dict keys are ``features.<i>.weight`` / ``.bias``); frozen. ``forward(x)`` takes frames in [0, 1] and
    returns the feature maps after the ReLUs of ``layers`` (default :data:`GRAM_LAYERS`)."""

    def __init__(self, layers: tuple[int, ...] = GRAM_LAYERS):
        super().__init__()
        self.layers = tuple(layers)
        layers: list[nn.Module] = []
        cin = 3
        for v in VGG16_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=False)]
                cin = v
        self.features = nn.Sequential(*layers[: max(self.layers) + 1])
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = (x - self.mean) / self.std
        out = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self.layers:
                out.append(h)
        return out


def read_state_dict(path: Path, what: str) -> dict:
    """The tensors of a local weight file (safetensors, or a torch file read with ``weights_only=True``); a
    missing or unreadable file is a one-line :class:`ConfigError` naming ``what`` and the path."""
    if not path.is_file():
        raise ConfigError(f"invalid {what}: file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # any reader failure is the same user error
        raise ConfigError(f"invalid {what}: {path} is not a readable state dict ({type(exc).__name__})") from None


def load_vgg16_features(path: str | Path, layers: tuple[int, ...] = GRAM_LAYERS) -> VGG16Features:
    """A :class:`VGG16Features` with the convolution weights of the VGG16 state dict at ``path`` (safetensors,
    or a torch file of tensors); :class:`ConfigError`, one line naming the path, when it is missing, unreadable
    or not a VGG16 (a ``features.*`` key missing or of the wrong shape)."""
    path = Path(path)
    state = read_state_dict(path, "VGG16 weights")
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"invalid VGG16 weights: {path} is not a state dict of tensors")
    model = VGG16Features(layers)
    expected = model.state_dict()
    wanted = {}
    for key, ref in expected.items():
        t = state.get(key)
        if t is None:
            raise ConfigError(f"invalid VGG16 weights: {path} is not a VGG16 state dict (no {key})")
        if tuple(t.shape) != tuple(ref.shape):
            raise ConfigError(f"invalid VGG16 weights: {path} is not a VGG16 state dict ({key} has shape "
                              f"{tuple(t.shape)}, expected {tuple(ref.shape)})")
        if not t.is_floating_point() or not bool(torch.isfinite(t).all()):
            raise ConfigError(f"invalid VGG16 weights: {path} has non-finite or non-float values in {key}")
        wanted[key] = t.to(torch.float32)
    model.load_state_dict(wanted)
    return model


def gram_matrix(f: torch.Tensor) -> torch.Tensor:
    """``G = F F^T / (C H W)`` for feature maps ``[B, C, H, W]``, ``[B, C, C]`` (the Gram matrix of eq. 24)."""
    b, c, h, w = f.shape
    flat = f.reshape(b, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def ms_ssim_loss(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``1 - MS-SSIM(x^, x)`` over frames in [0, 1], three scales on 64x64 (``MS_SSIM_BETAS``), five from
    176x176 up, as :func:`semcom.metrics.image.ms_ssim` scores it; differentiable."""
    side = min(x.shape[-2:])
    betas = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333) if side > 10 * 16 else MS_SSIM_BETAS
    score = multiscale_structural_similarity_index_measure(x_hat, x, data_range=1.0, betas=betas)
    return 1.0 - score


def reconstruction_loss(x_hat: torch.Tensor, x: torch.Tensor, *, mse_weight: float = 1.0,
                        ms_ssim_weight: float = 1.0, perceptual_weight: float = 0.0,
                        vgg: VGG16Features | None = None) -> dict[str, torch.Tensor]:
    """The reconstruction term of eq. (24): ``mse_weight * MSE + ms_ssim_weight * (1 - MS-SSIM)`` plus, when
    ``vgg`` is given, ``perceptual_weight * sum_l mean (G_l(x^) - G_l(x))^2``. Returns the terms (``mse``,
    ``ms_ssim``, and ``perceptual`` when computed) and their weighted sum ``reconstruction``."""
    if x_hat.shape != x.shape:
        raise ConfigError(f"invalid x_hat: expected the shape of x {tuple(x.shape)}, got {tuple(x_hat.shape)}")
    terms = {"mse": F.mse_loss(x_hat, x), "ms_ssim": ms_ssim_loss(x_hat, x)}
    total = mse_weight * terms["mse"] + ms_ssim_weight * terms["ms_ssim"]
    if vgg is not None and perceptual_weight > 0.0:
        with torch.no_grad():
            target = [gram_matrix(f) for f in vgg(x)]
        terms["perceptual"] = sum(F.mse_loss(gram_matrix(f), g) for f, g in zip(vgg(x_hat), target))
        total = total + perceptual_weight * terms["perceptual"]
    terms["reconstruction"] = total
    return terms


def _weight(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"invalid {name}: must be a non-negative finite number, got {name}={value!r}")
    return float(value)


class VQVAELoss(nn.Module):
    """Eq. (25): ``L = L_rec (24) + L_codebook (23)`` for a :class:`semcom.models.vqvae.VQVAEOutput`.

    ``vgg16_weights`` is the path of a local VGG16 state dict (see :func:`load_vgg16_features`); without it the
    perceptual term is left out and (24) is pixel MSE plus ``1 - MS-SSIM`` (``perceptual_used`` says which).
    ``forward(out, x)`` returns the total and keeps every term of the last call, as floats, in ``.last``."""

    def __init__(self, *, mse_weight: float = 1.0, ms_ssim_weight: float = 1.0, perceptual_weight: float = 1.0,
                 vgg16_weights: str | Path | None = None):
        super().__init__()
        self.mse_weight = _weight(mse_weight, "mse_weight")
        self.ms_ssim_weight = _weight(ms_ssim_weight, "ms_ssim_weight")
        self.perceptual_weight = _weight(perceptual_weight, "perceptual_weight")
        self.vgg = load_vgg16_features(vgg16_weights) if vgg16_weights is not None else None
        self.last: dict[str, float] = {}

    @property
    def perceptual_used(self) -> bool:
        return self.vgg is not None and self.perceptual_weight > 0.0

    def train(self, mode: bool = True):  # the VGG stays frozen in eval mode
        super().train(mode)
        if self.vgg is not None:
            self.vgg.eval()
        return self

    def forward(self, out, x: torch.Tensor) -> torch.Tensor:
        terms = reconstruction_loss(out.x_hat, x, mse_weight=self.mse_weight, ms_ssim_weight=self.ms_ssim_weight,
                                    perceptual_weight=self.perceptual_weight, vgg=self.vgg)
        terms.update({k: v for k, v in out.losses.items()})
        total = terms["reconstruction"] + out.losses["codebook"]
        terms["total"] = total
        self.last = {k: float(v.detach()) for k, v in terms.items()}
        return total
