"""Compression ratio, semantic efficiency and reasoning capacity (Section III-B)."""

from __future__ import annotations

import math


def raw_bits_per_frame(height: int, width: int, channels: int = 3, bit_depth: int = 8) -> int:
    """``B_raw`` per frame: uncompressed pixels, ``H * W * 3 * 8`` by default."""
    return height * width * channels * bit_depth


def compression_ratio(b_raw: float, b_sem: float) -> float:
    """``gamma = B_raw / B_sem``."""
    return b_raw / b_sem if b_sem > 0 else math.inf


def semantic_efficiency(hit_rate: float, gamma: float) -> float:
    """``eta = (Q / T) * (B_raw / B_sem)``: hit rate times compression ratio."""
    return hit_rate * gamma


def reasoning_capacity(eta: float, omega: float = 1.0) -> float:
    """Eq. (5): ``C_R = Omega * log2(1 + eta)``."""
    return omega * math.log2(1.0 + eta)
