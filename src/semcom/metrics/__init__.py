"""Metrics: fidelity, bits and the reasoning capacity of the Hopfield paper."""

from semcom._lazy import lazy_exports

#: Where each exported name lives: loaded on first use, so that semcom.metrics.bits does not import torchmetrics.
_EXPORTS = {
    "index_bits": "semcom.metrics.bits",
    "paper_bits": "semcom.metrics.bits",
    "compression_ratio": "semcom.metrics.capacity",
    "raw_bits_per_frame": "semcom.metrics.capacity",
    "reasoning_capacity": "semcom.metrics.capacity",
    "semantic_efficiency": "semcom.metrics.capacity",
    "ms_ssim": "semcom.metrics.image",
    "mse": "semcom.metrics.image",
    "psnr": "semcom.metrics.image",
    "psnr_per_frame": "semcom.metrics.image",
    "ssim": "semcom.metrics.image",
}

__all__ = ["compression_ratio", "index_bits", "ms_ssim", "mse", "paper_bits", "psnr", "psnr_per_frame",
           "raw_bits_per_frame", "reasoning_capacity", "semantic_efficiency", "ssim"]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__)
