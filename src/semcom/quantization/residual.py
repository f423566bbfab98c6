"""Residual refinement, eq. (2)'s ``epsilon_t`` with ``b_res`` bits per dimension.

On a refined hit the receiver holds the readout ``r`` of the named prototype;
the transmitter sends the residual ``e = z - r`` quantised uniformly to
``bits`` per coordinate over ``[-c, c]``, and both sides reconstruct
``z^ = normalize(r + e^)``. A hit has ``<z, r> >= tau``, so
``||e||^2 = 2 - 2 <z, r> <= 2 (1 - tau)`` and a coordinate's RMS is at most
``sqrt(2 (1 - tau) / d)``; the range is ``c = 2.5`` times that, a value both
ends compute from the header, so no scale is sent.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

RANGE_IN_RMS = 2.5


def residual_range(tau: float, d: int) -> float:
    """``c = 2.5 sqrt(2 (1 - tau) / d)``: the clipping range of a residual coordinate."""
    return RANGE_IN_RMS * math.sqrt(2.0 * (1.0 - tau) / d)


def quantize_residual(e: torch.Tensor, bits: int, c: float) -> np.ndarray:
    """Codes in ``[0, 2**bits)`` of the mid-rise uniform quantiser of ``e`` over ``[-c, c]``."""
    levels = 1 << bits
    k = torch.floor((e.detach().double().clamp(-c, c) + c) / (2 * c) * levels)
    return k.clamp(0, levels - 1).to(torch.int64).numpy().astype(np.uint8)


def dequantize_residual(codes: np.ndarray, bits: int, c: float) -> torch.Tensor:
    """Reconstruction levels ``-c + (k + 1/2) 2c / 2**bits`` (float32)."""
    step = 2 * c / (1 << bits)
    return (torch.from_numpy(np.asarray(codes, dtype=np.float64)) * step - c + step / 2).to(torch.float32)


def refine(readout: torch.Tensor, codes: np.ndarray, bits: int, c: float) -> torch.Tensor:
    """``z^ = normalize(r + e^)``."""
    return F.normalize(readout + dequantize_residual(codes, bits, c), dim=-1)
