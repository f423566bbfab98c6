"""Bit accounting of the Hopfield paper, eq. (3)."""

from __future__ import annotations


def index_bits(memory_size: int) -> int:
    """``b_id(M) = ceil(log2 M)``: bits to name one of ``M`` prototypes (0 for M <= 1)."""
    return max(memory_size - 1, 0).bit_length()


def paper_bits(hit: bool, memory_size: int, d: int, latent_bits: int = 8) -> int:
    """Eq. (3) with ``b_res = 0``: ``H_t b_id(M_{t-1}) + (1 - H_t) b_new``, ``b_new = latent_bits * d``.

    The paper counts nothing for the hit/miss flag or any header; the real
    bitstream (:mod:`semcom.link.wire`) counts everything.
    """
    return index_bits(memory_size) if hit else latent_bits * d
