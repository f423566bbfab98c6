"""Image fidelity: MSE, PSNR and SSIM, from torchmetrics.

Frames are uint8 (T, H, W, 3) arrays; they are compared in [0, 1]. ``psnr``
is the PSNR of the whole clip, ``10 log10(1 / mean MSE)`` over every pixel of
every frame (torchmetrics' reduction over all elements); ``ssim`` is the mean
of the per-frame SSIM (Gaussian window 11, sigma 1.5), averaged over the part
of the SSIM map the window covers fully (5 px cropped at each border, as in
Wang et al.'s reference code and scikit-image; torchmetrics alone averages the
padded border too).
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics.functional.image import (
    multiscale_structural_similarity_index_measure,
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

from semcom.frames import to_tensor

SSIM_WINDOW = 11


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    if np.shape(a) != np.shape(b):
        raise ValueError(f"frame shapes differ: {np.shape(a)} vs {np.shape(b)}")
    return to_tensor(a).double(), to_tensor(b).double()


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error in [0, 1] units over all pixels."""
    x, y = _pair(a, b)
    return float(torch.mean((x - y) ** 2))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of the whole clip (data range 1); ``inf`` for identical clips."""
    x, y = _pair(a, b)
    return float(peak_signal_noise_ratio(x, y, data_range=1.0))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean per-frame SSIM."""
    x, y = (v.float() for v in _pair(a, b))  # float32: 6x faster than float64, same value to 1e-7
    _, full = structural_similarity_index_measure(x, y, data_range=1.0, return_full_image=True)
    c = SSIM_WINDOW // 2  # average the valid part only, as Wang et al.'s reference and scikit-image do
    return float(full[..., c:-c, c:-c].mean())


#: MS-SSIM's scale weights (Wang, Simoncelli, Bovik 2003), the first three of the five, renormalised:
#: a 64x64 frame has room for three scales of an 11-tap window, not five.
MS_SSIM_BETAS = tuple(b / sum((0.0448, 0.2856, 0.3001)) for b in (0.0448, 0.2856, 0.3001))


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean per-frame MS-SSIM over as many of its scales as the frame allows (three at 64x64, five from
    176x176 up; torchmetrics' implementation)."""
    x, y = (v.float() for v in _pair(a, b))
    side = min(x.shape[-2:])
    betas = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333) if side > 10 * 16 else MS_SSIM_BETAS
    scores = multiscale_structural_similarity_index_measure(x, y, data_range=1.0, betas=betas, reduction="none")
    return float(scores.mean())


def psnr_per_frame(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """PSNR in dB of each frame."""
    x, y = _pair(a, b)
    m = torch.mean((x - y) ** 2, dim=(1, 2, 3))
    return (10 * torch.log10(1.0 / m)).numpy()  # inf where a frame is identical, like psnr()
