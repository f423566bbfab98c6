"""The 8-bit uniform scalar quantiser ``Q`` of eq. (2) of the Hopfield paper.

Each coordinate of a unit-norm latent lies in [-1, 1]; it is mapped to one of
``2**bits`` uniformly spaced levels, and the dequantised vector is projected
back on the unit sphere ("uniform scalar quantization with 8 bits per
dimension followed by normalization"). Transmitter and receiver both call
:func:`dequantize` on the same codes, so both hold bit-identical latents.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def quantize(z: torch.Tensor, bits: int = 8) -> np.ndarray:
    """Codes of ``z`` (..., d): ``round((z + 1) / 2 * (2**bits - 1))`` as uint8/uint16."""
    levels = (1 << bits) - 1
    q = torch.round((z.detach().to(torch.float64).clamp(-1.0, 1.0) + 1.0) * 0.5 * levels)
    return q.to(torch.int64).numpy().astype(np.uint8 if bits <= 8 else np.uint16)


def dequantize(codes: np.ndarray, bits: int = 8) -> torch.Tensor:
    """Unit-norm float32 latent from ``codes``: ``normalize(codes / (2**bits - 1) * 2 - 1)``.

    A code of ``2**(bits-1) - 0.5`` would be zero; integer codes never are, so
    the norm is always positive and the result is on the unit sphere.
    """
    levels = (1 << bits) - 1
    x = torch.from_numpy(np.asarray(codes, dtype=np.float64)) / levels * 2.0 - 1.0
    return F.normalize(x, dim=-1).to(torch.float32)


def Q(z: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Eq. (2)'s ``Q(z)``: quantise then dequantise (and renormalise)."""
    return dequantize(quantize(z, bits), bits)
