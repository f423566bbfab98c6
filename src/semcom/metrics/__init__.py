"""Metrics: fidelity, bits and the reasoning capacity of the Hopfield paper."""

from semcom.metrics.bits import index_bits, paper_bits
from semcom.metrics.capacity import compression_ratio, raw_bits_per_frame, reasoning_capacity, semantic_efficiency
from semcom.metrics.image import ms_ssim, mse, psnr, psnr_per_frame, ssim

__all__ = ["compression_ratio", "index_bits", "ms_ssim", "mse", "paper_bits", "psnr", "psnr_per_frame",
           "raw_bits_per_frame", "reasoning_capacity", "semantic_efficiency", "ssim"]
